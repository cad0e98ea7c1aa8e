"""What an agent's event says about a condition an alert watches, pure: each event becomes zero
or more ``Signal``s, a deduplication key and whether its condition holds now. The lifecycle
(``lifecycle.observe``) turns the signals of one key into one alert.

The key names the rule and what it is about (``climate.room:SITE:no2``,
``box.slot:SITE:box-1#3``), so the thousand records of one excursion are one alert, and the same
box's two slots are two. Conditions that hold until something says otherwise (a sensor fault
until it recovers, a slot faulty until restocked or counted) are set by one event and cleared
by another; a one-off fact (a forced door) is a signal that holds and clears itself at once,
so it fires and resolves after its clear time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from edge_agent.wire import (
    BoardStateEvent,
    CalibrationEvent,
    ClimateRecordEvent,
    RoomStateEvent,
    SensorFaultEvent,
    SensorRecoveredEvent,
    SlotStateEvent,
    StorageAlarmEvent,
    TamperEvent,
    VendFailedEvent,
)


class Severity(StrEnum):
    #: Stock at risk now: told at any hour.
    CRITICAL = "critical"
    #: Needs attention today: held back in quiet hours.
    WARNING = "warning"


@dataclass(frozen=True)
class Range:
    """A storeroom's limits, as the server holds them (not as the agent judged)."""

    temperature_c: tuple[float, float] = (10.0, 30.0)
    humidity_pct: tuple[float, float] = (35.0, 75.0)

    def outside(self, temperature_c: float, humidity_pct: float) -> bool:
        low_t, high_t = self.temperature_c
        low_h, high_h = self.humidity_pct
        return not (low_t <= temperature_c <= high_t and low_h <= humidity_pct <= high_h)


@dataclass(frozen=True)
class Signal:
    rule: str
    key: str
    site: str
    #: What it is about: a storeroom, a sensor, a box slot, a box, the agent.
    subject: str
    active: bool
    severity: Severity
    #: Values for the message people read (a temperature, a reason code).
    detail: dict[str, Any] = field(default_factory=dict)
    #: A one-off fact: it holds at this instant only.
    instant: bool = False


def signal(rule: str, site: str, subject: str, active: bool, severity: Severity,
           instant: bool = False, **detail: Any) -> Signal:  # fmt: skip
    """A signal under its key: the rule, the site and what it is about."""
    return Signal(rule, f"{rule}:{site}:{subject}", site, subject, active, severity, detail,
                  instant)  # fmt: skip


def of_event(site: str, event: Any, ranges: Callable[[str, str], Range]) -> list[Signal]:
    """The signals in one of an agent's events at ``site``; ``ranges(site, storeroom)`` gives a
    storeroom's limits, so a record the agent misjudged is caught from its values."""
    if isinstance(event, ClimateRecordEvent):
        p = event.payload
        outside = ranges(site, p.storeroom).outside(p.temperature_c, p.humidity_pct)
        return [
            signal("climate.range", site, p.storeroom, outside, Severity.CRITICAL,
                    temperature_c=p.temperature_c, humidity_pct=p.humidity_pct)
        ]  # fmt: skip
    if isinstance(event, RoomStateEvent):
        room = event.payload
        return [
            signal("climate.room", site, room.storeroom, room.state == "alarm",
                    Severity.CRITICAL, temperature_c=room.temperature_c,
                    humidity_pct=room.humidity_pct)
        ]  # fmt: skip
    if isinstance(event, SensorFaultEvent | SensorRecoveredEvent):
        sensor = event.payload
        reason = event.payload.reason if isinstance(event, SensorFaultEvent) else None
        return [
            signal("climate.sensor", site, f"{sensor.storeroom}/{sensor.sensor}",
                    isinstance(event, SensorFaultEvent), Severity.WARNING, reason=reason)
        ]  # fmt: skip
    if isinstance(event, CalibrationEvent):
        c = event.payload
        severity = Severity.CRITICAL if c.state == "expired" else Severity.WARNING
        return [
            signal("climate.calibration", site, f"{c.storeroom}/{c.sensor}", True, severity,
                    state=c.state)
        ]  # fmt: skip
    if isinstance(event, SlotStateEvent):
        s = event.payload
        subject = f"{s.box}#{s.slot}"
        trouble = s.state in ("low", "empty", "faulty", "expired", "count_needed")
        severity = Severity.CRITICAL if s.state in ("empty", "expired") else Severity.WARNING
        return [signal("box.slot", site, subject, trouble, severity, state=s.state,
                        count=s.count)]  # fmt: skip
    if isinstance(event, VendFailedEvent) and event.payload.reason == "jammed":
        v = event.payload
        return [signal("box.jam", site, f"{v.box}#{v.slot}", True, Severity.WARNING,
                        instant=True)]  # fmt: skip
    if isinstance(event, TamperEvent):
        t = event.payload
        return [signal("box.tamper", site, t.box, True, Severity.CRITICAL, instant=True,
                        reason=t.reason, open_s=round(t.open_s))]  # fmt: skip
    if isinstance(event, BoardStateEvent):
        b = event.payload
        if b.state not in ("online", "offline"):
            return []
        return [signal("box.offline", site, b.box, b.state == "offline", Severity.WARNING)]
    if isinstance(event, StorageAlarmEvent):
        a = event.payload
        return [signal("agent.storage", site, event.agent_id, a.state != "recovered",
                        Severity.CRITICAL, state=a.state)]  # fmt: skip
    return []
