"""Who is told of an alert, and when, pure: the contact levels of a site (1 the storeroom keeper,
2 the station head, 3 the county), re-telling while nobody acknowledges, climbing a level when
a level has not acknowledged in time, and quiet hours that hold back what is not critical.

``due`` looks at an alert, what was already told (``Told``) and the time, and says what to tell
now; the caller records each as told before sending, so a restart never tells twice. Times are
passed in: no clock is read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo

from server.alerts.lifecycle import Alert, State

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Reason(StrEnum):
    FIRED = "fired"
    RENOTIFY = "renotify"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Escalation:
    #: While firing and not acknowledged, those told are told again this often.
    renotify_s: float = 1800.0
    #: A level told this long ago without an acknowledgement: the next level is told.
    escalate_s: float = 900.0
    #: Local times between which only critical alerts are told (the rest wait for the end).
    quiet_from: time | None = None
    quiet_to: time | None = None
    zone: ZoneInfo = SHANGHAI

    def quiet(self, now: datetime) -> bool:
        if self.quiet_from is None or self.quiet_to is None:
            return False
        local = now.astimezone(self.zone).time()
        if self.quiet_from <= self.quiet_to:
            return self.quiet_from <= local < self.quiet_to
        return local >= self.quiet_from or local < self.quiet_to


@dataclass(frozen=True)
class Told:
    """A level told of an alert, and why."""

    level: int
    reason: Reason
    at: datetime


@dataclass(frozen=True)
class Notice:
    level: int
    reason: Reason


def due(
    alert: Alert,
    critical: bool,
    told: Sequence[Told],
    levels: Sequence[int],
    now: datetime,
    policy: Escalation,
) -> list[Notice]:
    """What to tell now of ``alert`` (levels: those the site has contacts at, ascending)."""
    if not levels or alert.state is State.PENDING:
        return []
    if not critical and policy.quiet(now):
        return []
    reached = sorted({t.level for t in told})
    said = {(t.level, t.reason) for t in told}
    if alert.state is State.RESOLVED:
        if not reached:
            return []  # resolved before anyone was told (quiet hours): nothing to take back
        return [Notice(lv, Reason.RESOLVED) for lv in reached if (lv, Reason.RESOLVED) not in said]
    if alert.state is State.ACKNOWLEDGED:
        return [
            Notice(lv, Reason.ACKNOWLEDGED)
            for lv in reached
            if (lv, Reason.ACKNOWLEDGED) not in said
        ]
    # Firing, not acknowledged.
    if not reached:
        return [Notice(levels[0], Reason.FIRED)]
    out: list[Notice] = []
    top = reached[-1]
    first_at_top = min(t.at for t in told if t.level == top)
    higher = [lv for lv in levels if lv > top]
    if higher and (now - first_at_top).total_seconds() >= policy.escalate_s:
        out.append(Notice(higher[0], Reason.ESCALATED))
    for lv in reached:
        last = max(t.at for t in told if t.level == lv)
        if (now - last).total_seconds() >= policy.renotify_s:
            out.append(Notice(lv, Reason.RENOTIFY))
    return out
