"""The climate rules, driven directly: states, hysteresis, record intervals, validation."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.climate.rules import (
    AgreementMonitor,
    Disagreement,
    Limits,
    Quality,
    RecordPolicy,
    RoomMonitor,
    RoomState,
    Sample,
    SensorHealth,
    Transition,
    disagreement,
)

LIMITS = Limits()  # 10-30 °C, 35-75 %RH, warn within 1 °C / 3 %RH


def states(monitor: RoomMonitor, temps: list[float], rh: float = 50.0) -> list[RoomState]:
    out = []
    for t in temps:
        monitor.feed("a", t, rh)
        out.append(monitor.state)
    return out


def test_normal_warning_alarm_and_back() -> None:
    m = RoomMonitor("no1", LIMITS)
    got = states(m, [25.0, 29.5, 30.5, 31.0, 31.0, 29.0, 28.0, 27.5, 25.0])
    assert got == [
        RoomState.NORMAL,
        RoomState.WARNING,  # within 1 °C of 30
        RoomState.WARNING,  # first sample out: not yet an alarm
        RoomState.ALARM,  # second consecutive sample out
        RoomState.ALARM,
        RoomState.ALARM,  # 29.0: back in range, but one good sample does not clear it
        RoomState.NORMAL,  # 28.0: the second; clearly inside warn margin + hysteresis
        RoomState.NORMAL,
        RoomState.NORMAL,
    ]


def test_transitions_are_reported_once_each() -> None:
    m = RoomMonitor("no1", LIMITS)
    transitions = [m.feed("a", t, 50.0) for t in [20.0, 31.0, 31.0, 31.0, 20.0, 20.0, 20.0]]
    changes = [(x.before, x.after) for x in transitions if x is not None]
    assert changes == [
        (RoomState.NORMAL, RoomState.WARNING),
        (RoomState.WARNING, RoomState.ALARM),
        (RoomState.ALARM, RoomState.NORMAL),
    ]


@given(st.lists(st.floats(29.6, 30.4), min_size=10, max_size=60))
def test_a_value_hovering_on_a_limit_does_not_flap(temps: list[float]) -> None:
    """Noise of ±0.4 °C around 30 °C: at most one change into alarm and one out."""
    m = RoomMonitor("no1", LIMITS)
    m.feed("a", 29.8, 50.0)
    changes = [x for t in temps if (x := m.feed("a", t, 50.0)) is not None]
    assert len([c for c in changes if c.after is RoomState.NORMAL]) == 0
    alarms_cleared = [c for c in changes if c.before is RoomState.ALARM]
    assert alarms_cleared == [], "clearing needs values clearly inside, which ±0.4 °C never gives"


def test_room_follows_its_worst_sensor_and_humidity_counts() -> None:
    m = RoomMonitor("no1", LIMITS)
    m.feed("a", 20.0, 50.0)
    m.feed("b", 20.0, 80.0)
    assert m.feed("b", 20.0, 80.0) is not None
    assert m.state == RoomState.ALARM
    m.forget("b")
    after = [m.feed("a", 20.0, 50.0) for _ in range(2)]
    assert after[-1] is not None
    assert after[-1].after == RoomState.NORMAL


def test_record_intervals_in_and_out_of_range() -> None:
    policy = RecordPolicy(in_range_s=1800, out_of_range_s=120)
    times = [t for t in range(0, 7200, 60) if policy.due(t, in_range=t < 3600)]
    in_range = [t for t in times if t < 3600]
    out = [t for t in times if t >= 3600]
    assert in_range == [0, 1800]
    assert out[0] == 3600, "at once on leaving the range"
    assert all(b - a == 120 for a, b in itertools.pairwise(out))


def test_record_interval_never_exceeds_the_gsp_maxima() -> None:
    policy = RecordPolicy(in_range_s=7200, out_of_range_s=600)
    assert (policy.in_range_s, policy.out_of_range_s) == (1800, 120)


@given(st.lists(st.tuples(st.integers(1, 90), st.booleans()), min_size=1, max_size=200))
def test_no_gap_between_records_exceeds_the_interval(steps: list[tuple[int, bool]]) -> None:
    policy = RecordPolicy(in_range_s=1800, out_of_range_s=120)
    now, last = 0.0, None
    policy.due(now, True)
    last = now
    for dt, in_range in steps:
        now += dt
        if policy.due(now, in_range):
            last = now
        limit = 1800 if in_range else 120
        assert now - last < limit + 90  # samples come at most 90 s apart here


def test_validation_flags_implausible_spike_and_stuck() -> None:
    h = SensorHealth(stuck_after_s=600)
    assert h.check(0, 61.0, 50.0) is None
    assert h.check(0, 20.0, 101.0) is None
    assert h.check(0, 20.0, 50.0) == []
    assert h.check(60, 26.0, 50.0) == [Quality.SPIKE]  # 6 °C in a minute
    assert h.check(120, 26.0, 50.0) == []
    assert h.check(800, 26.0, 50.0) == [Quality.STUCK]


def test_fault_after_120_s_without_a_valid_reading_then_recovery() -> None:
    h = SensorHealth()
    h.check(0, 20.0, 50.0)
    assert not h.fault_due(60)
    assert h.fault_due(121)
    assert not h.fault_due(500), "reported once"
    assert h.check(600, 20.0, 50.0) == []
    assert h.recovered()
    assert not h.recovered()


def test_fault_for_a_sensor_that_never_answered() -> None:
    h = SensorHealth()
    assert not h.fault_due(10)
    assert h.fault_due(131)


def test_disagreement_between_two_sensors() -> None:
    a, b = Sample(20.0, 50.0, at=100.0), Sample(20.5, 52.0, at=100.1)
    assert disagreement({"a": a, "b": b}, 1.5, 8.0, within_s=1.0) is None
    far = Sample(22.0, 52.0, at=100.1)
    found = disagreement({"a": a, "b": far}, 1.5, 8.0, within_s=1.0)
    assert found == Disagreement(("a", "b"), (a, far), 2.0, 2.0)
    assert found.apart_s == pytest.approx(0.1), "the event's log says how far apart in time"


def test_readings_taken_at_different_moments_are_not_compared() -> None:
    """b's last reading is 30 s older than a's: the room warmed meanwhile, no disagreement."""
    a, b_old = Sample(24.7, 50.0, at=130.0), Sample(22.0, 50.0, at=100.0)
    assert disagreement({"a": a, "b": b_old}, 2.0, 10.0, within_s=5.0) is None
    b_now = Sample(24.6, 50.0, at=130.2)
    assert disagreement({"a": a, "b": b_now}, 2.0, 10.0, within_s=5.0) is None


def test_agreement_monitor_compares_only_readings_taken_together() -> None:
    """A room warming fast, its two sensors read alternately a poll interval apart: the old
    rule compared a's new value with b's old one and warned; only same-round pairs count."""
    m = AgreementMonitor(margin_c=2.0, margin_pct=10.0, within_s=0.5)
    warnings = []
    for tick in range(20):
        now = tick * 1.0
        temperature = 20.0 + 3.0 * tick  # 3 °C per poll interval
        # a is read at the start of a round, b a whisker later; each compared with the other.
        warnings.append(m.feed("a", now, temperature, 50.0))
        warnings.append(m.feed("b", now + 0.05, temperature + 0.1, 50.0))
    assert [w for w in warnings if w is not None] == []


def test_agreement_episode_reported_once_with_the_values_compared() -> None:
    m = AgreementMonitor(margin_c=2.0, margin_pct=10.0, within_s=0.5)
    assert m.feed("a", 0.0, 22.0, 50.0) is None
    found = m.feed("b", 0.1, 24.7, 51.0)
    assert found is not None
    assert found.sensors == ("a", "b")
    assert found.samples == (Sample(22.0, 50.0, 0.0), Sample(24.7, 51.0, 0.1))
    assert (found.delta_c, found.delta_pct) == (2.7, 1.0)
    assert m.feed("a", 1.0, 22.0, 50.0) is None, "still the same episode"
    assert m.feed("b", 1.1, 24.7, 51.0) is None
    # b falls silent: a alone is nothing to compare with, and the episode stands.
    assert m.feed("a", 5.0, 22.0, 50.0) is None
    assert m.disagreeing
    # Read together and in agreement: the episode ends; the next disagreement is a new one.
    assert m.feed("b", 5.1, 22.2, 50.0) is None
    assert not m.disagreeing
    assert m.feed("a", 5.2, 19.0, 50.0) is not None


def test_a_forgotten_sensor_is_not_compared() -> None:
    m = AgreementMonitor(margin_c=2.0, margin_pct=10.0, within_s=10.0)
    m.feed("a", 0.0, 22.0, 50.0)
    m.forget("a")
    assert m.feed("b", 0.1, 30.0, 50.0) is None


def test_one_sensor_out_of_range_alarms_even_when_the_other_reads_in_range() -> None:
    m = RoomMonitor("no1", LIMITS)
    for _ in range(3):
        m.feed("a", 32.0, 50.0)
        m.feed("b", 29.5, 50.0)
    assert m.state is RoomState.ALARM


def test_a_single_spike_is_flagged_and_the_return_is_not() -> None:
    h = SensorHealth()
    h.check(0, 22.0, 50.0)
    assert h.check(60, 35.0, 50.0) == [Quality.SPIKE]
    assert h.check(120, 22.0, 50.0) == []


def test_a_new_level_is_accepted_after_repeated_spikes() -> None:
    h = SensorHealth(spikes_to_accept=3)
    h.check(0, 22.0, 50.0)
    assert h.check(60, 35.0, 50.0) == [Quality.SPIKE]
    assert h.check(120, 35.0, 50.0) == [Quality.SPIKE]
    assert h.check(180, 35.0, 50.0) == []
    assert h.check(240, 35.0, 50.0) == []


def test_record_is_taken_early_rather_than_late() -> None:
    """With a reading every 60 s, waiting for the next one would pass 30 min: record now."""
    policy = RecordPolicy(in_range_s=1800, out_of_range_s=120, slack_s=60)
    records = [t for t in range(0, 7200, 60) if policy.due(t, True)]
    assert all(b - a <= 1800 for a, b in itertools.pairwise(records))
    out = RecordPolicy(in_range_s=1800, out_of_range_s=120, slack_s=50)
    late = [t for t in range(0, 1000, 50) if out.due(t, False)]
    assert all(b - a <= 120 for a, b in itertools.pairwise(late))


def test_a_state_change_carries_the_values_of_the_sensor_it_names() -> None:
    """Alarm clears on a's good readings while b, also good, was fed last: the change names
    one sensor and must carry that sensor's reading, not the other's."""
    m = RoomMonitor("no1", LIMITS)
    m.feed("a", 32.0, 50.0)
    m.feed("b", 31.5, 50.0)
    m.feed("a", 32.0, 50.0)
    assert m.state is RoomState.ALARM
    m.feed("b", 20.3, 50.0)
    m.feed("a", 20.0, 51.0)
    change = m.feed("a", 20.1, 52.0)
    assert change is not None
    assert change.after is RoomState.NORMAL
    assert (change.sensor, change.temperature_c, change.humidity_pct) == ("a", 20.1, 52.0)


def test_a_state_change_caused_by_another_sensor_names_that_sensor() -> None:
    m = RoomMonitor("no1", LIMITS)
    m.feed("a", 20.0, 50.0)
    m.feed("b", 29.5, 50.0)  # b alone calls for a warning
    assert m.state is RoomState.WARNING
    m.feed("b", 31.0, 50.0)
    change = m.feed("a", 20.0, 50.0)  # b's out-of-range run is not yet confirmed: no change
    assert change is None
    change = m.feed("b", 31.2, 50.0)
    assert change is not None
    assert change.after is RoomState.ALARM
    assert (change.sensor, change.temperature_c) == ("b", 31.2)


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.floats(5.0, 35.0), st.floats(30.0, 80.0)),
        min_size=1,
        max_size=80,
    )
)
def test_every_state_change_carries_its_own_sensors_values(
    readings: list[tuple[str, float, float]],
) -> None:
    m = RoomMonitor("no1", LIMITS)
    last: dict[str, tuple[float, float]] = {}
    for sensor, t, rh in readings:
        last[sensor] = (t, rh)
        change: Transition | None = m.feed(sensor, t, rh)
        if change is not None:
            assert (change.temperature_c, change.humidity_pct) == last[change.sensor]
            level = LIMITS.level(change.temperature_c, change.humidity_pct, change.before)
            assert level is not RoomState.NORMAL or change.after is RoomState.NORMAL, (
                "the sensor named calls for at least the state the room went to"
            )
