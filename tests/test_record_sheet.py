"""The monthly temperature and humidity record sheet: its rules on small cases, and a simulated
month through the real ingest (SQLite and PostgreSQL) whose sheet matches, cell by cell, what
this test computes on its own from the stored records."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from server.alerts.entries import Acknowledgement
from server.alerts.projection import AlertsProjection, check_ack
from server.alerts.signals import Range
from server.climate import sheet
from server.climate.projection import ClimateProjection
from server.climate.sheet import Action, Record
from server.ingest.core import Ingestor
from server.store.db import make_engine, utc
from server.store.schema import alerts, climate_records
from tests.test_alerts_projection import events
from tests.test_ingest import TOPIC
from tests.test_ledger_cli import ok, refused
from tests.test_server_cli import cli

ZONE = ZoneInfo("Asia/Shanghai")
LIMITS = Range()


def local(day: int, hour: int, minute: int = 0, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=ZONE)


def rec(at: datetime, sensor: str, t: float, h: float = 55.0) -> Record:
    return Record(at, sensor, t, h)


def test_a_check_reads_each_sensors_nearest_record_and_their_mean() -> None:
    records = [
        rec(local(1, 7, 40), "a", 20.0), rec(local(1, 8, 10), "a", 21.0),  # 08:10 is nearer
        rec(local(1, 7, 55), "b", 22.0, 60.0),
        rec(local(1, 16, 45), "a", 25.0),  # 45 minutes off: not the 16:00 reading
    ]  # fmt: skip
    made = sheet.make("county", "no2", 2026, 10, ZONE, LIMITS, records, [])
    first = made.days[0]
    assert [c.due.time() for c in first.checks] == [time(8), time(16)]
    morning, afternoon = first.checks
    assert morning.reading is not None
    assert (morning.reading.temperature_c, morning.reading.humidity_pct) == (21.5, 57.5)
    assert morning.reading.sensors == 2
    assert morning.in_range is True
    assert afternoon.reading is None
    assert afternoon.in_range is None
    assert (first.temperature_min_c, first.temperature_max_c, first.records) == (20.0, 25.0, 4)
    assert len(made.days) == 31
    assert made.days[1].records == 0


def test_an_action_is_on_the_check_before_it_with_the_reading_after() -> None:
    records = [rec(local(3, 8) + timedelta(minutes=m), "a", 31.0 if m < 60 else 26.0)
               for m in range(0, 600, 10)]  # fmt: skip
    actions = [Action(local(3, 8, 25), "李保管", "开启空调")]
    made = sheet.make("county", "no2", 2026, 10, ZONE, LIMITS, records, actions,
                      times=("09:00", "15:00"))  # fmt: skip
    day = made.days[2]
    assert [c.due.time() for c in day.checks] == [time(9), time(15)]
    before = made.days[1].checks[-1]  # yesterday 15:00 runs to today's 09:00
    assert [a.action for a in before.actions] == ["开启空调"]
    assert before.after is not None
    assert before.after.at == local(3, 8, 55)
    assert before.after.temperature_c == 31.0
    assert day.checks[0].actions == ()
    assert day.checks[0].in_range is True


def test_excursions_run_while_any_sensor_is_out_and_one_open_at_the_end() -> None:
    records = [
        rec(local(5, 10), "a", 25.0), rec(local(5, 10), "b", 25.0),
        rec(local(5, 11), "a", 31.0), rec(local(5, 11, 30), "b", 32.5),
        rec(local(5, 12), "a", 29.0),  # b is still out
        rec(local(5, 13), "b", 28.0, 80.0),  # humid
        rec(local(5, 14), "b", 28.0),
        rec(local(31, 23), "a", 35.0),
    ]  # fmt: skip
    made = sheet.make("county", "no2", 2026, 10, ZONE, LIMITS, records, [])
    first, last = made.excursions
    assert (first.start, first.end, first.duration_s) == (local(5, 11), local(5, 14), 10800)
    assert (first.temperature_min_c, first.temperature_max_c) == (28.0, 32.5)
    assert first.humidity_max_pct == 80.0, "b's humidity kept it out after its temperature"
    assert last.end is None
    assert last.duration_s == 3600, "to the month's end"


def test_times_of_checks_are_checked() -> None:
    for bad in ((), ("08:00", "08:00"), ("8 o'clock",)):
        with pytest.raises(ValueError, match=r"distinct times|Invalid isoformat"):
            sheet.parse_times(bad)
    assert len(sheet.make("c", "no1", 2028, 2, ZONE, LIMITS, [], []).days) == 29


# --- a simulated month through ingest -------------------------------------------------------------

SENSORS = ("no2-a", "no2-b")


def simulated() -> list[tuple[datetime, str, float, float]]:
    """Every 30 minutes at :07 and :37 for two sensors; October 10 too warm from 12:07 to
    15:37 at sensor a; no records on October 20 from 06:00 to 10:00."""
    out = []
    at = local(1, 0, 7)
    while at < local(1, 0, month=11):
        if not (local(20, 6) <= at < local(20, 10)):
            minute = (at - local(1, 0)).total_seconds() / 60
            base = 20.0 + 4.0 * math.sin(minute / 720 * math.pi)
            for n, sensor in enumerate(SENSORS):
                t = round(base + 0.4 * n, 1)
                if sensor == "no2-a" and local(10, 12) <= at < local(10, 16):
                    t = 31.5
                out.append((at, sensor, t, round(55.0 + 5 * n + math.cos(minute / 500), 1)))
        at += timedelta(minutes=30)
    return out


def expected_reading(rows: list[Any], due: datetime) -> tuple[float, float] | None:
    found = []
    for sensor in SENSORS:
        near = [r for r in rows if r[1] == sensor and abs(r[0] - due) <= timedelta(minutes=30)]
        if near:
            best = min(near, key=lambda r: (abs(r[0] - due), r[0]))
            found.append(best)
    if not found:
        return None
    return (round(sum(r[2] for r in found) / len(found), 2),
            round(sum(r[3] for r in found) / len(found), 2))  # fmt: skip


def expected_mkt(rows: list[Any], end: datetime) -> float:
    total = weighted = 0.0
    for sensor in SENSORS:
        mine = sorted((r for r in rows if r[1] == sensor), key=lambda r: r[0])
        for r, nxt in zip(mine, [*mine[1:], None], strict=True):
            w = min(((nxt[0] if nxt else end) - r[0]).total_seconds(), 1800.0)
            total += w
            weighted += w * math.exp(-10_000.0 / (r[2] + 273.15))
    return 10_000.0 / -math.log(weighted / total) - 273.15


#: The keeper's action while October 10 is too warm: when, who, what.
ACTED = ((local(10, 13, 10), "李保管", "开启空调"),)


def fill_month(engine: sa.Engine, acts: Sequence[tuple[datetime, str, str]] = ACTED) -> None:
    """The simulated month through ingest, each action acknowledging the storeroom's alert once
    the records before it are in."""
    month_end = local(1, 0, month=11)
    projection = AlertsProjection(now=lambda: month_end, max_age=timedelta(days=40))
    feed = Ingestor(engine, "fp", projections=[ClimateProjection(), projection])
    made = simulated()
    payloads = [
        ("climate.record", {"storeroom": "no2", "sensor": sensor, "temperature_c": t,
                            "humidity_pct": h, "raw_temperature_c": t, "raw_humidity_pct": h},
         at.astimezone(UTC))
        for at, sensor, t, h in made
    ]  # fmt: skip
    fed = 0

    def feed_upto(end: int) -> None:
        nonlocal fed
        for i in range(fed, end, 500):
            part = payloads[i : min(i + 500, end)]
            feed.handle(TOPIC, events(i + 1, *part), part[-1][2])
        fed = end

    for at, by, action in acts:
        feed_upto(sum(1 for p in payloads if p[2] <= at))
        ack = Acknowledgement(key="climate.range:county:no2", by=by, action=action)

        def make(conn: sa.Connection, ack: Acknowledgement = ack) -> list[Any]:
            check_ack(conn, ack)
            return [("alerts.ack", ack)]

        feed.enter(make, at.astimezone(UTC))
    feed_upto(len(payloads))


def test_a_simulated_month_matches_cell_by_cell(engine: sa.Engine) -> None:
    month_end = local(1, 0, month=11)
    fill_month(engine)

    with engine.connect() as conn:
        got = sheet.load(conn, "county", "no2", 2026, 10, ZONE, LIMITS)
        stored = [
            (utc(r.occurred_at).astimezone(ZONE), r.sensor, r.temperature_c, r.humidity_pct)
            for r in conn.execute(sa.select(climate_records))
        ]
    assert len(stored) == len(simulated())

    assert len(got.days) == 31
    for day in got.days:
        mine = [r for r in stored if r[0].date() == day.day]
        assert day.records == len(mine)
        if mine:
            assert day.temperature_min_c == min(r[2] for r in mine)
            assert day.temperature_max_c == max(r[2] for r in mine)
            assert day.humidity_min_pct == min(r[3] for r in mine)
            assert day.humidity_max_pct == max(r[3] for r in mine)
        for check in day.checks:
            want = expected_reading(stored, check.due)
            seen = None if check.reading is None else (check.reading.temperature_c,
                                                       check.reading.humidity_pct)  # fmt: skip
            assert seen == want, check.due
            if want is not None:
                assert check.in_range == (10 <= want[0] <= 30 and 35 <= want[1] <= 75)
    assert got.days[19].checks[0].reading is None, "no records near 08:00 on October 20"

    acted = [(d.day, c.due.time(), [a.action for a in c.actions], c.after)
             for d in got.days for c in d.checks if c.actions]  # fmt: skip
    assert [(d, t, a) for d, t, a, _ in acted] == [(date(2026, 10, 10), time(8), ["开启空调"])]
    after = acted[0][3]
    assert after is not None
    assert (after.temperature_c, after.humidity_pct) == expected_reading(stored, local(10, 13, 40))

    [hot] = got.excursions
    assert (hot.start, hot.end) == (local(10, 12, 7), local(10, 16, 7))
    assert hot.duration_s == 4 * 3600
    assert (hot.temperature_min_c, hot.temperature_max_c) == (31.5, 31.5), "the out-of-range values"
    assert got.mkt_c == pytest.approx(expected_mkt(stored, month_end), abs=1e-6)


def test_every_action_on_an_alert_is_on_the_sheet_with_the_reading_after_the_last(
    engine: sa.Engine,
) -> None:
    """Acknowledged twice, the alert keeps only the newer action; the journal keeps both."""
    month_end = local(1, 0, month=11)
    fill_month(engine, [(local(10, 13, 10), "李保管", "开启除湿机"),
                        (local(10, 14, 20), "王站长", "开启空调")])  # fmt: skip
    with engine.connect() as conn:
        [(action, by)] = conn.execute(sa.select(alerts.c.action, alerts.c.acked_by)).all()
        got = sheet.load(conn, "county", "no2", 2026, 10, ZONE, LIMITS)
        stored = [
            (utc(r.occurred_at).astimezone(ZONE), r.sensor, r.temperature_c, r.humidity_pct)
            for r in conn.execute(sa.select(climate_records))
        ]
        next_month = sheet.acknowledgements(conn, "county", "no2", month_end,
                                            local(1, 0, month=12))  # fmt: skip
        other_room = sheet.acknowledgements(conn, "county", "no1", local(1, 0), month_end)
    assert next_month == other_room == []
    assert (action, by) == ("开启空调", "王站长")
    [check] = [c for d in got.days for c in d.checks if c.actions]
    assert check.due == local(10, 8)
    assert [(a.at, a.by, a.action) for a in check.actions] == [
        (local(10, 13, 10), "李保管", "开启除湿机"),
        (local(10, 14, 20), "王站长", "开启空调"),
    ]
    assert check.after is not None
    assert (check.after.temperature_c, check.after.humidity_pct) == expected_reading(
        stored, local(10, 14, 50)
    )
    [row] = [r for r in sheet.rows(got, "zh")[1] if r[5] != "-"]
    assert row[5] == "开启除湿机；开启空调"
    assert row[8] == "李保管、王站长"


def test_the_sheet_as_staff_print_it_and_as_csv(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "server.db"}"\n'
                      '[climate]\ncheck_times = ["09:00", "15:00"]\n')  # fmt: skip
    assert cli(config, "db", "upgrade").returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    fill_month(engine)
    engine.dispose()
    printed = ok(config, "climate", "sheet", "county", "no2", "--month", "2026-10")
    assert "库房温湿度记录表　county no2　2026年10月（Asia/Shanghai）" in printed
    assert "适宜温度 10–30 °C，相对湿度 35–75 %RH" in printed
    assert "开启空调" in printed
    assert "李保管" in printed
    assert "10-10 12:07 至 10-10 16:07，历时 4h00m" in printed
    assert "本月平均动力学温度（MKT）：" in printed
    assert "审核人" in printed
    assert "2026-10-20" in printed
    english = ok(config, "climate", "sheet", "county", "no2", "--month", "2026-10", "--lang", "en")
    assert "Mean kinetic temperature" in english
    out = tmp_path / "sheet.csv"
    said = ok(config, "climate", "sheet", "county", "no2", "--month", "2026-10", "--out", str(out))
    assert str(out) in said
    rows = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0][:4] == ["日期", "时间", "温度°C", "湿度%RH"]
    assert len(rows) == 1 + 31 * 2
    assert [r[1] for r in rows[1:3]] == ["09:00", "15:00"]
    assert refused(config, "climate", "sheet", "county", "no2", "--month", "2026-13") == (
        "月份 2026-13 无效：写作 2026-10"
    )
    assert "no9" in refused(config, "climate", "sheet", "county", "no9", "--month", "2026-10")


def test_check_times_that_cannot_be_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[climate]\ncheck_times = ["08:00", "8:00"]\n')
    done = cli(config, "check")
    assert done.returncode == 2
    assert "climate.check_times" in done.stderr
