"""An alert's life as people see it: one alert per condition however often it is reported,
fired after its hold, acknowledged with the action taken, resolved once the condition has
gone, and a flapping condition held instead of told again and again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.alerts.lifecycle import (
    OPEN,
    Alert,
    AlertError,
    Change,
    Policy,
    State,
    acknowledge,
    flapping,
    observe,
)

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
KEY = "climate.range:county:no2"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def run(
    seen: Sequence[tuple[float, bool]], policy: Policy, alert: Alert | None = None
) -> tuple[Alert | None, list[tuple[float, Change]]]:
    told: list[tuple[float, Change]] = []
    for minute, active in seen:
        alert, changes = observe(alert, KEY, active, at(minute), policy)
        told += [(minute, c) for c in changes]
    return alert, told


def test_a_condition_reported_by_many_messages_is_one_alert() -> None:
    alert, told = run([(m, True) for m in range(60)], Policy())
    assert told == [(0, Change.FIRED)]
    assert alert is not None
    assert alert.state is State.FIRING


def test_it_fires_only_once_the_condition_has_held_for_its_hold() -> None:
    policy = Policy(for_s=600)
    _, told = run([(0, True), (5, True), (9, True), (10, True), (11, True)], policy)
    assert told == [(10, Change.FIRED)]
    blip, told = run([(0, True), (5, True), (6, False), (20, False)], policy)
    assert (blip, told) == (None, []), "a short excursion leaves nothing"


def test_acknowledged_with_the_action_then_resolved_when_the_condition_goes() -> None:
    alert, _ = run([(0, True)], Policy(clear_s=300))
    assert alert is not None
    alert, changes = acknowledge(alert, "李保管", "开启除湿机", at(3))
    assert changes == [Change.ACKNOWLEDGED]
    assert (alert.state, alert.acked_by, alert.action) == (
        State.ACKNOWLEDGED,
        "李保管",
        "开启除湿机",
    )
    alert, told = run(
        [(4, True), (10, False), (12, False), (15, False)], Policy(clear_s=300), alert
    )
    assert told == [(15, Change.RESOLVED)]
    assert alert is not None
    assert alert.action == "开启除湿机", "kept for the record sheet"
    with pytest.raises(AlertError):
        acknowledge(alert, "李保管", None, at(16))


def test_a_condition_back_before_its_clear_time_never_resolved() -> None:
    _, told = run([(0, True), (1, False), (3, False), (4, True), (5, False), (30, False)],
                  Policy(clear_s=300))  # fmt: skip
    assert told == [(0, Change.FIRED), (30, Change.RESOLVED)]


def test_a_flapping_condition_is_held_open_instead_of_told_again_and_again() -> None:
    policy = Policy(flap_window_s=3600, flap_limit=3)
    seen = [(m, m % 10 < 5) for m in range(0, 60)]  # five minutes on, five off, for an hour
    alert, told = run(seen, policy)
    fired = [m for m, c in told if c is Change.FIRED]
    assert len(fired) == 4, "the first, then three returns; then it is held"
    assert alert is not None
    assert flapping(alert, policy)
    # Gone since minute 55: resolved an hour later, not at its first quiet look.
    alert, told = run([(61, False), (114, False), (115, False)], policy, alert)
    assert told == [(115, Change.RESOLVED)]


@given(st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=60),
       st.integers(0, 20), st.integers(0, 20))  # fmt: skip
def test_fired_and_resolved_alternate_whatever_is_seen(
    steps: list[tuple[int, bool]], for_min: int, clear_min: int
) -> None:
    policy = Policy(for_s=for_min * 60, clear_s=clear_min * 60, flap_window_s=1800, flap_limit=2)
    minute, seen = 0, []
    for gap, active in steps:
        minute += gap
        seen.append((minute, active))
    alert, told = run(seen, policy)
    kinds = [c for _, c in told]
    assert kinds == [Change.FIRED, Change.RESOLVED] * (len(kinds) // 2) + [Change.FIRED] * (
        len(kinds) % 2
    )
    is_open = alert is not None and alert.state in OPEN
    assert is_open == (len(kinds) % 2 == 1)
