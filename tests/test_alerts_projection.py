"""Alerts raised in the ingest transaction, on SQLite and PostgreSQL: a storeroom's excursion
reported by many records is one alert, fired and then resolved by the timer once the records
are back in range for the clear time; a forced door fires and resolves itself; a sensor that
faults briefly leaves nothing; events too old to matter move nothing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.alerts.projection import AlertsProjection, tick
from server.ingest.core import Ingestor
from server.store.schema import alerts
from tests.test_ingest import EPOCH, NOW, TOPIC
from tests.test_wire import climate_event


def events(first: int, *payloads: tuple[str, dict[str, Any], datetime]) -> bytes:
    return json.dumps({
        "v": 1, "agent_id": "station-1", "epoch": EPOCH, "sent_at": NOW.isoformat(),
        "events": [climate_event(first + n, kind=kind, payload=p, occurred_at=at.isoformat())
                   for n, (kind, p, at) in enumerate(payloads)],
    }).encode()  # fmt: skip


def record(temperature: float, at: datetime) -> tuple[str, dict[str, Any], datetime]:
    return ("climate.record", {
        "storeroom": "no2", "sensor": "no2-a", "temperature_c": temperature, "humidity_pct": 55.0,
        "raw_temperature_c": temperature, "raw_humidity_pct": 55.0,
    }, at)  # fmt: skip


def rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(alerts).order_by(alerts.c.id)))


def ingest(engine: sa.Engine) -> Ingestor:
    return Ingestor(engine, "fp", projections=[AlertsProjection(now=lambda: NOW)])


def minutes(n: float) -> datetime:
    return NOW + timedelta(minutes=n)


def test_an_excursion_is_one_alert_fired_then_resolved_by_the_timer(engine: sa.Engine) -> None:
    feed = ingest(engine)
    feed.handle(TOPIC, events(1, *(record(31.5, minutes(m)) for m in range(10))), NOW)
    feed.handle(TOPIC, events(11, *(record(31.0, minutes(m)) for m in range(10, 20))), NOW)
    [alert] = rows(engine)
    assert (alert.key, alert.state, alert.severity) == ("climate.range:county:no2", "firing",
                                                        "critical")  # fmt: skip
    assert json.loads(alert.detail)["temperature_c"] == 31.0
    feed.handle(TOPIC, events(21, record(24.0, minutes(20))), NOW)
    with engine.begin() as conn:
        assert tick(conn, minutes(25)) == 0, "back in range, but not yet for its clear time"
        assert tick(conn, minutes(31)) == 1
    [alert] = rows(engine)
    assert alert.state == "resolved"
    feed.handle(TOPIC, events(22, record(32.0, minutes(40))), NOW)
    assert [a.state for a in rows(engine)] == ["resolved", "firing"], "the next one is its own"


def test_a_forced_door_fires_and_resolves_itself(engine: sa.Engine) -> None:
    forced = ("cabinet.tamper", {"box": "box-1", "reason": "door_without_card", "open_s": 4},
              minutes(0))  # fmt: skip
    ingest(engine).handle(TOPIC, events(1, forced), NOW)
    [alert] = rows(engine)
    assert (alert.state, alert.condition) == ("firing", False)
    with engine.begin() as conn:
        tick(conn, minutes(31))
    assert rows(engine)[0].state == "resolved"


def test_a_brief_sensor_fault_leaves_nothing(engine: sa.Engine) -> None:
    fault = ("climate.sensor_fault", {"storeroom": "no1", "sensor": "no1-a", "error": "timeout",
                                      "reason": "no_response"}, minutes(0))  # fmt: skip
    back = ("climate.sensor_recovered", {"storeroom": "no1", "sensor": "no1-a"}, minutes(1))
    feed = ingest(engine)
    feed.handle(TOPIC, events(1, fault), NOW)
    assert [a.state for a in rows(engine)] == ["pending"]
    feed.handle(TOPIC, events(2, back), NOW)
    assert rows(engine) == []
    feed.handle(TOPIC, events(3, fault), NOW)
    with engine.begin() as conn:
        tick(conn, minutes(3))
    assert [a.state for a in rows(engine)] == ["firing"], "held past its two minutes"


def test_events_too_old_to_matter_move_nothing(engine: sa.Engine) -> None:
    ingest(engine).handle(TOPIC, events(1, record(35.0, NOW - timedelta(days=30))), NOW)
    assert rows(engine) == []


def test_an_acknowledgement_is_a_journaled_entry_that_records_the_action(engine: sa.Engine) -> None:
    from server.alerts.entries import Acknowledgement
    from server.alerts.lifecycle import AlertError
    from server.alerts.projection import check_ack

    feed = ingest(engine)
    feed.handle(TOPIC, events(1, record(32.0, NOW)), NOW)
    ack = Acknowledgement(key="climate.range:county:no2", by="李保管", action="开启空调")

    def make(conn: sa.Connection) -> list[tuple[str, Acknowledgement]]:
        check_ack(conn, ack)
        return [("alerts.ack", ack)]

    feed.enter(make, NOW + timedelta(minutes=5))
    [alert] = rows(engine)
    assert (alert.state, alert.acked_by, alert.action) == ("acknowledged", "李保管", "开启空调")
    with engine.connect() as conn:
        entered = conn.execute(sa.text("SELECT count(*) FROM journal WHERE kind = 'alerts.ack'"))
        assert entered.scalar() == 1
    stranger = ack.model_copy(update={"key": "climate.range:county:no9"})
    with engine.connect() as conn, pytest.raises(AlertError) as refused:
        check_ack(conn, stranger)
    assert refused.value.key == "alert.unknown"


def test_a_replay_tells_nothing_again(engine: sa.Engine) -> None:
    from server.projections import replay

    feed = ingest(engine)
    feed.handle(TOPIC, events(1, record(31.5, minutes(0))), NOW)
    feed.handle(TOPIC, events(2, record(24.0, minutes(1))), NOW)
    with engine.begin() as conn:
        tick(conn, minutes(20))
    before = [(a.id, a.state) for a in rows(engine)]
    assert before == [(before[0][0], "resolved")]
    replay(engine, [AlertsProjection(now=lambda: NOW)])
    assert [(a.id, a.state) for a in rows(engine)] == before


def test_a_rule_can_be_off_or_timed_apart_for_one_site(engine: sa.Engine) -> None:
    from server.alerts.config import RULES, AlertsSection, RulePolicy
    from server.alerts.projection import POLICIES

    assert set(POLICIES) == RULES, "every rule has its timing"
    section = AlertsSection(rules={
        "county:climate.range": RulePolicy(enabled=False),
        "climate.range": RulePolicy(for_s=60),
    })  # fmt: skip
    projection = AlertsProjection.configured(section)
    projection.now = lambda: NOW
    feed = Ingestor(engine, "fp", projections=[projection])
    feed.handle(TOPIC, events(1, *(record(35.0, minutes(m)) for m in range(5))), NOW)
    assert rows(engine) == [], "off at this site"
    policies = section.policies(POLICIES)
    assert policies["climate.range"].for_s == 60
    assert policies["county:climate.range"].for_s == 60, "a site apart starts from its rule"
    assert policies["climate.range"].clear_s == POLICIES["climate.range"].clear_s
