"""Monthly partitions of ``climate_records`` on PostgreSQL (migration 0008).

On PostgreSQL ``climate_records`` is partitioned by range of ``occurred_at``: one partition per
calendar month (UTC), named ``climate_records_yYYYYmMM``, plus a DEFAULT partition for any time
no month covers (an agent whose clock was never set reports 1970; one that runs ahead, a year
not yet created). The partitions live in their own schema, ``climate_partitions``: the server's
schema (``server/store/schema.py``, what Alembic compares) stays the tables the code names, and
``\\dt`` lists them, not sixty partitions a county.

``ensure_partitions`` creates the months that are missing, from ``since`` (default: this month)
to ``months_ahead`` months after ``now``; migration 0008 calls it from 2020-01, and
``edge-server run`` once a day. It is idempotent and safe when several ingest processes run it
at once: everything happens in one transaction under a transaction-scoped advisory lock, and
what exists is read after the lock is taken.

A month is made as a plain table (``LIKE climate_records``) and then attached. Attaching takes
only a SHARE UPDATE EXCLUSIVE lock on ``climate_records``, so ingest's inserts and the series
queries go on meanwhile (``CREATE TABLE … PARTITION OF`` would take an ACCESS EXCLUSIVE lock on
the whole table for the moment). If the DEFAULT partition already holds rows of that month,
PostgreSQL would refuse the partition; they are moved into the new table first, in the same
transaction (nothing is lost if anything fails), the DEFAULT partition locked against new rows
meanwhile, and the move is logged and reported: nothing leaves DEFAULT silently.

On SQLite every function here does nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

log = logging.getLogger(__name__)

#: The schema that holds the partitions.
SCHEMA = "climate_partitions"
PARENT = "climate_records"
DEFAULT = "climate_records_default"
#: The first month migration 0008 creates; earlier times go to DEFAULT.
FIRST_MONTH = datetime(2020, 1, 1, tzinfo=UTC)
#: ``pg_advisory_xact_lock`` key of partition maintenance ("clim" in ASCII).
LOCK_KEY = 0x636C696D

_NAME = re.compile(r"^climate_records_y(\d{4})m(\d{2})$")
_BOUNDS = re.compile(r"FROM \((.+)\) TO \((.+)\)")


@dataclass(frozen=True)
class Ensured:
    """What ``ensure_partitions`` did."""

    #: Partitions created (the DEFAULT one included if it was missing), in month order.
    created: tuple[str, ...]
    #: Rows moved out of DEFAULT into a partition created for their month.
    moved: tuple[tuple[str, int], ...] = ()
    #: Months not created because an existing partition overlaps them only in part (made by
    #: hand): logged, left to the person who made it.
    skipped: tuple[str, ...] = ()


def month_start(at: datetime) -> datetime:
    """The first instant (UTC) of the month of ``at``."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"climate_records_y{month.year:04d}m{month.month:02d}"


def is_partitioned(bind: sa.Engine | sa.Connection) -> bool:
    """``climate_records`` is a partitioned table (PostgreSQL after migration 0008)."""
    if bind.dialect.name != "postgresql":
        return False
    query = sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:parent)")
    if isinstance(bind, sa.Connection):
        return bind.execute(query, {"parent": PARENT}).scalar() == "p"
    with bind.connect() as conn:
        return conn.execute(query, {"parent": PARENT}).scalar() == "p"


def ensure_partitions(
    bind: sa.Engine | sa.Connection,
    now: datetime,
    months_ahead: int = 12,
    *,
    since: datetime | None = None,
    lock_timeout_s: float | None = 10.0,
) -> Ensured:
    """Create the monthly partitions of ``climate_records`` that are missing, from the month
    of ``since`` through ``months_ahead`` months after ``now``'s, and the DEFAULT partition if
    it is missing. Without ``since``: from ``now``'s month, or from the first month after the
    last one made if that is earlier.

    Given an engine, it runs in its own transaction, and waits at most ``lock_timeout_s`` for
    a lock on a table (ingest is not held up longer; a daily call simply tries again the next
    day, twelve months ahead of need). Given a connection, it runs inside the caller's
    transaction and changes none of its settings. A no-op on SQLite, and on a PostgreSQL
    store whose ``climate_records`` is not partitioned (before migration 0008).
    """
    if bind.dialect.name != "postgresql":
        return Ensured(())
    if isinstance(bind, sa.Connection):
        return _ensure(bind, now, months_ahead, since, None)
    with bind.begin() as conn:
        return _ensure(conn, now, months_ahead, since, lock_timeout_s)


def _ensure(
    conn: sa.Connection,
    now: datetime,
    months_ahead: int,
    since: datetime | None,
    lock_timeout_s: float | None,
) -> Ensured:
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    if not is_partitioned(conn):
        return Ensured(())
    if lock_timeout_s is not None:
        # After the advisory lock: waiting for another process's maintenance is not a timeout.
        conn.execute(sa.text(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'"))
    created: list[str] = []
    if not conn.execute(
        sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": SCHEMA}
    ).first():
        conn.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    ranges, has_default = _existing(conn)
    if since is not None:
        first = month_start(since)
    else:
        # This month, or the end of the last month made if that is earlier (a server stopped
        # for over a year): no month is left out between them.
        ended = [e for _, e in ranges if FIRST_MONTH <= e <= now]
        first = month_start(min(max(ended, default=now), now))
    last = add_months(month_start(now), months_ahead)
    if not has_default:
        conn.execute(sa.text(f"CREATE TABLE {SCHEMA}.{DEFAULT} PARTITION OF {PARENT} DEFAULT"))
        created.append(DEFAULT)
    moved: list[tuple[str, int]] = []
    skipped: list[str] = []
    month = first
    while month <= last:
        end = add_months(month, 1)
        name = partition_name(month)
        overlapping = [(s, e) for s, e in ranges if s < end and month < e]
        if not overlapping:
            rows = _create_month(conn, name, month, end)
            created.append(name)
            if rows:
                moved.append((name, rows))
        elif not _covers(overlapping, month, end):
            log.warning(
                "climate_records: %s not created: a partition made otherwise covers part of it",
                name,
            )
            skipped.append(name)
        month = end
    if created:
        log.info("climate_records: partitions created: %s", ", ".join(created))
    return Ensured(tuple(created), tuple(moved), tuple(skipped))


def _existing(conn: sa.Connection) -> tuple[list[tuple[datetime, datetime]], bool]:
    """The ranges of the partitions attached to ``climate_records``, and whether it has a
    DEFAULT one. Bounds are read from the catalog, so a partition made by hand counts too."""
    rows = conn.execute(
        sa.text(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": PARENT},
    ).scalars()
    ranges: list[tuple[datetime, datetime]] = []
    has_default = False
    for bound in rows:
        if bound == "DEFAULT":
            has_default = True
            continue
        found = _BOUNDS.search(bound)
        if found is None:
            raise ValueError(f"climate_records: unexpected partition bound {bound!r}")
        ranges.append((_bound(found.group(1)), _bound(found.group(2))))
    return ranges, has_default


def _bound(text: str) -> datetime:
    text = text.strip("'")
    if text in ("MINVALUE", "-infinity"):
        return datetime.min.replace(tzinfo=UTC)
    if text in ("MAXVALUE", "infinity"):
        return datetime.max.replace(tzinfo=UTC)
    return datetime.fromisoformat(text)


def _covers(ranges: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    """The ranges leave no gap in ``[start, end)``."""
    at = start
    for s, e in sorted(ranges):
        if s > at:
            return False
        at = max(at, e)
        if at >= end:
            return True
    return at >= end


def _literal(at: datetime) -> str:
    return f"'{at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}+00'"


def _create_month(conn: sa.Connection, name: str, start: datetime, end: datetime) -> int:
    """Make one month's partition; return how many rows it took over from DEFAULT."""
    table, default = f"{SCHEMA}.{name}", f"{SCHEMA}.{DEFAULT}"
    window = {"start": start, "end": end}
    # No new row can reach DEFAULT between the move and the attach (which takes this lock too).
    conn.execute(sa.text(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE"))
    conn.execute(
        sa.text(f"CREATE TABLE {table} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    )
    moved = conn.execute(
        sa.text(
            f"WITH moved AS (DELETE FROM {default} "
            "WHERE occurred_at >= :start AND occurred_at < :end RETURNING *) "
            f"INSERT INTO {table} SELECT * FROM moved"
        ),
        window,
    ).rowcount
    conn.execute(
        sa.text(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {table} "
            f"FOR VALUES FROM ({_literal(start)}) TO ({_literal(end)})"
        )
    )
    if moved:
        log.warning(
            "climate_records: %d rows of %s moved from the DEFAULT partition into %s",
            moved,
            start.strftime("%Y-%m"),
            name,
        )
    return int(moved)


def partitions(bind: sa.Engine | sa.Connection) -> list[str]:
    """The names of ``climate_records``'s partitions (empty on SQLite), sorted."""
    if bind.dialect.name != "postgresql":
        return []
    query = sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(:parent) ORDER BY c.relname"
    )
    if isinstance(bind, sa.Connection):
        return list(bind.execute(query, {"parent": PARENT}).scalars())
    with bind.connect() as conn:
        return list(conn.execute(query, {"parent": PARENT}).scalars())
