"""What a message is, before any storage: pure functions of (topic, payload).

Each event of a batch ends up in one of three classes:

- understood: valid against this server's wire schema;
- not yet understood: a well-formed event envelope whose kind, or some field, this server does
  not know (from a newer agent). It is journaled, fills its sequence number, and is applied by
  ``events replay`` once the server is upgraded; never silently applied, never lost;
- malformed: anything else (bad types, impossible values, no usable sequence number). It is
  dead-lettered with its reason and fills nothing: its claimed number and span are not believed,
  so a real event with that number is still accepted later.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.wire import (
    AgentStatus,
    Channel,
    Event,
    EventBatch,
    Ident,
    TopicError,
    TypedEventBatch,
    UnknownKind,
    UtcTime,
    parse_event,
    parse_topic,
)
from server.entries import COUNTY_AGENT, is_entry_kind, server_models

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024


class Envelope(BaseModel):
    """The fields every event has, whatever its kind; extra fields are allowed here."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, max_length=64)
    agent_id: Ident
    seq: int = Field(ge=1, lt=2**62)
    span: int = Field(default=1, ge=1, le=10_000_000)
    kind: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    occurred_at: UtcTime
    clock_synced: bool
    boot_id: str = Field(max_length=64)
    mono_s: float = Field(ge=0.0, le=1e9, allow_inf_nan=False)


@dataclass(frozen=True)
class Incoming:
    """One event of a batch that will be journaled (understood or not yet understood)."""

    idx: int
    seq: int
    span: int
    kind: str
    event: Event | None
    #: Why it is not yet understood (``event`` is None).
    reason: str | None = None


@dataclass(frozen=True)
class Malformed:
    """One event of a batch that is dead-lettered; ``seq`` is what it claimed, if anything."""

    idx: int
    seq: int | None
    body: bytes
    reason: str
    #: The event's own id, if it has a valid one: lets its sender recognise the refusal.
    event_id: uuid.UUID | None = None


@dataclass
class Batch:
    topic: str
    site: str
    agent: str
    epoch: str
    payload: bytes
    incoming: list[Incoming]
    malformed: list[Malformed] = field(default_factory=list)


@dataclass
class Status:
    topic: str
    site: str
    agent: str
    status: AgentStatus
    payload: bytes


@dataclass
class Refused:
    """A whole message that is dead-lettered."""

    topic: str
    agent: str | None
    payload: bytes
    reason: str


@dataclass
class Cleared:
    """An empty retained status: nothing to store, but the agent was heard of."""

    site: str
    agent: str


Prepared = Batch | Status | Refused | Cleared


def brief(exc: ValidationError) -> str:
    """The first few problems of a validation error, on one line."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    more = exc.error_count() - 3
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def prepare(
    prefix: str, topic: str, payload: bytes, models: dict[str, type[BaseModel]] | None = None
) -> Prepared:
    """Classify one message from the broker."""
    try:
        site, agent, channel = parse_topic(prefix, topic)
    except TopicError as exc:
        return Refused(topic, None, payload, str(exc))
    if agent == COUNTY_AGENT:
        return Refused(topic, agent, payload, f"agent id {agent!r} is the county's own journal")
    if channel is Channel.STATUS:
        return _status(site, agent, topic, payload)
    if channel is not Channel.EVENTS:
        return Refused(topic, agent, payload, f"server does not consume {channel}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Refused(topic, agent, b"", f"payload of {len(payload)} bytes too big")
    try:
        typed = TypedEventBatch.model_validate_json(payload)
    except ValidationError:
        pass  # the slow path below finds out which events are bad
    else:
        if typed.agent_id == agent and all(e.agent_id == agent for e in typed.events):
            incoming = [Incoming(i, e.seq, e.span, e.kind, e) for i, e in enumerate(typed.events)]
            return Batch(topic, site, agent, typed.epoch, payload, incoming)
    try:
        batch = EventBatch.model_validate_json(payload)
    except ValidationError as exc:
        return Refused(topic, agent, payload, f"not an event batch: {brief(exc)}")
    if batch.agent_id != agent:
        reason = f"batch agent_id {batch.agent_id!r} differs from topic agent {agent!r}"
        return Refused(topic, agent, payload, reason)
    result = Batch(topic, site, agent, batch.epoch, payload, [])
    for idx, raw in enumerate(batch.events):
        item = classify(idx, raw, agent, models)
        (result.malformed if isinstance(item, Malformed) else result.incoming).append(item)  # type: ignore[arg-type]
    return result


def _claimed_seq(raw: dict[str, Any]) -> int | None:
    seq = raw.get("seq")
    ok = isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq < 2**62
    return seq if ok else None


def _claimed_id(raw: dict[str, Any]) -> uuid.UUID | None:
    value = raw.get("id")
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _only_unknown_fields(exc: ValidationError) -> bool:
    return all(err["type"] == "extra_forbidden" for err in exc.errors())


def classify(
    idx: int, raw: dict[str, Any], agent: str, models: dict[str, type[BaseModel]] | None = None
) -> Incoming | Malformed:
    """Understood, not yet understood, or malformed: see the module's docstring."""
    models = models if models is not None else server_models()
    body = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode()
    kind = raw.get("kind")
    if isinstance(kind, str) and is_entry_kind(kind) and agent != COUNTY_AGENT:
        reason = f"{kind} is entered on the server only, never sent by an agent"
        return Malformed(idx, _claimed_seq(raw), body, reason, _claimed_id(raw))
    try:
        event = parse_event(raw, models)
    except UnknownKind as exc:
        unknown: str | None = str(exc)
    except ValidationError as exc:
        if not _only_unknown_fields(exc):
            return Malformed(idx, _claimed_seq(raw), body, brief(exc), _claimed_id(raw))
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
        unknown = f"unknown field {fields}"
    else:
        if event.agent_id != agent:
            reason = f"event agent_id {event.agent_id!r} differs from {agent!r}"
            return Malformed(idx, event.seq, body, reason, event.id)
        return Incoming(idx, event.seq, event.span, event.kind, event)
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        return Malformed(idx, _claimed_seq(raw), body, brief(exc), _claimed_id(raw))
    if envelope.agent_id != agent:
        reason = f"event agent_id {envelope.agent_id!r} differs from {agent!r}"
        return Malformed(idx, envelope.seq, body, reason, _claimed_id(raw))
    return Incoming(idx, envelope.seq, envelope.span, envelope.kind, None, unknown)


def _status(site: str, agent: str, topic: str, payload: bytes) -> Prepared:
    if not payload:
        return Cleared(site, agent)  # a cleared retained message
    try:
        status = AgentStatus.model_validate_json(payload)
    except ValidationError as exc:
        return Refused(topic, agent, payload, f"not an agent status: {brief(exc)}")
    if status.agent_id != agent:
        reason = f"status agent_id {status.agent_id!r} differs from topic agent {agent!r}"
        return Refused(topic, agent, payload, reason)
    return Status(topic, site, agent, status, payload)


__all__ = [
    "MAX_PAYLOAD_BYTES",
    "Batch",
    "Cleared",
    "Envelope",
    "Incoming",
    "Malformed",
    "Prepared",
    "Refused",
    "Status",
    "brief",
    "classify",
    "prepare",
]
