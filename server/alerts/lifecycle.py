"""An alert's life, pure: what one deduplication key's condition, seen again and again, makes
of its alert, and which changes people are told of.

pending (the condition holds, not yet for ``for_s``) → firing → acknowledged (who, when, the
regulating action taken) → resolved (the condition gone for ``clear_s``). One alert per key
at a time: the same condition reported by a thousand messages is one alert. A condition that
comes back before ``clear_s`` has passed never resolved (no "resolved" then "firing" again);
one that keeps coming back right after resolving (``flap_limit`` times within
``flap_window_s``) is held firing as flapping until it has been gone for ``flap_window_s``.
Times are passed in: no clock is read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


#: States in which the alert is open: people are (or will be) told of it.
OPEN = frozenset({State.FIRING, State.ACKNOWLEDGED})


class Change(StrEnum):
    """What people are told of."""

    FIRED = "fired"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertError(Exception):
    """An operation the alert's state does not allow (acknowledging a resolved alert)."""

    def __init__(self, key: str, **fields: object) -> None:
        super().__init__(f"{key}: {fields}")
        self.key = key
        self.fields = fields


@dataclass(frozen=True)
class Policy:
    #: The condition must hold this long before the alert fires (0: at once).
    for_s: float = 0.0
    #: The condition must be gone this long before the alert resolves.
    clear_s: float = 0.0
    #: A key that fires again within this long of resolving, ``flap_limit`` times, is flapping.
    flap_window_s: float = 3600.0
    flap_limit: int = 3
    #: Off: the rule's condition is taken as never holding (its open alerts resolve).
    enabled: bool = True


@dataclass(frozen=True)
class Alert:
    """One alert of a deduplication key."""

    key: str
    state: State
    #: When the condition was first seen (the start of pending).
    since: datetime
    fired_at: datetime | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None
    #: The regulating action taken (开启除湿机), for the monthly record sheet.
    action: str | None = None
    resolved_at: datetime | None = None
    #: When the condition was last seen gone while the alert was open; ``None`` while it holds.
    clear_since: datetime | None = None
    #: When this key fired after a recent resolution, newest last (the flapping record).
    refires: tuple[datetime, ...] = field(default=())


def flapping(alert: Alert, policy: Policy) -> bool:
    """Held open because it keeps coming back: it resolves only after a quiet window."""
    return alert.state in OPEN and len(alert.refires) >= policy.flap_limit


def observe(
    alert: Alert | None, key: str, active: bool, now: datetime, policy: Policy
) -> tuple[Alert | None, list[Change]]:
    """The key's condition seen ``active`` (or not) at ``now``: its alert after, and what to
    tell people. ``alert`` is the key's latest alert (a resolved one is kept for flapping)."""
    if alert is None or alert.state is State.RESOLVED:
        if not active:
            return alert, []
        refires = _recent_refires(alert, now, policy)
        pending = Alert(key, State.PENDING, since=now, refires=refires)
        return _maybe_fire(pending, now, policy)
    if alert.state is State.PENDING:
        if not active:
            return None if alert.refires == () else _resolved_quietly(alert, now), []
        return _maybe_fire(alert, now, policy)
    # Open: firing or acknowledged.
    if active:
        return (replace(alert, clear_since=None) if alert.clear_since else alert), []
    clear_since = alert.clear_since or now
    hold = max(policy.clear_s, policy.flap_window_s) if flapping(alert, policy) else policy.clear_s
    if (now - clear_since).total_seconds() >= hold:
        return replace(alert, state=State.RESOLVED, resolved_at=now, clear_since=None), [
            Change.RESOLVED
        ]
    return replace(alert, clear_since=clear_since), []


def acknowledge(
    alert: Alert, by: str, action: str | None, now: datetime
) -> tuple[Alert, list[Change]]:
    """Someone has seen it (and says what was done): escalation stops; it resolves when the
    condition goes. Acknowledging again records the newer action."""
    if alert.state not in OPEN:
        raise AlertError("alert.not_open", alert=alert.key, state=str(alert.state))
    acked = replace(alert, state=State.ACKNOWLEDGED, acked_at=now, acked_by=by,
                    action=action or alert.action)  # fmt: skip
    return acked, [Change.ACKNOWLEDGED]


def _maybe_fire(alert: Alert, now: datetime, policy: Policy) -> tuple[Alert, list[Change]]:
    if (now - alert.since).total_seconds() < policy.for_s:
        return alert, []
    return replace(alert, state=State.FIRING, fired_at=now), [Change.FIRED]


def _recent_refires(alert: Alert | None, now: datetime, policy: Policy) -> tuple[datetime, ...]:
    """A key firing again soon after it resolved carries the count of such returns."""
    if alert is None or alert.resolved_at is None:
        return ()
    window = timedelta(seconds=policy.flap_window_s)
    if now - alert.resolved_at > window:
        return ()
    return (*[t for t in alert.refires if now - t <= window], now)


def _resolved_quietly(alert: Alert, now: datetime) -> Alert:
    """A pending alert that never fired leaves no trace but its flapping record."""
    return replace(alert, state=State.RESOLVED, resolved_at=now)
