"""Who hears of an alert and when: the keeper first, told again while nobody acknowledges, the
station head and then the county when a level lets it lie; an acknowledgement stops it; every
level told hears the resolution; quiet hours hold back only what is not critical."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from server.alerts.escalation import Escalation, Notice, Reason, Told, due
from server.alerts.lifecycle import Alert, State

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
LEVELS = (1, 2, 3)
POLICY = Escalation(renotify_s=1800, escalate_s=900)


def firing(state: State = State.FIRING) -> Alert:
    return Alert("climate.range:county:no2", state, since=T0, fired_at=T0)


def play(alert: Alert, minutes: int, critical: bool = True, policy: Escalation = POLICY
         ) -> list[Told]:  # fmt: skip
    """Ask every minute for ``minutes``; what was told, as the caller records it."""
    told: list[Told] = []
    for m in range(minutes + 1):
        now = T0 + timedelta(minutes=m)
        told += [
            Told(n.level, n.reason, now) for n in due(alert, critical, told, LEVELS, now, policy)
        ]
    return told


def test_the_keeper_is_told_at_once_then_the_levels_above_while_nobody_acknowledges() -> None:
    told = play(firing(), 60)
    shown = [(int((t.at - T0).total_seconds() // 60), t.level, t.reason) for t in told]
    assert shown == [
        (0, 1, Reason.FIRED),
        (15, 2, Reason.ESCALATED),
        (30, 3, Reason.ESCALATED),
        (30, 1, Reason.RENOTIFY),
        (45, 2, Reason.RENOTIFY),
        (60, 1, Reason.RENOTIFY),
        (60, 3, Reason.RENOTIFY),
    ]


def test_an_acknowledgement_stops_it_and_the_resolution_reaches_every_level_told() -> None:
    told = play(firing(), 20)
    acked = firing(State.ACKNOWLEDGED)
    later = T0 + timedelta(minutes=21)
    assert due(acked, True, told, LEVELS, later, POLICY) == [
        Notice(1, Reason.ACKNOWLEDGED),
        Notice(2, Reason.ACKNOWLEDGED),
    ]
    told += [Told(1, Reason.ACKNOWLEDGED, later), Told(2, Reason.ACKNOWLEDGED, later)]
    assert due(acked, True, told, LEVELS, later + timedelta(hours=5), POLICY) == []
    resolved = firing(State.RESOLVED)
    assert due(resolved, True, told, LEVELS, later, POLICY) == [
        Notice(1, Reason.RESOLVED),
        Notice(2, Reason.RESOLVED),
    ]


def test_quiet_hours_hold_back_only_what_is_not_critical() -> None:
    night = Escalation(quiet_from=time(22), quiet_to=time(7))
    at_night = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    assert due(firing(), False, [], LEVELS, at_night, night) == []
    assert due(firing(), True, [], LEVELS, at_night, night) == [Notice(1, Reason.FIRED)]
    morning = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)  # 07:00
    assert due(firing(), False, [], LEVELS, morning, night) == [Notice(1, Reason.FIRED)]


def test_a_site_without_contacts_is_told_nothing_and_a_pending_alert_neither() -> None:
    assert due(firing(), True, [], (), T0, POLICY) == []
    assert due(firing(State.PENDING), True, [], LEVELS, T0, POLICY) == []
