"""Ingest: the only writer of what agents report.

Every message is validated against the wire schema, checked against the topic it came on,
stored once per (agent, seq) and applied to the derived tables in the same transaction. What
cannot be understood is dead-lettered, never dropped silently. The result says the highest
contiguous sequence number now durably stored, which is what the agent is acknowledged.

Nothing here assumes one process: duplicates are refused by the primary key, and the agent's
row is locked (``FOR UPDATE`` on PostgreSQL; SQLite serialises writers) while its progress moves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite

from edge_agent.wire import (
    AgentStatus,
    Channel,
    ClimateRecordEvent,
    Event,
    EventBatch,
    TopicError,
    parse_event,
    parse_topic,
)
from server.store.schema import agents, climate_records, dead_letters, events

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class IngestResult:
    site_id: str | None = None
    agent_id: str | None = None
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    dead_lettered: bool = False
    acked_seq: int | None = None
    highest_seq: int | None = None


def _brief(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    more = exc.error_count() - 3
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _insert(engine: sa.Engine, table: sa.Table) -> Any:
    """An INSERT that ignores a conflicting row, in the engine's dialect."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


class Ingestor:
    def __init__(self, engine: sa.Engine, topic_prefix: str) -> None:
        self.engine = engine
        self.prefix = topic_prefix

    # --- entry points ---------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, now: datetime) -> IngestResult:
        """Process one message from the broker; raise only on database failure."""
        try:
            site, agent, channel = parse_topic(self.prefix, topic)
        except TopicError as exc:
            return self._dead_letter(topic, payload, str(exc), now)
        if channel is Channel.STATUS:
            return self._status(site, agent, topic, payload, now)
        if channel is not Channel.EVENTS:
            return self._dead_letter(topic, payload, f"server does not consume {channel}", now)
        if len(payload) > MAX_PAYLOAD_BYTES:
            return self._dead_letter(topic, b"", f"payload of {len(payload)} bytes too big", now)
        try:
            batch = EventBatch.model_validate_json(payload)
        except ValidationError as exc:
            return self._dead_letter(topic, payload, f"not an event batch: {_brief(exc)}", now)
        if batch.agent_id != agent:
            reason = f"batch agent_id {batch.agent_id!r} differs from topic agent {agent!r}"
            return self._dead_letter(topic, payload, reason, now)
        return self._store_batch(site, agent, topic, batch, now)

    # --- events -----------------------------------------------------------------------------

    def _classify(
        self, agent: str, raw: dict[str, Any]
    ) -> tuple[int | None, Event | None, str | None]:
        """Return (seq, event, error). A bad event with a usable seq is kept as rejected."""
        seq = raw.get("seq")
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1 else None
        try:
            event = parse_event(raw)
        except ValidationError as exc:
            return seq, None, _brief(exc)
        if event.agent_id != agent:
            return None, None, f"event agent_id {event.agent_id!r} differs from topic {agent!r}"
        return event.seq, event, None

    def _store_batch(
        self, site: str, agent: str, topic: str, batch: EventBatch, now: datetime
    ) -> IngestResult:
        stored = duplicates = rejected = 0
        with self.engine.begin() as conn:
            self._lock_agent(conn, site, agent, now)
            for raw in batch.events:
                seq, event, error = self._classify(agent, raw)
                if seq is None:
                    log.error("agent %s: event without usable seq dead-lettered: %s", agent, error)
                    self._insert_dead_letter(conn, topic, json.dumps(raw).encode(), error, now)
                    rejected += 1
                    continue
                row: dict[str, Any] = {
                    "agent_id": agent,
                    "seq": seq,
                    "received_at": now,
                    "body": json.dumps(raw, ensure_ascii=False),
                    "status": "ok" if event else "rejected",
                    "error": error,
                }
                if event is not None:
                    row |= {
                        "event_id": str(event.id),
                        "kind": event.kind,
                        "occurred_at": event.occurred_at,
                        "clock_synced": event.clock_synced,
                    }
                inserted = conn.execute(_insert(self.engine, events).values(**row)).rowcount
                if not inserted:
                    duplicates += 1
                    continue
                if event is None:
                    log.error("agent %s seq %d rejected: %s", agent, seq, error)
                    rejected += 1
                    continue
                self._apply(conn, site, event)
                stored += 1
            acked = self._advance(conn, agent)
            highest = conn.execute(
                sa.select(sa.func.max(events.c.seq)).where(events.c.agent_id == agent)
            ).scalar()
        return IngestResult(site, agent, stored, duplicates, rejected, False, acked, highest)

    def _lock_agent(self, conn: sa.Connection, site: str, agent: str, now: datetime) -> None:
        conn.execute(
            _insert(self.engine, agents).values(
                agent_id=agent, site_id=site, acked_seq=0, first_seen_at=now, last_seen_at=now
            )
        )
        conn.execute(
            sa.select(agents.c.agent_id).where(agents.c.agent_id == agent).with_for_update()
        )
        conn.execute(agents.update().where(agents.c.agent_id == agent).values(last_seen_at=now))

    def _apply(self, conn: sa.Connection, site: str, event: Event) -> None:
        """Derive the domain tables from one new event."""
        if isinstance(event, ClimateRecordEvent):
            p = event.payload
            conn.execute(
                climate_records.insert().values(
                    agent_id=event.agent_id,
                    seq=event.seq,
                    site_id=site,
                    storeroom=p.storeroom,
                    sensor=p.sensor,
                    serial=p.serial,
                    temperature_c=p.temperature_c,
                    humidity_pct=p.humidity_pct,
                    raw_temperature_c=p.raw_temperature_c,
                    raw_humidity_pct=p.raw_humidity_pct,
                    quality=",".join(p.quality),
                    occurred_at=event.occurred_at,
                    clock_synced=event.clock_synced,
                )
            )

    def _advance(self, conn: sa.Connection, agent: str) -> int:
        """Move the agent's acknowledged seq over every contiguous stored event."""
        acked = int(
            conn.execute(
                sa.select(agents.c.acked_seq).where(agents.c.agent_id == agent)
            ).scalar_one()
        )
        start = acked
        while True:
            seqs = (
                conn.execute(
                    sa.select(events.c.seq)
                    .where(events.c.agent_id == agent, events.c.seq > acked)
                    .order_by(events.c.seq)
                    .limit(5000)
                )
                .scalars()
                .all()
            )
            for seq in seqs:
                if seq != acked + 1:
                    break
                acked = seq
            else:
                if len(seqs) == 5000:
                    continue
            break
        if acked != start:
            conn.execute(agents.update().where(agents.c.agent_id == agent).values(acked_seq=acked))
        return acked

    # --- status and dead letters -------------------------------------------------------------

    def _status(
        self, site: str, agent: str, topic: str, payload: bytes, now: datetime
    ) -> IngestResult:
        if not payload:
            return IngestResult(site, agent)  # a cleared retained message
        try:
            status = AgentStatus.model_validate_json(payload)
        except ValidationError as exc:
            return self._dead_letter(topic, payload, f"not an agent status: {_brief(exc)}", now)
        if status.agent_id != agent:
            reason = f"status agent_id {status.agent_id!r} differs from topic agent {agent!r}"
            return self._dead_letter(topic, payload, reason, now)
        with self.engine.begin() as conn:
            self._lock_agent(conn, site, agent, now)
            conn.execute(
                agents.update()
                .where(agents.c.agent_id == agent)
                .values(online=status.online, status=status.model_dump_json(), status_at=now)
            )
        return IngestResult(site, agent)

    def _dead_letter(self, topic: str, payload: bytes, reason: str, now: datetime) -> IngestResult:
        log.error("dead letter from %s: %s", topic, reason)
        with self.engine.begin() as conn:
            self._insert_dead_letter(conn, topic, payload, reason, now)
        return IngestResult(dead_lettered=True)

    @staticmethod
    def _insert_dead_letter(
        conn: sa.Connection, topic: str, payload: bytes, reason: str | None, now: datetime
    ) -> None:
        conn.execute(
            dead_letters.insert().values(
                received_at=now, topic=topic, reason=reason or "", payload=payload
            )
        )
