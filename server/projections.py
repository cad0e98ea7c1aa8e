"""The projection seam: how a domain turns the journal into its own tables.

A projection names itself, says which event kinds it consumes, and implements three things:

- ``apply``: write what a run of one stream's events means, in sequence order, inside the
  ingest transaction that made them contiguous (or inside a catch-up or replay);
- ``redate``: correct the times of its rows of one boot once that boot's clock reference is
  known (events recorded before an agent's clock was set);
- ``reset``: remove what it derived from one stream, before a replay rebuilds it.

A projection of live state rather than history (``rebuilt = False``) is left alone by a replay:
its checkpoints move past what the replay would apply again.

Each projection has a checkpoint per stream (``projection_checkpoints``): every journaled
event of that stream up to there has been applied, in order. Live ingest applies new events to
a projection only when it is caught up; one that lags (added in a later version, or being
replayed) catches up from the journal by itself (``catch_up``), so a new domain backfills
without any change to ingest. Adding a domain means: a class with these three methods in the
domain's package, and one line in ``default_projections``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from edge_agent.wire import Event, UnknownKind, parse_event
from server.entries import server_models
from server.ingest import journal
from server.ingest.sequence import StreamState
from server.ingest.timefix import BootRef, BootRefs
from server.store.schema import projection_checkpoints, streams

if TYPE_CHECKING:
    from server.config import ServerConfig

log = logging.getLogger(__name__)

#: States whose events are applied: the primary, and a closed one up to where it was closed.
APPLIED_STATES = (StreamState.PRIMARY.value, StreamState.CLOSED.value)


@dataclass(frozen=True)
class Run:
    """Events of one stream, in sequence order, ready for the projections."""

    site_id: str
    agent_id: str
    epoch: str
    events: Sequence[Event]
    refs: BootRefs

    def when(self, event: Event) -> tuple[datetime, bool]:
        """The event's time, re-dated where its boot's clock reference allows; and whether."""
        corrected = self.refs.corrected(event)
        return (corrected, True) if corrected is not None else (event.occurred_at, False)


class Projection(Protocol):
    name: str
    kinds: frozenset[str]
    #: False for live state that a replay must not rebuild (alerts: what people were told and
    #: what they acknowledged): a replay moves its checkpoints to the end of each stream instead.
    rebuilt: bool

    def apply(self, conn: sa.Connection, run: Run) -> None: ...

    def redate(self, conn: sa.Connection, agent_id: str, boot_id: str, ref: BootRef) -> int: ...

    def reset(self, conn: sa.Connection, agent_id: str, epoch: str) -> None: ...


def default_projections(config: ServerConfig | None = None) -> list[Projection]:
    """Every domain's projection, in the order they are applied, as ``config`` sets them."""
    from server.alerts.projection import AlertsProjection
    from server.cabinet.projection import CabinetProjection
    from server.climate.projection import ClimateProjection
    from server.commands import CommandsProjection
    from server.ledger.projection import LedgerProjection

    return [
        ClimateProjection(),
        CommandsProjection(),
        CabinetProjection(),
        LedgerProjection(),
        AlertsProjection() if config is None else AlertsProjection.configured(config.alerts),
    ]


def redate_rows(
    conn: sa.Connection, tables: Sequence[sa.Table], agent_id: str, boot_id: str, ref: BootRef
) -> int:
    """Re-date the rows of ``tables`` (each with the ``_dating`` columns and ``occurred_at``)
    that an agent's boot recorded before its clock was set, now that the boot's reference is
    known; return how many. What most projections' ``redate`` is. A row is found by its id and
    its old time, so a table partitioned by time (climate records on PostgreSQL) looks in one
    partition, not in all of them."""
    fixed = 0
    for table in tables:
        rows = conn.execute(
            sa.select(table.c.id, table.c.mono_s, table.c.occurred_at).where(
                table.c.agent_id == agent_id,
                table.c.boot_id == boot_id,
                table.c.clock_synced == sa.false(),
                table.c.time_corrected == sa.false(),
            )
        ).all()
        fixes = [
            {"b_id": rid, "b_was": was, "b_at": at}
            for rid, mono, was in rows
            if (at := ref.date(mono)) is not None
        ]
        if fixes:
            conn.execute(
                table.update()
                .where(
                    table.c.id == sa.bindparam("b_id"), table.c.occurred_at == sa.bindparam("b_was")
                )
                .values(time_corrected=True, occurred_at=sa.bindparam("b_at")),
                fixes,
            )
        fixed += len(fixes)
    return fixed


# --- checkpoints ----------------------------------------------------------------------------


def checkpoints(conn: sa.Connection, stream_id: int) -> dict[str, int]:
    query = sa.select(projection_checkpoints.c.projection, projection_checkpoints.c.applied_seq)
    query = query.where(projection_checkpoints.c.stream_id == stream_id)
    return {name: int(seq) for name, seq in conn.execute(query)}


def set_checkpoint(conn: sa.Connection, name: str, stream_id: int, seq: int) -> None:
    table = projection_checkpoints
    done = conn.execute(
        table.update()
        .where(table.c.projection == name, table.c.stream_id == stream_id)
        .values(applied_seq=seq)
    )
    if done.rowcount == 0:
        conn.execute(table.insert().values(projection=name, stream_id=stream_id, applied_seq=seq))


# --- reading the journal back -----------------------------------------------------------------


def understood(
    rows: list[journal.JournalRow],
    raws: dict[int, list[object]],
    models: dict[str, type[BaseModel]],
) -> list[tuple[journal.JournalRow, Event]]:
    """Parse journaled events with this server's schema; those it cannot parse are skipped."""
    out = []
    for row in rows:
        if row.status == "rejected":
            continue
        raw = raws[row.message_id][row.idx]
        if not isinstance(raw, dict):
            continue
        try:
            out.append((row, parse_event(raw, models)))
        except (UnknownKind, ValidationError):
            continue  # still not understood by this version
    return out


def catch_up(
    conn: sa.Connection,
    projection: Projection,
    stream: journal.StreamRow,
    site_id: str,
    models: dict[str, type[BaseModel]] | None = None,
    limit: int = 5000,
) -> int:
    """Apply up to ``limit`` journaled events the projection has not applied; return how many
    sequence numbers it moved. The caller holds the agent's lock."""
    models = models if models is not None else server_models()
    done = checkpoints(conn, stream.id).get(projection.name, 0)
    if stream.state not in APPLIED_STATES or done >= stream.acked:
        return 0
    rows = journal.read(conn, stream.id, done, stream.acked, limit)
    upto = stream.acked if len(rows) < limit else rows[-1].seq + rows[-1].span - 1
    wanted = [r for r in rows if r.kind in projection.kinds]
    raws = journal.load_raw(conn, {r.message_id for r in wanted})
    parsed = understood(wanted, raws, models)
    refs = BootRefs(stream.agent_id)
    refs.load(conn, {e.boot_id for _, e in parsed})
    if parsed:
        projection.apply(
            conn, Run(site_id, stream.agent_id, stream.epoch, [e for _, e in parsed], refs)
        )
    set_checkpoint(conn, projection.name, stream.id, upto)
    return upto - done


def lagging(conn: sa.Connection, projection: Projection) -> list[int]:
    """Streams whose applied events the projection has not all applied yet."""
    cp = projection_checkpoints
    query = (
        sa.select(streams.c.id)
        .select_from(
            streams.outerjoin(
                cp, sa.and_(cp.c.stream_id == streams.c.id, cp.c.projection == projection.name)
            )
        )
        .where(
            streams.c.state.in_(APPLIED_STATES),
            sa.func.coalesce(cp.c.applied_seq, 0) < streams.c.acked_seq,
        )
        .order_by(streams.c.id)
    )
    return list(conn.execute(query).scalars())


# --- replay ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replayed:
    projection: str
    agent_id: str
    epoch: str
    events: int
    now_understood: int


def replay(
    engine: sa.Engine,
    projections: Sequence[Projection],
    agent_id: str | None = None,
    models: dict[str, type[BaseModel]] | None = None,
    chunk: int = 5000,
) -> list[Replayed]:
    """Rebuild projections from the journal, idempotently.

    Per stream: under the agent's lock, each projection forgets what it derived from the
    stream and applies the journal again from seq 1, in chunks (live ingest meanwhile finds
    the projection lagging and leaves it to the replay). Events journaled as not understood
    that this version understands are marked understood, so they are applied from now on.
    """
    models = models if models is not None else server_models()
    with engine.connect() as conn:
        query = sa.select(streams.c.id, streams.c.agent_id).where(
            streams.c.state.in_(APPLIED_STATES)
        )
        if agent_id is not None:
            query = query.where(streams.c.agent_id == agent_id)
        targets = conn.execute(query.order_by(streams.c.agent_id, streams.c.id)).all()
    done: list[Replayed] = []
    for stream_id, agent in targets:
        with engine.begin() as conn:
            site = journal.lock_agent(conn, agent).site_id
            now_understood = _mark_understood(conn, journal.stream_by_id(conn, stream_id), models)
            stream = journal.stream_by_id(conn, stream_id)
            for projection in projections:
                if projection.rebuilt:
                    projection.reset(conn, stream.agent_id, stream.epoch)
                    set_checkpoint(conn, projection.name, stream.id, 0)
                else:
                    set_checkpoint(conn, projection.name, stream.id, stream.acked)
        for projection in (p for p in projections if p.rebuilt):
            moved = 0
            while True:
                with engine.begin() as conn:
                    journal.lock_agent(conn, agent)
                    stream = journal.stream_by_id(conn, stream_id)
                    step = catch_up(conn, projection, stream, site, models, chunk)
                if not step:
                    break
                moved += step
            done.append(Replayed(projection.name, agent, stream.epoch, moved, now_understood))
            log.info(
                "replayed %s for agent %s epoch %s: %d numbers",
                projection.name,
                agent,
                stream.epoch,
                moved,
            )
    return done


def _mark_understood(
    conn: sa.Connection, stream: journal.StreamRow, models: dict[str, type[BaseModel]]
) -> int:
    rows = journal.unknown(conn, stream.id)
    if not rows:
        return 0
    raws = journal.load_raw(conn, {r.message_id for r in rows})
    now_ok = [row.seq for row, _ in understood(rows, raws, models)]
    journal.set_status(conn, stream.id, now_ok, "ok")
    journal.count_on_stream(conn, stream.id, not_understood=-len(now_ok))
    return len(now_ok)
