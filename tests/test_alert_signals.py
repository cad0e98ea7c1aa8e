"""What the agents' events say to the alerts: an excursion the agent missed is caught from its
records, a thousand records of one excursion are one alert, a sensor fault holds until it
recovers, each box slot is its own alert, and a forced door is a one-off that fires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from edge_agent.wire import parse_event
from server.alerts.lifecycle import Alert, Change, Policy, observe
from server.alerts.signals import Range, Severity, Signal, of_event
from tests.test_wire import climate_event

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def event(seq: int, kind: str, payload: dict[str, Any]) -> Any:
    at = (T0 + timedelta(minutes=seq)).isoformat()
    return parse_event(climate_event(seq, kind=kind, payload=payload, occurred_at=at))


def record(seq: int, temperature: float, humidity: float = 55.0) -> Any:
    return event(seq, "climate.record", {
        "storeroom": "no2", "sensor": "no2-a", "temperature_c": temperature,
        "humidity_pct": humidity, "raw_temperature_c": temperature, "raw_humidity_pct": humidity,
    })  # fmt: skip


def signals(*events: Any) -> list[Signal]:
    return [s for e in events for s in of_event("town", e, lambda site, room: Range())]


def test_an_excursion_the_agent_missed_is_caught_from_its_records_as_one_alert() -> None:
    # The agent judged nothing (no climate.state): the records themselves are over 30 °C.
    seen = signals(*(record(n, 29.5 if n < 3 or n > 40 else 31.2) for n in range(1, 51)))
    assert {s.key for s in seen} == {"climate.range:town:no2"}
    assert all(s.severity is Severity.CRITICAL for s in seen)
    alert: Alert | None = None
    told = []
    for n, s in enumerate(seen):
        alert, changes = observe(alert, s.key, s.active, T0 + timedelta(minutes=n), Policy())
        told += changes
    assert told == [Change.FIRED, Change.RESOLVED], "one alert, not one per record"
    humid = signals(record(1, 22.0, humidity=80.0))
    assert humid[0].active


def test_a_sensor_fault_holds_until_it_recovers() -> None:
    fault, recovered = signals(
        event(1, "climate.sensor_fault", {"storeroom": "no1", "sensor": "no1-b",
                                          "error": "timeout", "reason": "no_response"}),
        event(2, "climate.sensor_recovered", {"storeroom": "no1", "sensor": "no1-b"}),
    )  # fmt: skip
    assert fault.key == recovered.key == "climate.sensor:town:no1/no1-b"
    assert (fault.active, recovered.active) == (True, False)
    assert fault.detail["reason"] == "no_response"


def test_each_box_slot_is_its_own_alert_and_a_forced_door_a_one_off() -> None:
    def slot(n: int, state: str) -> Any:
        return event(n, "cabinet.slot", {"box": "box-1", "slot": n, "product": "condom-a",
                                         "state": state, "count": 0})  # fmt: skip

    empty, low, ok = signals(slot(1, "empty"), slot(2, "low"), slot(1, "ok"))
    assert empty.key != low.key
    assert (empty.active, empty.severity) == (True, Severity.CRITICAL)
    assert (low.active, low.severity) == (True, Severity.WARNING)
    assert (ok.key, ok.active) == (empty.key, False)
    (forced,) = signals(
        event(4, "cabinet.tamper", {"box": "box-1", "reason": "door_without_card", "open_s": 3})
    )
    assert (forced.key, forced.instant, forced.severity) == (
        "box.tamper:town:box-1", True, Severity.CRITICAL,
    )  # fmt: skip


def test_what_is_not_an_alert_says_nothing() -> None:
    assert signals(event(1, "agent.started", {"version": "1.0"})) == []
