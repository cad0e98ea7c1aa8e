"""Ingest: the only writer of what agents report.

Every message is validated against the wire schema and checked against the topic it came on.
Each event is stored once per (agent, epoch, seq) in the ``events`` journal, and the derived
tables (climate records, summaries, command results) are written strictly in sequence order:
events after a gap are stored but held back until the gap fills. What cannot be understood is
dead-lettered, never dropped silently. The result says the highest contiguous sequence number
now durably stored, which is what the agent is acknowledged.

Nothing here assumes one process: duplicates are refused by the primary key, and the agent's
row is locked (``FOR UPDATE`` on PostgreSQL; SQLite serialises writers) while a batch of its
events is stored, so two ingest processes never interleave one agent's progress.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite

from edge_agent.wire import (
    AgentStatus,
    Channel,
    ClimateRecordEvent,
    ClimateSummaryEvent,
    CommandResultEvent,
    Event,
    EventBatch,
    TopicError,
    TypedEventBatch,
    parse_event,
    parse_topic,
)
from server.store.db import bulk_insert, db_time, utc
from server.store.schema import (
    agents,
    boot_refs,
    climate_records,
    climate_summaries,
    commands,
    dead_letters,
    events,
    lost_ranges,
)

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024

EVENT_COLUMNS = (
    "agent_id", "epoch", "seq", "span", "received_at", "body", "status", "error", "applied",
    "event_id", "kind", "occurred_at", "agent_occurred_at", "clock_synced", "time_corrected",
    "boot_id", "mono_s",
)  # fmt: skip
RECORD_COLUMNS = (
    "agent_id", "epoch", "seq", "site_id", "storeroom", "sensor", "serial", "temperature_c",
    "humidity_pct", "raw_temperature_c", "raw_humidity_pct", "quality", "occurred_at",
    "agent_occurred_at", "clock_synced", "time_corrected",
)  # fmt: skip
SUMMARY_COLUMNS = (
    "agent_id", "epoch", "seq", "site_id", "storeroom", "sensor", "count", "first_at",
    "last_at", "temperature_min_c", "temperature_mean_c", "temperature_max_c",
    "humidity_min_pct", "humidity_mean_pct", "humidity_max_pct",
)  # fmt: skip


@dataclass(frozen=True)
class IngestResult:
    site_id: str | None = None
    agent_id: str | None = None
    epoch: str | None = None
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    dead_lettered: bool = False
    acked_seq: int | None = None
    highest_seq: int | None = None


@dataclass
class _Agent:
    epoch: str | None
    acked: int
    highest: int
    gap_since: datetime | None


@dataclass
class _Incoming:
    seq: int
    span: int
    body: str
    event: Event | None
    error: str | None


@dataclass
class _Batch:
    """A validated event batch, ready to be stored."""

    topic: str
    site: str
    agent: str
    epoch: str
    incoming: list[_Incoming]
    stray: list[tuple[bytes, str]]
    payload: bytes


@dataclass
class _Status:
    topic: str
    site: str
    agent: str
    status: AgentStatus
    payload: bytes


@dataclass
class _DeadLetter:
    topic: str
    payload: bytes
    reason: str


@dataclass
class _Nothing:
    site: str
    agent: str


_Prepared = _Batch | _Status | _DeadLetter | _Nothing


@dataclass
class _Refs:
    """Boot references known for an agent: boot_id -> (wall time, monotonic seconds)."""

    known: dict[str, tuple[datetime, float]] = field(default_factory=dict)
    new: dict[str, tuple[datetime, float]] = field(default_factory=dict)

    def corrected(self, event: Event) -> datetime | None:
        ref = self.known.get(event.boot_id) or self.new.get(event.boot_id)
        if event.clock_synced or ref is None:
            return None
        wall, mono = ref
        try:
            return wall + timedelta(seconds=event.mono_s - mono)
        except OverflowError:
            return None  # nonsense monotonic time: keep the agent's own


def _brief(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    more = exc.error_count() - 3
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _count(value: object, below: int) -> int:
    """``value`` if it is a whole number from 1 to ``below - 1``, else 0."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value < below
    return value if ok else 0  # type: ignore[return-value]


class _Refused(Exception):
    """The whole batch is refused; ``str()`` is the dead-letter reason."""


class Ingestor:
    def __init__(
        self, engine: sa.Engine, topic_prefix: str, *, gap_report_after_s: float = 3600.0
    ) -> None:
        self.engine = engine
        self.prefix = topic_prefix
        self.gap_report_after = timedelta(seconds=gap_report_after_s)
        self._postgres = engine.dialect.name == "postgresql"
        self._t = db_time(engine)

    def _insert_ignore(self, table: sa.Table) -> Any:
        """An INSERT that leaves an existing row alone, in the engine's dialect."""
        if self._postgres:
            return postgresql.insert(table).on_conflict_do_nothing()
        return sqlite.insert(table).on_conflict_do_nothing()

    # --- entry point ----------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, now: datetime) -> IngestResult:
        """Process one message from the broker; raise only on database failure."""
        return self.handle_many([(topic, payload)], now)[0]

    def handle_many(self, messages: list[tuple[str, bytes]], now: datetime) -> list[IngestResult]:
        """Process several messages in one transaction (one disk flush), in order.

        Validation happens before the transaction; a message that is refused is dead-lettered
        inside it without disturbing the others. Raises only on database failure, and then
        nothing of the group is stored.
        """
        prepared = [self._prepare(topic, payload) for topic, payload in messages]
        try:
            with self.engine.begin() as conn:
                return [self._commit_one(conn, item, now) for item in prepared]
        except sa.exc.SQLAlchemyError:
            raise
        except Exception as exc:  # a bug meeting odd input must cost one message, not ingest
            if len(prepared) > 1:
                log.warning("a group failed (%r); storing its messages one by one", exc)
                return [r for t, p in messages for r in self.handle_many([(t, p)], now)]
            topic, payload = messages[0]
            log.exception("message from %s could not be processed; dead-lettered", topic)
            with self.engine.begin() as conn:
                self._insert_dead_letter(conn, topic, payload, f"processing failed: {exc!r}", now)
            return [IngestResult(dead_lettered=True)]

    def _commit_one(self, conn: sa.Connection, item: _Prepared, now: datetime) -> IngestResult:
        if isinstance(item, _DeadLetter):
            log.error("dead letter from %s: %s", item.topic, item.reason)
            self._insert_dead_letter(conn, item.topic, item.payload, item.reason, now)
            return IngestResult(dead_lettered=True)
        if isinstance(item, _Nothing):
            return IngestResult(item.site, item.agent)
        try:
            if isinstance(item, _Status):
                self._store_status(conn, item, now)
                return IngestResult(item.site, item.agent)
            result = self._store(conn, item.site, item.agent, item.epoch, item.incoming, now)
        except _Refused as exc:
            log.error("dead letter from %s: %s", item.topic, exc)
            self._insert_dead_letter(conn, item.topic, item.payload, str(exc), now)
            return IngestResult(dead_lettered=True)
        for raw, error in item.stray:
            self._insert_dead_letter(conn, item.topic, raw, error, now)
        if item.stray:
            log.error(
                "agent %s: %d events dead-lettered: %s",
                item.agent,
                len(item.stray),
                item.stray[0][1],
            )
        return result

    # --- validation (outside any transaction) ----------------------------------------------

    def _prepare(self, topic: str, payload: bytes) -> _Prepared:
        try:
            site, agent, channel = parse_topic(self.prefix, topic)
        except TopicError as exc:
            return _DeadLetter(topic, payload, str(exc))
        if channel is Channel.STATUS:
            return self._prepare_status(site, agent, topic, payload)
        if channel is not Channel.EVENTS:
            return _DeadLetter(topic, payload, f"server does not consume {channel}")
        if len(payload) > MAX_PAYLOAD_BYTES:
            return _DeadLetter(topic, b"", f"payload of {len(payload)} bytes too big")
        try:
            typed = TypedEventBatch.model_validate_json(payload)
        except ValidationError:
            pass  # the slow path below finds out which events are bad
        else:
            if typed.agent_id == agent and all(e.agent_id == agent for e in typed.events):
                incoming = [
                    _Incoming(e.seq, e.span, e.model_dump_json(exclude_none=True), e, None)
                    for e in typed.events
                ]
                return _Batch(topic, site, agent, typed.epoch, incoming, [], payload)
        try:
            batch = EventBatch.model_validate_json(payload)
        except ValidationError as exc:
            return _DeadLetter(topic, payload, f"not an event batch: {_brief(exc)}")
        if batch.agent_id != agent:
            reason = f"batch agent_id {batch.agent_id!r} differs from topic agent {agent!r}"
            return _DeadLetter(topic, payload, reason)
        incoming, stray = self._classify(agent, batch.events)
        return _Batch(topic, site, agent, batch.epoch, incoming, stray, payload)

    def _prepare_status(self, site: str, agent: str, topic: str, payload: bytes) -> _Prepared:
        if not payload:
            return _Nothing(site, agent)  # a cleared retained message
        try:
            status = AgentStatus.model_validate_json(payload)
        except ValidationError as exc:
            return _DeadLetter(topic, payload, f"not an agent status: {_brief(exc)}")
        if status.agent_id != agent:
            reason = f"status agent_id {status.agent_id!r} differs from topic agent {agent!r}"
            return _DeadLetter(topic, payload, reason)
        return _Status(topic, site, agent, status, payload)

    def _classify(
        self, agent: str, raws: list[dict[str, Any]]
    ) -> tuple[list[_Incoming], list[tuple[bytes, str]]]:
        """Validate events one by one; a bad one with a usable seq is kept as rejected."""
        incoming: list[_Incoming] = []
        stray: list[tuple[bytes, str]] = []
        for raw in raws:
            body = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
            try:
                event = parse_event(raw)
            except ValidationError as exc:
                seq, span = _count(raw.get("seq"), 2**62), _count(raw.get("span", 1), 10**7)
                if seq and span:
                    # Kept as rejected, over every number it claims, so the sequence goes on.
                    incoming.append(_Incoming(seq, span, body, None, _brief(exc)))
                else:
                    stray.append((body.encode(), _brief(exc)))
                continue
            if event.agent_id != agent:
                reason = f"event agent_id {event.agent_id!r} differs from {agent!r}"
                stray.append((body.encode(), reason))
                continue
            incoming.append(_Incoming(event.seq, event.span, body, event, None))
        return incoming, stray

    # --- storing ----------------------------------------------------------------------------

    def _lock_agent(
        self, conn: sa.Connection, site: str, agent: str, epoch: str | None, now: datetime
    ) -> _Agent:
        conn.execute(
            self._insert_ignore(agents).values(
                agent_id=agent, site_id=site, acked_seq=0, first_seen_at=now, last_seen_at=now
            )
        )
        row = conn.execute(
            sa.select(
                agents.c.site_id,
                agents.c.epoch,
                agents.c.acked_seq,
                agents.c.highest_seq,
                agents.c.gap_since,
            )
            .where(agents.c.agent_id == agent)
            .with_for_update()
        ).one()
        if row.site_id != site:
            raise _Refused(f"agent {agent!r} belongs to site {row.site_id!r}, not {site!r}")
        state = _Agent(row.epoch, int(row.acked_seq), int(row.highest_seq), row.gap_since)
        if epoch is not None and epoch != state.epoch:
            state = self._new_epoch(conn, site, agent, state, epoch, now)
        conn.execute(agents.update().where(agents.c.agent_id == agent).values(last_seen_at=now))
        return state

    def _new_epoch(
        self,
        conn: sa.Connection,
        site: str,
        agent: str,
        state: _Agent,
        epoch: str,
        now: datetime,
    ) -> _Agent:
        seen = conn.execute(
            sa.select(events.c.seq).where(events.c.agent_id == agent, events.c.epoch == epoch)
        ).first()
        if seen is not None:
            return _Agent(epoch, -1, -1, None)  # a late batch of an epoch already left behind
        if state.epoch is None:
            # The agent's first epoch (or an agent from before epochs, whose outbox migration
            # kept its numbering): its progress so far carries over.
            conn.execute(agents.update().where(agents.c.agent_id == agent).values(epoch=epoch))
            return _Agent(epoch, state.acked, state.highest, state.gap_since)
        if state.epoch is not None:
            log.warning(
                "agent %s starts outbox epoch %s; epoch %s ends at acked seq %d",
                agent,
                epoch,
                state.epoch,
                state.acked,
            )
            conn.execute(
                lost_ranges.insert().values(
                    agent_id=agent,
                    epoch=state.epoch,
                    from_seq=state.acked + 1,
                    to_seq=None,
                    reason="agent started a new outbox epoch; later events of this one are lost",
                    recorded_at=now,
                )
            )
            self._apply_held_back(conn, site, agent, state.epoch)
        conn.execute(
            agents.update()
            .where(agents.c.agent_id == agent)
            .values(epoch=epoch, acked_seq=0, highest_seq=0, gap_since=None, gap_reported_at=None)
        )
        return _Agent(epoch, 0, 0, None)

    def _store(
        self,
        conn: sa.Connection,
        site: str,
        agent: str,
        epoch: str,
        incoming: list[_Incoming],
        now: datetime,
    ) -> IngestResult:
        state = self._lock_agent(conn, site, agent, epoch, now)
        late = state.acked < 0
        existing: set[int] = set()
        if incoming:
            lo, hi = min(i.seq for i in incoming), max(i.seq for i in incoming)
            existing = set(
                conn.execute(
                    sa.select(events.c.seq).where(
                        events.c.agent_id == agent,
                        events.c.epoch == epoch,
                        events.c.seq.between(lo, hi),
                    )
                ).scalars()
            )
        fresh: dict[int, _Incoming] = {}
        for item in incoming:
            if item.seq not in existing and item.seq not in fresh:
                fresh[item.seq] = item
        duplicates = len(incoming) - len(fresh)
        refs = self._boot_refs(conn, agent, [i.event for i in fresh.values() if i.event])
        # Common case: nothing is held back, so the events that continue the sequence are
        # applied right away and stored as applied (no second write of their rows).
        in_order: list[int] = []
        acked = state.acked
        if not late and state.highest <= state.acked:
            for seq in sorted(fresh):
                if seq != acked + 1:
                    break
                acked = seq + fresh[seq].span - 1
                in_order.append(seq)
        if fresh:
            received = self._t(now)
            now_applied = set(in_order)
            rows = [
                self._event_row(agent, epoch, i, refs, received, i.seq in now_applied)
                for i in fresh.values()
            ]
            bulk_insert(conn, events, EVENT_COLUMNS, rows)
        rejected = sum(1 for i in fresh.values() if i.event is None)
        for item in fresh.values():
            if item.event is None:
                log.error("agent %s seq %d rejected: %s", agent, item.seq, item.error)
        if late:
            log.warning("agent %s: late batch of old epoch %s stored", agent, epoch)
            self._apply(
                conn, site, agent, epoch, [i.event for i in fresh.values() if i.event], refs
            )
            self._mark_applied(conn, agent, epoch, list(fresh))
            return IngestResult(site, agent, epoch, len(fresh) - rejected, duplicates, rejected)
        self._correct_earlier(conn, agent, refs)
        acked, highest = self._advance(
            conn, site, agent, epoch, state, fresh, in_order, acked, refs, now
        )
        return IngestResult(
            site, agent, epoch, len(fresh) - rejected, duplicates, rejected, False, acked, highest
        )

    def _event_row(
        self,
        agent: str,
        epoch: str,
        item: _Incoming,
        refs: _Refs,
        received: object,
        applied: bool,
    ) -> tuple[object, ...]:
        """A row in ``EVENT_COLUMNS`` order, times already in the database's form."""
        e = item.event
        if e is None:
            return (
                agent,
                epoch,
                item.seq,
                item.span,
                received,
                item.body,
                "rejected",
                item.error,
                applied,
                None,
                None,
                None,
                None,
                None,
                False,
                None,
                None,
            )
        corrected = refs.corrected(e)
        agent_time = self._t(e.occurred_at)
        return (
            agent, epoch, item.seq, item.span, received, item.body, "ok", None, applied,
            str(e.id), e.kind, self._t(corrected) if corrected else agent_time, agent_time,
            e.clock_synced, corrected is not None, e.boot_id, e.mono_s,
        )  # fmt: skip

    def _advance(
        self,
        conn: sa.Connection,
        site: str,
        agent: str,
        epoch: str,
        state: _Agent,
        fresh: dict[int, _Incoming],
        in_order: list[int],
        acked: int,
        refs: _Refs,
        now: datetime,
    ) -> tuple[int, int]:
        """Apply what continues the sequence, in order, and move ``acked`` past it."""
        highest = max([state.highest, *(i.seq + i.span - 1 for i in fresh.values())])
        ready = [e for seq in in_order if (e := fresh[seq].event) is not None]
        if acked < highest:
            walked: list[int] = []
            acked = self._advance_stored(conn, agent, epoch, acked, fresh, ready, walked)
            self._load_refs(conn, agent, {e.boot_id for e in ready} - set(refs.known), refs)
            self._mark_applied(conn, agent, epoch, walked)
        self._apply(conn, site, agent, epoch, ready, refs)
        gap_since = state.gap_since if acked < highest else None
        if acked < highest and gap_since is None:
            gap_since = now
        values: dict[str, Any] = {
            "acked_seq": acked,
            "highest_seq": highest,
            "gap_since": gap_since,
        }
        if gap_since is None:
            values["gap_reported_at"] = None
        elif now - utc(gap_since) > self.gap_report_after:
            log.error(
                "agent %s: seq %d missing for %s; %d later events held back",
                agent,
                acked + 1,
                now - utc(gap_since),
                highest - acked,
            )
            values["gap_reported_at"] = now
        conn.execute(agents.update().where(agents.c.agent_id == agent).values(**values))
        return acked, highest

    def _advance_stored(
        self,
        conn: sa.Connection,
        agent: str,
        epoch: str,
        acked: int,
        fresh: dict[int, _Incoming],
        ready: list[Event],
        applied_seqs: list[int],
    ) -> int:
        """Walk events already stored (held back after a gap) for ones that became contiguous."""
        while True:
            rows = conn.execute(
                sa.select(events.c.seq, events.c.span, events.c.status, events.c.body)
                .where(events.c.agent_id == agent, events.c.epoch == epoch, events.c.seq > acked)
                .order_by(events.c.seq)
                .limit(2000)
            ).all()
            for seq, span, status, body in rows:
                if seq != acked + 1:
                    return acked
                acked = seq + span - 1
                applied_seqs.append(seq)
                item = fresh.get(seq)
                if item is not None:
                    if item.event is not None:
                        ready.append(item.event)
                elif status == "ok":
                    ready.append(parse_event(json.loads(body)))
            if len(rows) < 2000:
                return acked

    def _apply_held_back(self, conn: sa.Connection, site: str, agent: str, epoch: str) -> None:
        """An epoch that ended with a gap: what waited behind it is applied after all."""
        rows = conn.execute(
            sa.select(events.c.seq, events.c.body)
            .where(
                events.c.agent_id == agent,
                events.c.epoch == epoch,
                events.c.applied.is_(False),
                events.c.status == "ok",
            )
            .order_by(events.c.seq)
        ).all()
        if rows:
            held = [parse_event(json.loads(body)) for _, body in rows]
            refs = _Refs()
            self._load_refs(conn, agent, {e.boot_id for e in held}, refs)
            self._apply(conn, site, agent, epoch, held, refs)
            self._mark_applied(conn, agent, epoch, [seq for seq, _ in rows])

    def _mark_applied(self, conn: sa.Connection, agent: str, epoch: str, seqs: list[int]) -> None:
        if not seqs:
            return
        lo, hi = min(seqs), max(seqs)
        which = events.c.seq.between(lo, hi) if len(seqs) == hi - lo + 1 else events.c.seq.in_(seqs)
        conn.execute(
            events.update()
            .where(events.c.agent_id == agent, events.c.epoch == epoch, which)
            .values(applied=True)
        )

    # --- deriving -----------------------------------------------------------------------------

    def _apply(
        self,
        conn: sa.Connection,
        site: str,
        agent: str,
        epoch: str,
        ready: Iterable[Event],
        refs: _Refs,
    ) -> None:
        """Write the derived tables for events now in order."""
        records: list[tuple[object, ...]] = []
        summaries: list[tuple[object, ...]] = []
        t = self._t
        for e in ready:
            if isinstance(e, ClimateRecordEvent):
                p = e.payload
                corrected = refs.corrected(e)
                agent_time = t(e.occurred_at)
                records.append(
                    (
                        agent, epoch, e.seq, site, p.storeroom, p.sensor, p.serial,
                        p.temperature_c, p.humidity_pct, p.raw_temperature_c, p.raw_humidity_pct,
                        ",".join(p.quality), t(corrected) if corrected else agent_time,
                        agent_time, e.clock_synced, corrected is not None,
                    )
                )  # fmt: skip
            elif isinstance(e, ClimateSummaryEvent):
                for m in e.payload.sensors:
                    summaries.append(
                        (
                            agent, epoch, e.seq, site, m.storeroom, m.sensor, m.count,
                            t(m.first_at), t(m.last_at), m.temperature_min_c,
                            m.temperature_mean_c, m.temperature_max_c, m.humidity_min_pct,
                            m.humidity_mean_pct, m.humidity_max_pct,
                        )
                    )  # fmt: skip
            elif isinstance(e, CommandResultEvent):
                r = e.payload
                conn.execute(
                    commands.update()
                    .where(commands.c.id == str(r.command_id), commands.c.agent_id == agent)
                    .values(result_ok=r.ok, result_detail=r.detail, result_at=e.occurred_at)
                )
        bulk_insert(conn, climate_records, RECORD_COLUMNS, records)
        bulk_insert(conn, climate_summaries, SUMMARY_COLUMNS, summaries)

    # --- time without a real-time clock --------------------------------------------------------

    def _boot_refs(self, conn: sa.Connection, agent: str, batch: list[Event]) -> _Refs:
        refs = _Refs()
        self._load_refs(conn, agent, {e.boot_id for e in batch}, refs)
        for e in batch:
            if e.clock_synced and e.boot_id not in refs.known and e.boot_id not in refs.new:
                refs.new[e.boot_id] = (e.occurred_at, e.mono_s)
        if refs.new:
            conn.execute(
                boot_refs.insert(),
                [
                    {"agent_id": agent, "boot_id": b, "wall_at": w, "mono_s": m}
                    for b, (w, m) in refs.new.items()
                ],
            )
        return refs

    @staticmethod
    def _load_refs(conn: sa.Connection, agent: str, boots: set[str], refs: _Refs) -> None:
        if not boots:
            return
        for boot, wall, mono in conn.execute(
            sa.select(boot_refs.c.boot_id, boot_refs.c.wall_at, boot_refs.c.mono_s).where(
                boot_refs.c.agent_id == agent, boot_refs.c.boot_id.in_(boots)
            )
        ):
            refs.known[boot] = (utc(wall), float(mono))

    def _correct_earlier(self, conn: sa.Connection, agent: str, refs: _Refs) -> None:
        """Re-date events stored before their boot's clock was known."""
        for boot, (wall, mono) in refs.new.items():
            rows = conn.execute(
                sa.select(events.c.epoch, events.c.seq, events.c.mono_s).where(
                    events.c.agent_id == agent,
                    events.c.boot_id == boot,
                    events.c.clock_synced.is_(False),
                    events.c.time_corrected.is_(False),
                )
            ).all()
            if not rows:
                continue
            fixes = []
            for ep, seq, m in rows:
                try:
                    fixes.append(
                        {"b_epoch": ep, "b_seq": seq, "b_at": wall + timedelta(seconds=m - mono)}
                    )
                except OverflowError:
                    log.warning("agent %s seq %d: monotonic time %s unusable", agent, seq, m)
            if not fixes:
                continue
            for table in (events, climate_records):
                conn.execute(
                    table.update()
                    .where(
                        table.c.agent_id == agent,
                        table.c.epoch == sa.bindparam("b_epoch"),
                        table.c.seq == sa.bindparam("b_seq"),
                    )
                    .values(occurred_at=sa.bindparam("b_at"), time_corrected=True),
                    fixes,
                )
            log.info("agent %s: %d events of boot %s re-dated", agent, len(fixes), boot)

    # --- status and dead letters -------------------------------------------------------------

    def _store_status(self, conn: sa.Connection, item: _Status, now: datetime) -> None:
        self._lock_agent(conn, item.site, item.agent, None, now)
        conn.execute(
            agents.update()
            .where(agents.c.agent_id == item.agent)
            .values(online=item.status.online, status=item.status.model_dump_json(), status_at=now)
        )

    @staticmethod
    def _insert_dead_letter(
        conn: sa.Connection, topic: str, payload: bytes, reason: str | None, now: datetime
    ) -> None:
        conn.execute(
            dead_letters.insert().values(
                received_at=now, topic=topic, reason=reason or "", payload=payload
            )
        )
