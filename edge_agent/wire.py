"""The wire schema shared by agent, server and simulators.

This module is a leaf: it imports nothing else of the project, so the server and the simulators
can depend on it without pulling in the agent. Every message on the broker is one of the models
below, serialised as UTF-8 JSON. The server validates everything it receives against these
models and never trusts the sender beyond them.

Topic tree (``PREFIX`` is configurable, e.g. ``fp``)::

    PREFIX/v1/SITE/AGENT/events    agent -> server  EventBatch, QoS 1
    PREFIX/v1/SITE/AGENT/acks      server -> agent  Ack, QoS 1, retained
    PREFIX/v1/SITE/AGENT/status    agent -> all     AgentStatus, QoS 1, retained, last will
    PREFIX/v1/SITE/AGENT/commands  server -> agent  Command, QoS 1
    PREFIX/v1/server/SERVER        server -> all    ServerStatus, QoS 1, retained, last will

The acks topic also carries ``Nack`` (not retained): what the server refused, and why.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

PROTOCOL_VERSION = 1
TOPIC_VERSION = "v1"

#: Lower-case identifiers safe in a topic level, a file name and a URL path.
Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


#: A timezone-aware time, normalised to UTC; naive times are refused.
UtcTime = Annotated[AwareDatetime, AfterValidator(_as_utc)]

#: Names one life of an agent's outbox. Sequence numbers count within an epoch; an outbox that
#: had to be set aside (corrupt) starts a new epoch at seq 1, and the server then knows that
#: what it missed of the old epoch is lost, instead of confusing old and new numbers.
Epoch = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8,32}$")]

Temperature = Annotated[float, Field(ge=-60.0, le=100.0, allow_inf_nan=False)]
Humidity = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


class Channel(StrEnum):
    EVENTS = "events"
    ACKS = "acks"
    STATUS = "status"
    COMMANDS = "commands"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- event payloads -------------------------------------------------------------------------


class ClimateRecord(_Model):
    """One recorded temperature/humidity reading of one sensor in one storeroom."""

    storeroom: Ident
    sensor: Ident
    serial: str | None = Field(default=None, max_length=64)
    temperature_c: Temperature
    humidity_pct: Humidity
    raw_temperature_c: Temperature
    raw_humidity_pct: Humidity
    quality: list[Annotated[str, StringConstraints(max_length=32)]] = Field(
        default_factory=list, max_length=16
    )
    #: The certificate whose correction was applied (raw values are the transmitter's own).
    calibration: str | None = Field(default=None, max_length=64)


class RoomStateChange(_Model):
    """A storeroom went to ``state`` (normal, warning or alarm) from ``previous``."""

    storeroom: Ident
    state: Literal["normal", "warning", "alarm"]
    previous: Literal["normal", "warning", "alarm"]
    sensor: Ident
    temperature_c: Temperature
    humidity_pct: Humidity


class SensorRecovered(_Model):
    storeroom: Ident
    sensor: Ident


class SensorDisagreement(_Model):
    """Two sensors of one room read further apart than the configured margin."""

    storeroom: Ident
    sensors: list[Ident] = Field(min_length=2, max_length=2)
    delta_c: float = Field(ge=0, le=200, allow_inf_nan=False)
    delta_pct: float = Field(ge=0, le=100, allow_inf_nan=False)
    #: The readings compared (in the order of ``sensors``) and how far apart they were taken.
    temperatures_c: list[float] | None = Field(default=None, min_length=2, max_length=2)
    humidities_pct: list[float] | None = Field(default=None, min_length=2, max_length=2)
    apart_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class AlarmSilenced(_Model):
    """A keeper silenced the room's sound-and-light alarm on site."""

    storeroom: Ident
    by: str = Field(max_length=64)


class CalibrationNotice(_Model):
    """A sensor's calibration is due (11 months old) or expired (12: non-compliant)."""

    storeroom: Ident
    sensor: Ident
    certificate: str | None = Field(default=None, max_length=64)
    calibrated_on: date | None = None
    state: Literal["due", "expired"]


#: Why a sensor gave no valid reading, as a code people's texts are chosen by.
FaultReason = Literal["no_response", "exception", "bad_answer", "bus_unavailable", "implausible"]


class SensorFault(_Model):
    """A sensor gave no valid reading. ``reason`` is what people are shown (in their language);
    ``error`` is the technical detail, for the log and a technician."""

    storeroom: Ident
    sensor: Ident
    error: str = Field(max_length=500)
    reason: FaultReason | None = None
    exception_code: int | None = Field(default=None, ge=0, le=255)


class SensorSummary(_Model):
    """Several records of one sensor folded into min/mean/max, when the outbox ran full."""

    storeroom: Ident
    sensor: Ident
    count: int = Field(ge=1)
    first_at: UtcTime
    last_at: UtcTime
    temperature_min_c: Temperature
    temperature_mean_c: Temperature
    temperature_max_c: Temperature
    humidity_min_pct: Humidity
    humidity_mean_pct: Humidity
    humidity_max_pct: Humidity


class ClimateSummary(_Model):
    """Stands for ``span`` consecutive climate records that were compacted on the agent."""

    window_start: UtcTime
    window_end: UtcTime
    records: int = Field(ge=1)
    sensors: list[SensorSummary] = Field(min_length=1, max_length=1000)


#: A card's pseudonym: HMAC-SHA-256 with the county's card key (``edge_agent/pseudonym.py``,
#: ``docs/protocol.md``). Nothing shorter is accepted, so a raw card number can never pass.
CardHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: A dispensing box's slot (spiral channel), numbered from 1 as on the board.
SlotNumber = Annotated[int, Field(ge=1, le=255)]
Batch = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Dispense(_Model):
    """A unit delivered by a box (the drop sensor saw it fall): stock goes down by ``quantity``.

    ``card`` is the taker's pseudonym on an IC-card box and absent on an open box.
    ``remaining`` is the slot's count after the vend. ``recovered``: the result was learnt from
    the board after the agent restarted mid-vend.
    """

    box: Ident
    transaction: uuid.UUID
    slot: SlotNumber
    product: Ident
    product_group: Ident
    batch: Batch
    expiry: date
    quantity: int = Field(default=1, ge=1, le=100)
    card: CardHash | None = None
    mode: Literal["card", "open"] = "card"
    remaining: int = Field(ge=0, le=100_000)
    recovered: bool = False


VendFailure = Literal[
    "jammed",
    "motor_fault",
    "no_drop",
    "drop_sensor_fault",
    "refused_by_board",
    "no_answer",
    "board_busy",
    "door_open",
]

#: Failures that say the board could not vend just then (its motor busy, its door open), not
#: that the slot is at fault: the slot keeps its state and no other slot is tried.
BOARD_NOT_READY: frozenset[VendFailure] = frozenset({"board_busy", "door_open"})

UnknownReason = Literal["interrupted", "forgotten", "no_answer", "drop_sensor_fault"]


class VendFailed(_Model):
    """A vend that delivered nothing: no quota is charged, the slot is marked faulty (unless the
    board was not ready: ``BOARD_NOT_READY``), and ``next_slot`` (if any) is the slot of the
    same product tried instead."""

    box: Ident
    transaction: uuid.UUID
    slot: SlotNumber
    product: Ident
    batch: Batch
    reason: VendFailure
    next_slot: SlotNumber | None = None
    recovered: bool = False


class VendUnknown(_Model):
    """A vend whose outcome nobody knows (power lost while the motor ran, a board that forgot
    it): no quota is charged and the slot is flagged for a count, which settles its stock."""

    box: Ident
    transaction: uuid.UUID
    slot: SlotNumber
    product: Ident
    batch: Batch
    reason: UnknownReason
    recovered: bool = False


RefusalReason = Literal[
    "unregistered",
    "lost",
    "revoked",
    "not_allowed",
    "quota",
    "age",
    "misread",
    "empty",
    "expired",
    "out_of_service",
    "pause",
    "hourly_cap",
    "door_open",
]


class TakeRefused(_Model):
    """A take that was refused, and why (the same reason the display showed). ``next_at`` is
    when the card's quota allows again."""

    box: Ident
    reason: RefusalReason
    card: CardHash | None = None
    product_group: Ident | None = None
    next_at: UtcTime | None = None


class SlotState(_Model):
    """A slot changed state: ``ok``, ``low`` (at or under its low level), ``empty``, ``faulty``
    (a vend failed; cleared by a restock or a count), ``expired`` (its next unit is past its
    expiry: blocked), ``count_needed`` (a vend's outcome is unknown)."""

    box: Ident
    slot: SlotNumber
    product: Ident
    state: Literal["ok", "low", "empty", "faulty", "expired", "count_needed"]
    #: ``None``: the slot's first report (it is new to its agent).
    previous: Literal["ok", "low", "empty", "faulty", "expired", "count_needed"] | None = None
    count: int = Field(ge=0, le=100_000)
    batch: Batch | None = None
    expiry: date | None = None


class StockLine(_Model):
    batch: Batch
    expiry: date
    quantity: int = Field(ge=0, le=100_000)


class Restocked(_Model):
    """Units loaded into a slot (behind what is already there: the queue order is kept)."""

    box: Ident
    slot: SlotNumber
    product: Ident
    batch: Batch
    expiry: date
    quantity: int = Field(ge=1, le=100_000)
    order_id: str | None = Field(default=None, max_length=64)
    #: The order said another quantity: what the technician reported instead.
    ordered: int | None = Field(default=None, ge=0, le=100_000)
    technician: CardHash | None = None
    source: Literal["door", "cli"]


class Removed(_Model):
    """Units taken out of a slot by hand, from the head of its queue."""

    box: Ident
    slot: SlotNumber
    product: Ident
    batch: Batch
    expiry: date
    quantity: int = Field(ge=1, le=100_000)
    reason: Literal["expired", "damaged", "recalled", "other"]
    technician: CardHash | None = None
    source: Literal["door", "cli"]


class Counted(_Model):
    """A physical count of a slot: what was found per batch, against what the books said."""

    box: Ident
    slot: SlotNumber
    product: Ident
    expected: int = Field(ge=0, le=100_000)
    counted: int = Field(ge=0, le=100_000)
    lines: list[StockLine] = Field(max_length=100)
    technician: CardHash | None = None
    source: Literal["door", "cli"]


class DoorChanged(_Model):
    """The box's door opened or closed; ``technician`` is set when a technician card opened it."""

    box: Ident
    state: Literal["opened", "closed"]
    technician: CardHash | None = None


class Tamper(_Model):
    """The door opened without a technician's card, or was left open past the limit."""

    box: Ident
    reason: Literal["door_without_card", "door_left_open"]
    open_s: float = Field(ge=0, allow_inf_nan=False)


class BoardState(_Model):
    """The box's main board stopped answering, answered again, restarted, or reported its drop
    sensor faulty."""

    box: Ident
    state: Literal["online", "offline", "power_up", "drop_sensor_fault"]
    firmware: int | None = Field(default=None, ge=0, le=255)


class AgentStarted(_Model):
    version: str = Field(max_length=32)


class OutboxReset(_Model):
    """The outbox could not be used, or vanished, and a new one (a new epoch) was started.

    ``cause`` says how it was found: ``corrupt`` (set aside, kept as ``kept_as``), ``emptied``
    (a file with no events table, truncated to zero, say) or ``missing`` (the file is gone while
    the state kept beside it says it existed). ``lost_events`` counts numbers that were stored
    and not acknowledged, known from that state (at least that many; ``None`` if unknown).
    """

    reason: str = Field(max_length=500)
    kept_as: str = Field(default="", max_length=500)
    cause: Literal["corrupt", "emptied", "missing"] | None = None
    previous_epoch: str | None = Field(default=None, max_length=64)
    previous_last_seq: int | None = Field(default=None, ge=0)
    lost_events: int | None = Field(default=None, ge=0)


class EventUnreadable(_Model):
    """Stands in for a stored event the agent cannot read back (a rotten byte on the SD card):
    the original is set aside on the agent for inspection and the stream goes on."""

    reason: str = Field(max_length=500)
    stored_kind: str | None = Field(default=None, max_length=64)


class ConfigRolledBack(_Model):
    """A configuration pushed by ``config.update`` could not reach the broker within its
    probation and the previous one was restored."""

    reason: str = Field(max_length=500)
    probation_s: float = Field(ge=0)
    command_id: uuid.UUID | None = None


class StorageAlarm(_Model):
    """The outbox is at its cap or the disk is full (``state``), or it recovered."""

    state: Literal["cap_reached", "disk_full", "recovered"]
    detail: str = Field(max_length=500)
    compacted_total: int = Field(ge=0)


class EventRefused(_Model):
    """Stands in for an event of this agent that the server refused as malformed (a ``Nack``
    named its id), so the number is filled by an honest record instead of blocking the stream."""

    refused_id: uuid.UUID
    refused_kind: str = Field(max_length=64)
    reason: str = Field(max_length=500)


class CommandResult(_Model):
    command_id: uuid.UUID
    command_kind: str = Field(max_length=32)
    ok: bool
    detail: str = Field(default="", max_length=1000)


# --- events -----------------------------------------------------------------------------------


class _EventBase(_Model):
    """What every event carries, whatever its kind.

    ``seq`` is per agent, starts at 1, has no gaps and survives restarts: the server acknowledges
    the highest contiguous ``seq`` it has stored. An event with ``span`` n stands for the n
    sequence numbers ``seq .. seq+n-1`` (a compacted summary). ``occurred_at`` is the agent's
    wall clock; ``clock_synced`` says whether that clock was trustworthy, and ``boot_id`` +
    ``mono_s`` let the server re-date events from before a clock fix.
    """

    id: uuid.UUID
    agent_id: Ident
    seq: int = Field(ge=1, lt=2**62)
    span: int = Field(default=1, ge=1, le=10_000_000)
    occurred_at: UtcTime
    clock_synced: bool
    boot_id: str = Field(max_length=64)
    #: Seconds since boot; bounded so that date arithmetic on it cannot overflow.
    mono_s: float = Field(ge=0.0, le=1e9, allow_inf_nan=False)


#: The envelope, for the server's own journal entries (the county's receipts, stocktakes…),
#: which never travel on the wire but are journaled like events.
EventBase = _EventBase


class ClimateRecordEvent(_EventBase):
    kind: Literal["climate.record"]
    payload: ClimateRecord


class ClimateSummaryEvent(_EventBase):
    kind: Literal["climate.summary"]
    payload: ClimateSummary

    @model_validator(mode="after")
    def _span_is_records(self) -> ClimateSummaryEvent:
        if self.span != self.payload.records:
            raise ValueError(
                f"span {self.span} differs from payload.records {self.payload.records}"
            )
        return self


class SensorFaultEvent(_EventBase):
    kind: Literal["climate.sensor_fault"]
    payload: SensorFault


class SensorRecoveredEvent(_EventBase):
    kind: Literal["climate.sensor_recovered"]
    payload: SensorRecovered


class RoomStateEvent(_EventBase):
    kind: Literal["climate.state"]
    payload: RoomStateChange


class SensorDisagreementEvent(_EventBase):
    kind: Literal["climate.disagreement"]
    payload: SensorDisagreement


class AlarmSilencedEvent(_EventBase):
    kind: Literal["climate.alarm_silenced"]
    payload: AlarmSilenced


class CalibrationEvent(_EventBase):
    kind: Literal["climate.calibration"]
    payload: CalibrationNotice


class DispenseEvent(_EventBase):
    kind: Literal["cabinet.dispense"]
    payload: Dispense


class VendFailedEvent(_EventBase):
    kind: Literal["cabinet.vend_failed"]
    payload: VendFailed


class VendUnknownEvent(_EventBase):
    kind: Literal["cabinet.vend_unknown"]
    payload: VendUnknown


class TakeRefusedEvent(_EventBase):
    kind: Literal["cabinet.refused"]
    payload: TakeRefused


class SlotStateEvent(_EventBase):
    kind: Literal["cabinet.slot"]
    payload: SlotState


class RestockedEvent(_EventBase):
    kind: Literal["cabinet.restock"]
    payload: Restocked


class RemovedEvent(_EventBase):
    kind: Literal["cabinet.remove"]
    payload: Removed


class CountedEvent(_EventBase):
    kind: Literal["cabinet.count"]
    payload: Counted


class DoorEvent(_EventBase):
    kind: Literal["cabinet.door"]
    payload: DoorChanged


class TamperEvent(_EventBase):
    kind: Literal["cabinet.tamper"]
    payload: Tamper


class BoardStateEvent(_EventBase):
    kind: Literal["cabinet.board"]
    payload: BoardState


class AgentStartedEvent(_EventBase):
    kind: Literal["agent.started"]
    payload: AgentStarted


class OutboxResetEvent(_EventBase):
    kind: Literal["agent.outbox_reset"]
    payload: OutboxReset


class StorageAlarmEvent(_EventBase):
    kind: Literal["agent.storage_alarm"]
    payload: StorageAlarm


class EventRefusedEvent(_EventBase):
    kind: Literal["agent.event_refused"]
    payload: EventRefused


class EventUnreadableEvent(_EventBase):
    kind: Literal["agent.event_unreadable"]
    payload: EventUnreadable


class ConfigRolledBackEvent(_EventBase):
    kind: Literal["agent.config_rolled_back"]
    payload: ConfigRolledBack


class CommandResultEvent(_EventBase):
    kind: Literal["command.result"]
    payload: CommandResult


Event = Annotated[
    ClimateRecordEvent
    | ClimateSummaryEvent
    | SensorFaultEvent
    | SensorRecoveredEvent
    | RoomStateEvent
    | SensorDisagreementEvent
    | AlarmSilencedEvent
    | CalibrationEvent
    | DispenseEvent
    | VendFailedEvent
    | VendUnknownEvent
    | TakeRefusedEvent
    | SlotStateEvent
    | RestockedEvent
    | RemovedEvent
    | CountedEvent
    | DoorEvent
    | TamperEvent
    | BoardStateEvent
    | AgentStartedEvent
    | OutboxResetEvent
    | StorageAlarmEvent
    | EventRefusedEvent
    | EventUnreadableEvent
    | ConfigRolledBackEvent
    | CommandResultEvent,
    Field(discriminator="kind"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

#: Every event model by its ``kind``: what this version of the protocol understands.
EVENT_MODELS: dict[str, type[BaseModel]] = {
    get_args(model.model_fields["kind"].annotation)[0]: model
    for model in get_args(get_args(Event)[0])
}


class UnknownKind(ValueError):
    """An event of a kind this version does not know (from a newer agent, say)."""


MAX_BATCH_EVENTS = 5000


class EventBatch(_Model):
    """What an agent publishes on ``events``: one or more events, oldest first.

    ``events`` is left loosely typed here so that the server can keep the good events of a
    batch and dead-letter a bad one; ``parse_event`` validates each.
    """

    v: Literal[1] = 1
    agent_id: Ident
    epoch: Epoch
    sent_at: UtcTime
    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class TypedEventBatch(_Model):
    """The same batch with every event validated; used for the exported JSON Schema."""

    v: Literal[1] = 1
    agent_id: Ident
    epoch: Epoch
    sent_at: UtcTime
    events: list[Event] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class Ack(_Model):
    """The server has durably stored every event of this agent up to and including ``acked_seq``."""

    v: Literal[1] = 1
    agent_id: Ident
    epoch: Epoch
    acked_seq: int = Field(ge=0, lt=2**63)
    #: The highest seq the server holds; above ``acked_seq`` it is missing something in between.
    highest_seq: int | None = Field(default=None, ge=0, lt=2**63)
    server_time: UtcTime


class Refusal(_Model):
    """One event the server refused; ``id`` lets the agent tell its own event from a forgery."""

    seq: int | None = None
    id: uuid.UUID | None = None
    #: ``malformed``: the event breaks the schema; the agent replaces it by ``agent.event_refused``.
    #: ``too_far``: its number is implausibly far ahead; it is dropped and nothing else happens.
    code: Literal["malformed", "too_far"]
    reason: str = Field(max_length=500)


class Nack(_Model):
    """What the server refused of a message, on the agent's ``acks`` topic, not retained.

    ``message`` is set when the whole message was refused (not a batch, too big, wrong site):
    nothing of it was stored. ``refused`` lists single events; the rest of their batch was
    handled normally and is covered by the ``Ack`` that follows.
    """

    v: Literal[1] = 1
    agent_id: Ident
    epoch: Epoch | None = None
    nack: Literal[True] = True
    message: str | None = Field(default=None, max_length=500)
    refused: list[Refusal] = Field(default_factory=list, max_length=MAX_BATCH_EVENTS)
    server_time: UtcTime


class ServerStatus(_Model):
    """Retained on ``PREFIX/v1/server/SERVER``, one per ingest process; its last will says
    ``online`` false. An agent that sees a server come (back) online resends what is not yet
    acknowledged at once instead of waiting for its acknowledgement timeout."""

    v: Literal[1] = 1
    server_id: str = Field(min_length=1, max_length=64)
    online: bool
    started_at: UtcTime
    version: str = Field(default="", max_length=32)


class AgentStatus(_Model):
    """Retained on ``status``; the agent's last will publishes it with ``online`` false."""

    v: Literal[1] = 1
    agent_id: Ident
    online: bool
    #: The outbox life this agent is sending: lets the server tell a restarted outbox from a
    #: second box speaking with the same identity.
    epoch: Epoch | None = None
    version: str = Field(default="", max_length=32)
    started_at: UtcTime | None = None
    backlog: int = Field(default=0, ge=0)
    oldest_unsent_at: UtcTime | None = None
    last_reading_at: UtcTime | None = None
    #: Climate records folded into summaries since the outbox was created.
    compacted: int = Field(default=0, ge=0)
    storage: Literal["ok", "cap_reached", "disk_full"] = "ok"
    clock: Literal["kernel", "server", "unsynced"] = "unsynced"
    #: The card registry version the agent's boxes hold (``None``: the agent has no boxes).
    cards_version: int | None = Field(default=None, ge=0)


class PingCommand(_Model):
    kind: Literal["ping"] = "ping"


class TimeSetCommand(_Model):
    kind: Literal["time.set"] = "time.set"
    server_time: UtcTime


class ConfigUpdateCommand(_Model):
    """A whole new ``agent.toml``; the agent validates it, keeps the old one, and restarts."""

    kind: Literal["config.update"] = "config.update"
    toml: str = Field(min_length=1, max_length=256_000)


class CardEntry(_Model):
    """One card of the registry, by pseudonym only."""

    card: CardHash
    status: Literal["active", "lost", "revoked"] = "active"
    role: Literal["villager", "technician"] = "villager"
    group: Ident = "default"


class QuotaRule(_Model):
    """At most ``quantity`` units of ``product_group`` per rolling ``period_days`` for a card of
    ``group`` (``site``: only at that site; unset: county-wide)."""

    group: Ident
    product_group: Ident
    quantity: int = Field(ge=0, le=10_000)
    period_days: int = Field(ge=1, le=366)
    site: Ident | None = None


class GuestPolicy(_Model):
    """What a card the registry does not know may take: nothing (``refuse``) or a small quota."""

    mode: Literal["refuse", "quota"] = "refuse"
    quantity: int = Field(default=1, ge=0, le=100)
    period_days: int = Field(default=30, ge=1, le=366)


class CardsSyncCommand(_Model):
    """The card registry, as a delta from ``version_from`` to ``version`` (or, with ``full``,
    the whole of it, replacing what the agent holds). ``rules`` and ``guest`` replace the
    agent's when present. An agent that holds another version than ``version_from`` answers
    ``ok: false`` and keeps what it has; its status says which version it holds."""

    kind: Literal["cards.sync"] = "cards.sync"
    version_from: int = Field(ge=0)
    version: int = Field(ge=1)
    full: bool = False
    cards: list[CardEntry] = Field(default_factory=list, max_length=500_000)
    rules: list[QuotaRule] | None = Field(default=None, max_length=1000)
    guest: GuestPolicy | None = None

    @model_validator(mode="after")
    def _forward(self) -> CardsSyncCommand:
        if self.version <= self.version_from:
            raise ValueError("version must be above version_from")
        return self


class Usage(_Model):
    """A take on some box, told to the other boxes so that one quota holds across all of them."""

    transaction: uuid.UUID
    card: CardHash
    product_group: Ident
    quantity: int = Field(ge=1, le=100)
    at: UtcTime
    box: Ident


class CardsUsageCommand(_Model):
    """Takes on other boxes since the last sync; the agent keeps each ``transaction`` once."""

    kind: Literal["cards.usage"] = "cards.usage"
    usage: list[Usage] = Field(max_length=100_000)


class RestockOrderCommand(_Model):
    """What a technician is to load into a box's slot; shown on the box's display when the
    technician opens it, and confirmed (or corrected) there."""

    kind: Literal["restock.order"] = "restock.order"
    order_id: str = Field(min_length=1, max_length=64)
    box: Ident
    slot: SlotNumber
    product: Ident
    batch: Batch
    expiry: date
    quantity: int = Field(ge=1, le=10_000)


CommandBody = Annotated[
    PingCommand
    | TimeSetCommand
    | ConfigUpdateCommand
    | CardsSyncCommand
    | CardsUsageCommand
    | RestockOrderCommand,
    Field(discriminator="kind"),
]


class Command(_Model):
    """A server-to-agent instruction; ``id`` makes it idempotent on the agent."""

    v: Literal[1] = 1
    id: uuid.UUID
    agent_id: Ident
    issued_at: UtcTime
    body: CommandBody


class CommandEnvelope(BaseModel):
    """What every command has, whatever its body: enough to answer one this agent cannot
    apply (a kind from a newer server, a bad field) with a failed ``command.result``, instead of
    leaving the server to send it again for ever."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: uuid.UUID
    agent_id: Ident
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        kind = self.body.get("kind")
        return kind[:32] if isinstance(kind, str) else "?"


# --- helpers ----------------------------------------------------------------------------------


class TopicError(ValueError):
    """A topic that is not part of this protocol's tree."""


def topic(prefix: str, site: str, agent: str, channel: Channel) -> str:
    return f"{prefix}/{TOPIC_VERSION}/{site}/{agent}/{channel.value}"


def topic_filter(prefix: str, channel: Channel, site: str = "+", agent: str = "+") -> str:
    return f"{prefix}/{TOPIC_VERSION}/{site}/{agent}/{channel.value}"


def server_topic(prefix: str, server_id: str = "+") -> str:
    """Where an ingest process publishes its ``ServerStatus`` (``+``: every server's)."""
    return f"{prefix}/{TOPIC_VERSION}/server/{server_id}"


def parse_topic(prefix: str, value: str) -> tuple[str, str, Channel]:
    """Split a topic into (site, agent, channel), refusing anything outside the tree."""
    head = f"{prefix}/{TOPIC_VERSION}/"
    if not value.startswith(head):
        raise TopicError(f"topic {value!r} is not under {head!r}")
    parts = value[len(head) :].split("/")
    if len(parts) != 3:
        raise TopicError(f"topic {value!r} must be {head}SITE/AGENT/CHANNEL")
    site, agent, channel = parts
    try:
        return site, agent, Channel(channel)
    except ValueError:
        raise TopicError(f"topic {value!r} has unknown channel {channel!r}") from None


def parse_event(data: dict[str, Any], models: dict[str, type[BaseModel]] = EVENT_MODELS) -> Event:
    """Validate one event by its ``kind``; ``UnknownKind`` when ``models`` has no such kind."""
    kind = data.get("kind")
    model = models.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UnknownKind(f"unknown event kind {kind!r}")
    return model.model_validate(data)  # type: ignore[return-value]


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_none=True).encode()


def encode_batch(agent_id: str, epoch: str, sent_at: datetime, event_json: list[str]) -> bytes:
    """Build a batch from events that are already JSON (as the outbox stores them).

    Splicing the stored text avoids decoding and re-validating every event on the hot path.
    """
    head = json.dumps(
        {
            "v": PROTOCOL_VERSION,
            "agent_id": agent_id,
            "epoch": epoch,
            "sent_at": sent_at.isoformat(),
        }
    )
    return (head[:-1] + ', "events": [' + ", ".join(event_json) + "]}").encode()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every message, exported for non-Python peers and for review."""
    models: dict[str, type[BaseModel]] = {
        "EventBatch": TypedEventBatch,
        "Ack": Ack,
        "Nack": Nack,
        "AgentStatus": AgentStatus,
        "ServerStatus": ServerStatus,
        "Command": Command,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Commodity edge wire protocol v{PROTOCOL_VERSION}",
        "topics": {
            **{c.value: topic_filter("PREFIX", c, "SITE", "AGENT") for c in Channel},
            "server": server_topic("PREFIX", "SERVER"),
        },
        "messages": {name: model.model_json_schema() for name, model in models.items()},
    }
