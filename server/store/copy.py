"""Moving a store into another, empty database (``edge-server db copy``).

A county starts on SQLite and moves to PostgreSQL once. Only the sources are copied (the
journal, ingest's bookkeeping, the commands), ids kept, so the copy continues where the store
left off; the projections are rebuilt there by replaying the journal, never copied, so the
copy holds what this version derives from the journal and nothing the old store got wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from server.projections import default_projections, replay
from server.store.db import migrate, utc
from server.store.schema import metadata

#: What ``copy_store`` carries over: the journal, ingest's bookkeeping and the commands (queued
#: by operators, so a source; their result columns are redone by the replay, which resets and
#: reapplies each stream's ``command.result`` events). Projections and their checkpoints are
#: not copied: the replay rebuilds them from the journal.
COPIED_TABLES = (
    "agents",
    "streams",
    "messages",
    "journal",
    "journal_conflicts",
    "lost_ranges",
    "boot_refs",
    "commands",
    "dead_letters",
    # The card registry is written by operators, not derived from the journal; the sync's
    # bookkeeping comes along so that agents are not sent the registry again from scratch.
    "card_registry",
    "cards",
    "card_holders",
    "quota_rules",
    "card_changes",
    "card_sync_clock",
    "card_sync_agents",
    # Alerts are live state (what people were told, what they acknowledged), not rebuilt.
    "alerts",
    "alert_notices",
    "alert_silences",
    "alert_channels",
    # Who may sign in, and what they did: written by people, never derived. Sessions and recent
    # failed logins come too, so a move neither signs everyone out nor forgives a guesser.
    "users",
    "user_sessions",
    "api_tokens",
    "login_failures",
    "audit_log",
)
#: Rebuilt on the target by ``rebuild_projections`` (with ``projection_checkpoints``).
REBUILT_TABLES = (
    "climate_records",
    "climate_summaries",
    "climate_notices",
    "cabinet_slot_log",
    "cabinet_slots",
    "cabinet_box_log",
    "cabinet_faults",
    "cabinet_usage",
    "ledger_products",
    "ledger_batches",
    "ledger_sites",
    "ledger_events",
    "ledger_movements",
    "ledger_stock",
    "ledger_discrepancies",
)


class CopyError(Exception):
    """The copy must not start; the message is one line for the operator."""


@dataclass(frozen=True)
class CopyReport:
    """Rows copied per table of ``COPIED_TABLES``, in copy order."""

    tables: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class RebuildReport:
    """What the replay on the copy did, and the projection rows it produced."""

    #: (projection, stream) pairs replayed.
    streams: int
    #: Sequence numbers applied, summed over the projections.
    numbers: int
    #: Journaled events this version understands that were stored as not understood (counted
    #: once per stream, not once per projection).
    understood: int
    #: Rows per table of ``REBUILT_TABLES`` after the replay.
    tables: tuple[tuple[str, int], ...]


def copy_store(source: sa.Engine, target: sa.Engine, chunk: int = 5000) -> CopyReport:
    """Copy ``COPIED_TABLES`` from ``source`` into ``target``, migrating ``target`` first.

    Refuses (``CopyError``) a target that holds any row, so a copy never merges two stores.
    Everything is written in one target transaction, so a failed copy leaves the target empty
    and can simply be run again. Database errors are raised as they come.
    """
    holder = _holds_rows(target)
    if holder is not None:
        shown = target.url.render_as_string(hide_password=True)
        raise CopyError(
            f"{shown} is not empty ({holder} has rows); copy only into an empty database"
        )
    migrate(target)
    return CopyReport(tuple(_copy_tables(source, target, chunk)))


def rebuild_projections(target: sa.Engine) -> RebuildReport:
    """Replay the copied journal on ``target`` to rebuild every projection.

    Separate from ``copy_store`` because the copy is already committed and usable: a failed
    replay can be redone later with ``edge-server events replay``.
    """
    done = replay(target, default_projections())
    understood = sum({(r.agent_id, r.epoch): r.now_understood for r in done}.values())
    return RebuildReport(
        streams=len(done),
        numbers=sum(r.events for r in done),
        understood=understood,
        tables=tuple(_row_counts(target, REBUILT_TABLES)),
    )


def _holds_rows(engine: sa.Engine) -> str | None:
    """The first of the server's tables that has a row in ``engine``, if any."""
    with engine.connect() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for table in metadata.sorted_tables:
            # Not ``select(table)``: a target on an older schema may lack some columns.
            one = sa.select(sa.literal(1)).select_from(table).limit(1)
            if table.name in present and conn.execute(one).first():
                return table.name
    return None


def _copy_tables(source: sa.Engine, target: sa.Engine, chunk: int) -> list[tuple[str, int]]:
    """Copy ``COPIED_TABLES`` in primary-key order, ``chunk`` rows at a time, ids kept, all in one
    target transaction (a failed copy leaves the target empty, so it can be run again)."""
    copied = []
    with source.connect() as src, target.begin() as dst:
        _one_moment(src)
        for name in COPIED_TABLES:
            table = metadata.tables[name]
            times = [c.name for c in table.c if isinstance(c.type, sa.DateTime)]
            query = sa.select(table).order_by(*table.primary_key.columns)
            rows = 0
            for part in src.execution_options(yield_per=chunk).execute(query).partitions():
                values = [dict(r._mapping) for r in part]
                for value in values:
                    for column in times:  # SQLite hands back naive UTC
                        if value[column] is not None:
                            value[column] = utc(value[column])
                dst.execute(table.insert(), values)
                rows += len(values)
            copied.append((name, rows))
            if dst.dialect.name == "postgresql":
                _restart_sequence(dst, table)
    return copied


def _one_moment(conn: sa.Connection) -> None:
    """Read every table as of one moment, so a process still writing cannot leave journal
    rows whose message was not copied (pysqlite begins no transaction for reads by itself)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")
    elif conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="REPEATABLE READ")


def _restart_sequence(conn: sa.Connection, table: sa.Table) -> None:
    """Move a serial key's sequence past the ids copied, so new rows do not collide."""
    [key, *more] = table.primary_key.columns
    if more or key.type.python_type is not int:
        return
    conn.execute(
        sa.text(
            "SELECT setval(pg_get_serial_sequence(:table, :column), m) "
            f"FROM (SELECT max({key.name}) AS m FROM {table.name}) AS t WHERE m IS NOT NULL"
        ),
        {"table": table.name, "column": key.name},
    )


def _row_counts(engine: sa.Engine, names: tuple[str, ...]) -> list[tuple[str, int]]:
    """Rows per table, for the operator to compare with the source's projections."""
    counts = []
    with engine.connect() as conn:
        for name in names:
            query = sa.select(sa.func.count()).select_from(metadata.tables[name])
            counts.append((name, int(conn.execute(query).scalar_one())))
    return counts
