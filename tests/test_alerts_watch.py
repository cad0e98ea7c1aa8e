"""What the alerts' timer sees that no event says, on SQLite and PostgreSQL: heat a storeroom
has taken over a week, stock near or past its expiry, a box that took what the books did not
show, a count or stocktake that differed; and each condition's signal stops holding once it is
gone. Also: messages short enough for one SMS, and sites warned of when fewer than three people
would hear of their alerts."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from server import commands
from server.alerts.config import AlertsSection, Contact
from server.alerts.lifecycle import Alert, State
from server.alerts.notify import contacts_warnings
from server.alerts.projection import Live, observe_signals
from server.alerts.signals import Severity, Signal
from server.alerts.text import SMS_CHARS, notice_text
from server.alerts.watch import UNANSWERED_AFTER, UNANSWERED_ATTEMPTS, Watch
from server.climate.projection import ClimateProjection
from server.ingest.core import Ingestor
from server.ledger import book
from server.ledger import entries as en
from server.store.db import make_engine, migrate, statements
from server.store.schema import agents
from server.store.schema import commands as command_rows
from tests.support import plan_lines
from tests.test_alerts_projection import events, record
from tests.test_boxes_projection import dispense, ev, restock, send, slot_state
from tests.test_ingest import NOW, TOPIC
from tests.test_ledger import BY, TODAY, ledger_only, send_at, stocked


def signals(engine: sa.Engine, now: datetime, **section: Any) -> dict[str, Signal]:
    with engine.connect() as conn:
        found = Watch(AlertsSection(**section)).signals(conn, now)
    return {s.key: s for s, _ in found if s.active}


def test_heat_taken_over_a_week_is_cumulative_exposure(engine: sa.Engine) -> None:
    feed = Ingestor(engine, "fp", projections=[ClimateProjection()])
    start = NOW - timedelta(days=3)
    # Every 10 minutes for two days: 11 hours of it at 31 °C, in two spells.
    temps = [31.0 if n < 36 or 200 <= n < 230 else 24.0 for n in range(288)]
    readings = [record(t, start + timedelta(minutes=10 * n)) for n, t in enumerate(temps)]
    feed.handle(TOPIC, events(1, *readings), NOW)
    found = signals(engine, NOW)
    exposure = found["climate.exposure:county:no2"]
    assert exposure.severity is Severity.CRITICAL
    assert 10.5 <= exposure.detail["hours"] <= 11.5
    assert "climate.exposure:county:no2" not in signals(engine, NOW, exposure_hours=12)
    assert "climate.exposure:county:no2" not in signals(engine, NOW + timedelta(days=6))


def test_stock_near_and_past_expiry(engine: sa.Engine) -> None:
    stocked(ledger_only(engine))  # batch B1 expires 2028-06-30
    soon = signals(engine, datetime(2028, 6, 10, tzinfo=NOW.tzinfo))
    near = soon["stock.expiry:county:no1/condom-a/B1"]
    assert (near.severity, near.detail["days"], near.detail["quantity"]) == (
        Severity.WARNING, 20, 70)  # fmt: skip
    assert "stock.expiry:village:transit/condom-a/B1" in soon
    late = signals(engine, datetime(2028, 7, 2, tzinfo=NOW.tzinfo))
    assert late["stock.expiry:county:no1/condom-a/B1"].severity is Severity.CRITICAL
    assert not any(k.startswith("stock.expiry") for k in signals(engine, NOW))


def test_a_discrepancy_and_a_variance_hold_for_a_day(engine: sa.Engine) -> None:
    ingest = ledger_only(engine)
    stocked(ingest)
    agent = "box-agent"
    count = {"box": "box-1", "slot": 1, "product": "condom-a", "expected": 7, "counted": 6,
             "lines": [{"batch": "B1", "expiry": "2028-06-30", "quantity": 6}],
             "source": "cli"}  # fmt: skip
    send_at(ingest, [
        ev(1, "cabinet.restock", restock(1, 8), agent=agent),
        ev(2, "cabinet.dispense", dispense(1, 7), agent=agent),
        ev(3, "cabinet.count", count, agent=agent),
        *(ev(4 + i, "cabinet.dispense", dispense(1, 0), agent=agent) for i in range(7)),
    ], agent)  # fmt: skip
    lines = [en.CountLine(product="condom-a", batch="B1", counted=60, expected=0)]
    book.enter(ingest, book.stocktake("county", "no1", 0, lines, BY), NOW, TODAY)
    found = signals(engine, NOW + timedelta(hours=1))
    assert found["ledger.discrepancy:village:box-1#1"].detail == {"short": 1}
    assert found["ledger.variance:village:box-1"].detail == {"difference": -1}
    assert found["ledger.variance:county:no1"].detail == {"difference": -10}, "5 + 5 unqualified"
    later = signals(engine, NOW + timedelta(days=1, hours=1))
    assert not any(k.startswith("ledger.") for k in later)


def test_a_condition_gone_is_said_for_its_open_alert(engine: sa.Engine) -> None:
    stocked(ledger_only(engine))
    section = AlertsSection()
    watch = Watch(section)
    june = datetime(2028, 6, 10, tzinfo=NOW.tzinfo)
    with engine.begin() as conn:
        assert observe_signals(conn, watch.signals(conn, june), section.policies({})) >= 1
    with engine.begin() as conn:
        watch = Watch(section)  # a new round of slow looks
        said = {s.key: s.active for s, _ in watch.signals(conn, NOW)}
    assert said["stock.expiry:county:no1/condom-a/B1"] is False


RULES = ["climate.range", "climate.room", "climate.sensor", "climate.calibration", "box.slot",
         "box.jam", "box.tamper", "box.offline", "agent.storage", "agent.offline", "agent.gap",
         "agent.messages", "climate.exposure", "stock.expiry", "ledger.discrepancy",
         "ledger.variance", "alerts.channel", "agent.commands", "box.shared"]  # fmt: skip
DETAILS: list[dict[str, Any]] = [
    {}, {"temperature_c": -12.345, "humidity_pct": 100.0}, {"state": "count_needed"},
    {"hours": 123.4, "threshold_c": 30.0, "days": 7}, {"expiry": "2028-06-30", "quantity": 12345},
    {"difference": -12345}, {"short": 999}, {"unanswered": 12345, "since": NOW.isoformat()},
    {"agents": ["a-very-long-agent-id-" * 3, "another-agent-id"]},
]  # fmt: skip


@given(
    rule=st.sampled_from(RULES),
    detail=st.sampled_from(DETAILS),
    reason=st.sampled_from(["fired", "renotify", "escalated", "acknowledged", "resolved"]),
    lang=st.sampled_from(["zh", "en"]),
    site=st.text(min_size=1, max_size=40),
    subject=st.text(min_size=1, max_size=80),
    action=st.text(max_size=200),
    alert_id=st.integers(1, 10**12),
)
def test_every_notice_fits_one_sms(
    rule: str,
    detail: dict[str, Any],
    reason: str,
    lang: Any,
    site: str,
    subject: str,
    action: str,
    alert_id: int,
) -> None:
    alert = Alert(f"{rule}:x:y", State.ACKNOWLEDGED, since=NOW, acked_by="李保管",
                  action=action or None)  # fmt: skip
    signal = Signal(rule, alert.key, "x", subject, True, Severity.CRITICAL, detail)
    text = notice_text(lang, Live(1, alert, signal, True, NOW), reason, site, alert_id)
    assert 0 < len(text) <= SMS_CHARS
    assert str(alert_id) in text, "the number people acknowledge by is never cut"


@pytest.mark.parametrize(
    ("people", "warned"),
    [
        ([("county", 1), ("county", 2), ("*", 3)], []),
        ([("county", 1), ("county", 2)], ["county", "town", "village"]),
        ([("town", 1), ("county", 2), ("county", 3)], ["county"]),
    ],
)
def test_sites_reaching_fewer_than_three_people_are_warned_of(
    people: list[tuple[str, int]], warned: list[str]
) -> None:
    section = AlertsSection(contacts=[Contact(site=s, name=f"p{n}", level=lv, phone=f"1380000{n}")
                                      for n, (s, lv) in enumerate(people)])  # fmt: skip
    parents: dict[str, str | None] = {"village": "town", "town": "county", "county": None}
    said = contacts_warnings(section, ["county", "town", "village"], parents)
    assert [w.split(":")[0].removeprefix("site ") for w in said] == warned


def test_the_exposure_look_reads_only_the_window_of_each_room(tmp_path: Path) -> None:
    """Years of records must not be scanned every five minutes: every statement on the
    records seeks along an index."""
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    migrate(engine)
    feed = Ingestor(engine, "fp", projections=[ClimateProjection()])
    start = NOW - timedelta(days=3)
    readings = [record(31.0, start + timedelta(minutes=10 * n)) for n in range(80)]
    feed.handle(TOPIC, events(1, *readings), NOW)
    with statements(engine, "climate_records") as seen:
        found = signals(engine, NOW, exposure_hours=10)
    assert "climate.exposure:county:no2" in found
    assert seen
    for statement, params in seen:
        plan = plan_lines(engine, statement, params, "climate_records")
        assert not any(line.startswith("SCAN") for line in plan), plan


def test_a_command_never_answered_is_an_alert_for_its_agent(engine: sa.Engine) -> None:
    Ingestor(engine, "fp", projections=[ClimateProjection()]).handle(
        TOPIC, events(1, record(22.0, NOW)), NOW
    )
    with engine.connect() as conn:
        agent = conn.execute(sa.select(agents.c.agent_id)).scalar_one()
    sent = NOW - UNANSWERED_AFTER - timedelta(minutes=1)
    ping = commands.parse_body("ping", {})
    stuck = commands.queue(engine, "fp", agent, ping, sent)
    for n in range(UNANSWERED_ATTEMPTS):
        commands.mark_published(engine, [replace(stuck, attempts=n)], sent, 60, 900)
    commands.queue(engine, "fp", agent, ping, sent)  # never published: the agent was away
    assert f"agent.commands:county:{agent}" not in signals(engine, NOW), "no status: not online"
    with engine.begin() as conn:
        conn.execute(agents.update().values(online=True))
    found = signals(engine, NOW)[f"agent.commands:county:{agent}"]
    assert found.detail["unanswered"] == 1
    with engine.begin() as conn:
        conn.execute(command_rows.update().values(result_ok=False, result_at=NOW))
    assert f"agent.commands:county:{agent}" not in signals(engine, NOW)


def test_one_box_id_from_two_agents_at_a_site_is_an_alert(engine: sa.Engine) -> None:
    feed = Ingestor(engine, "fp")
    for agent in ("station-1", "station-2"):
        send(feed, [ev(1, "cabinet.slot", slot_state(1, "ok", "empty", 10, "B1"), agent=agent)],
             agent=agent)  # fmt: skip
    send(feed, [ev(2, "cabinet.slot", slot_state(1, "ok", "empty", 10, "B1") | {"box": "box-2"},
                   agent="station-2")], agent="station-2")  # fmt: skip
    found = signals(engine, NOW)
    shared = found["box.shared:county:box-1"]
    assert shared.detail == {"agents": ["station-1", "station-2"]}
    assert shared.severity is Severity.CRITICAL
    assert "box.shared:county:box-2" not in found
    with engine.begin() as conn:
        conn.execute(
            agents.update()
            .where(agents.c.agent_id == "station-1")
            .values(last_heard_at=NOW - timedelta(days=2))
        )
    assert "box.shared:county:box-1" not in signals(engine, NOW), "one of them long gone"
