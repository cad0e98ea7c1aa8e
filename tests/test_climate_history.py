"""Climate history: mean kinetic temperature by hand and through the store, downsampled series
on SQLite and PostgreSQL, summaries folded in, and ``edge-server climate series|mkt|export``."""

from __future__ import annotations

import csv
import itertools
import json
import math
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.climate import history
from server.climate.history import BUCKETS_S, choose_bucket
from server.climate.kinetic import MAX_WEIGHT_S, mkt_c, record_weights, summary_weight
from server.clisupport import parse_when
from server.ingest.core import Ingestor
from server.store.db import alembic_config, make_engine, migrate
from server.store.schema import climate_records, climate_summaries
from tests.support import BIN
from tests.test_ingest import EPOCH, NOW, TOPIC, summary_event
from tests.test_wire import climate_event

SHANGHAI = ZoneInfo("Asia/Shanghai")
BASE = datetime(2026, 1, 1, tzinfo=UTC)
#: The domain notes' example: twelve monthly means averaging 24.00 °C, MKT 24.48 °C.
MONTHLY = [20.0, 22.0, 24.0, 25.0, 26.0, 28.0, 30.0, 25.0, 23.0, 21.0, 20.0, 24.0]


# --- the formula, by hand ----------------------------------------------------------------------


def test_the_twelve_month_example_of_the_domain_notes() -> None:
    assert sum(MONTHLY) / 12 == 24.0
    assert round(mkt_c(MONTHLY), 2) == 24.48


def test_two_temperatures_worked_by_hand() -> None:
    # e^(−10000/293.15) = 1.5320e-15 and e^(−10000/303.15) = 4.7200e-15; their mean 3.1260e-15,
    # −ln of it 33.399, 10000 / 33.399 = 299.41 K = 26.26 °C: 1.26 °C above the mean of 25.
    assert mkt_c([20.0, 30.0]) == pytest.approx(26.26, abs=0.005)
    # ΔH/R 5,000 K: e^(−5000/T) 3.9140e-8 and 6.8702e-8, mean 5.3921e-8, −ln 16.736,
    # 5000 / 16.736 = 298.76 K = 25.61 °C: nearer the mean.
    assert mkt_c([20.0, 30.0], delta_h_over_r_k=5000) == pytest.approx(25.61, abs=0.005)


def test_a_constant_temperature_is_its_own_mkt() -> None:
    for value in (-25.0, 0.0, 2.0, 25.0, 60.0):
        assert mkt_c([value] * 7) == pytest.approx(value, abs=1e-9)
        assert mkt_c([value, value], [10.0, 3.0], 14000) == pytest.approx(value, abs=1e-9)


def test_a_larger_delta_h_over_r_weighs_heat_more() -> None:
    found = [mkt_c(MONTHLY, delta_h_over_r_k=a) for a in (2000, 5000, 10000, 15000, 30000)]
    assert found == sorted(found)
    assert found[0] > 24.0
    assert found[2] == pytest.approx(24.48, abs=0.005)


def test_records_weigh_the_time_they_stand_for() -> None:
    # Three hours at 20 °C and one at 30 °C: as four hourly readings, not as two.
    assert mkt_c([20.0, 30.0], [3 * 3600, 3600]) == pytest.approx(mkt_c([20.0, 20.0, 20.0, 30.0]))
    assert mkt_c([20.0, 30.0], [3, 1]) < mkt_c([20.0, 30.0])


def test_weights_are_capped_so_a_gap_is_not_over_weighted() -> None:
    times = [BASE, BASE + timedelta(minutes=15), BASE + timedelta(hours=10)]
    end = BASE + timedelta(hours=10, minutes=5)
    assert record_weights(times, end) == [900.0, 1800.0, 300.0]
    assert record_weights(times, end, cap_s=600) == [600.0, 600.0, 300.0]


def test_a_summary_weighs_its_records() -> None:
    assert summary_weight(60, 59 * 60) == pytest.approx(3600.0)  # one a minute for an hour
    assert summary_weight(4, 24 * 3600) == 4 * 1800  # four records over a day: capped
    assert summary_weight(1, 0) == 1800


@pytest.mark.parametrize(
    "bad", [dict(temperatures_c=[]), dict(temperatures_c=[1.0], weights=[0.0])]
)
def test_nothing_to_average_is_an_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"no temperatures|weights"):
        mkt_c(**bad)


temperatures = st.floats(-25, 60, allow_nan=False)


@given(st.lists(st.tuples(temperatures, st.floats(1, 3600)), min_size=1, max_size=50))
def test_mkt_lies_between_the_weighted_mean_and_the_maximum(
    pairs: list[tuple[float, float]],
) -> None:
    temps, weights = [t for t, _ in pairs], [w for _, w in pairs]
    found = mkt_c(temps, weights)
    mean = sum(t * w for t, w in pairs) / sum(weights)
    assert mean - 1e-9 <= found <= max(temps) + 1e-9


@given(st.lists(temperatures, min_size=1, max_size=30), st.floats(1000, 30000))
def test_mkt_is_at_least_the_mean_for_any_delta_h(temps: list[float], a: float) -> None:
    assert sum(temps) / len(temps) - 1e-9 <= mkt_c(temps, delta_h_over_r_k=a) <= max(temps) + 1e-9


# --- buckets and times -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "bucket"),
    [(0.5, None), (2, None), (3, 900), (10, 900), (30, 3600), (90, 21600), (365, 86400),
     (5 * 365, 604800), (20 * 365, 604800)],
)  # fmt: skip
def test_longer_windows_get_larger_buckets(days: float, bucket: int | None) -> None:
    assert choose_bucket(BASE, BASE + timedelta(days=days)) == bucket


def test_buckets_start_on_local_midnights_and_mondays() -> None:
    at = datetime(2026, 3, 11, 15, 30, tzinfo=UTC)  # 23:30 on Wednesday 11 March in Shanghai
    for size, local_start in [
        (86400, datetime(2026, 3, 11, tzinfo=SHANGHAI)),
        (7 * 86400, datetime(2026, 3, 9, tzinfo=SHANGHAI)),
        (6 * 3600, datetime(2026, 3, 11, 18, tzinfo=SHANGHAI)),
        (900, datetime(2026, 3, 11, 23, 30, tzinfo=SHANGHAI)),
    ]:
        shift = history.bucket_shift_s(size, SHANGHAI, at)
        index = (int(at.timestamp()) + shift) // size
        assert history.bucket_start(index, size, shift) == local_start


@pytest.mark.parametrize(
    ("text", "end", "local"),
    [
        ("2026-01-31", False, datetime(2026, 1, 31)),
        ("2026-01-31", True, datetime(2026, 2, 1)),
        ("2026-1-5 8:05", True, datetime(2026, 1, 5, 8, 5)),
        ("2026-01-31T08:00:30", False, datetime(2026, 1, 31, 8, 0, 30)),
        ("2026-02", False, datetime(2026, 2, 1)),
        ("2026-12", True, datetime(2027, 1, 1)),
    ],
)
def test_times_are_read_in_the_zone(text: str, end: bool, local: datetime) -> None:
    assert parse_when(text, SHANGHAI, end) == local.replace(tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    "bad", ["", "yesterday", "2026-13-01", "2026-02-30", "26-01-01", "2026-01-01 25:00"]
)
def test_what_is_not_a_time_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r".*"):
        parse_when(bad, SHANGHAI)


# --- through the store -------------------------------------------------------------------------


class Store:
    """Rows of the climate projection, written as ingest writes them."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.seq = itertools.count(1)

    def records(self, *rows: tuple[Any, ...], room: str = "no1", site: str = "county") -> None:
        """``(sensor, at, temperature[, humidity[, raw temperature]])`` each."""
        values = []
        for sensor, at, temp, *rest in rows:
            hum = rest[0] if rest else 55.0
            values.append(
                dict(
                    agent_id="station-1", epoch=EPOCH, seq=next(self.seq), site_id=site,
                    storeroom=room, sensor=sensor, temperature_c=temp, humidity_pct=hum,
                    raw_temperature_c=rest[1] if len(rest) > 1 else temp - 0.5,
                    raw_humidity_pct=hum + 1, quality="", occurred_at=at, clock_synced=True,
                    time_corrected=False,
                )
            )  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(climate_records.insert(), values)

    def summary(
        self,
        sensor: str,
        first: datetime,
        last: datetime,
        count: int,
        t: tuple[float, float, float],
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                climate_summaries.insert().values(
                    agent_id="station-1", epoch=EPOCH, seq=next(self.seq), site_id="county",
                    storeroom="no1", sensor=sensor, count=count, first_at=first, last_at=last,
                    temperature_min_c=t[0], temperature_mean_c=t[1], temperature_max_c=t[2],
                    humidity_min_pct=50, humidity_mean_pct=51, humidity_max_pct=52,
                    clock_synced=True, time_corrected=False,
                )
            )  # fmt: skip

    def clear(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(climate_records.delete())
            conn.execute(climate_summaries.delete())


def test_the_twelve_months_through_the_store(engine: sa.Engine) -> None:
    store = Store(engine)
    store.records(
        *(
            ("no1-a", datetime(2026, m, 15, 4, tzinfo=UTC), t)
            for m, t in zip(range(1, 13), MONTHLY, strict=True)
        )
    )
    store.records(("no1-a", datetime(2026, 6, 1, tzinfo=UTC), 40.0), room="no2")
    found = history.mkt(engine, "county", "no1", BASE, datetime(2027, 1, 1, tzinfo=UTC))
    assert found is not None
    # Months apart, every record weighs the cap alike: the domain notes' unweighted example.
    assert round(found.mkt_c, 2) == 24.48
    assert found.mean_c == pytest.approx(24.0)
    assert (found.min_c, found.max_c, found.records, found.summarised) == (20.0, 30.0, 12, 0)
    assert found.weight_s == 12 * MAX_WEIGHT_S
    steeper = history.mkt(
        engine, "county", "no1", BASE, datetime(2027, 1, 1, tzinfo=UTC), delta_h_over_r_k=20000
    )
    assert steeper is not None
    assert steeper.mkt_c > found.mkt_c
    assert history.mkt(engine, "county", "no1", BASE, BASE + timedelta(days=10)) is None
    assert history.mkt(engine, "county", "no3", BASE, datetime(2027, 1, 1, tzinfo=UTC)) is None


def test_mkt_weighs_each_sensor_by_time_and_counts_summaries(engine: sa.Engine) -> None:
    store = Store(engine)
    minutes = [0, 15, 30, 45, 200]  # a gap after 45: that record weighs the cap, 30 min
    store.records(
        *(("no1-a", BASE + timedelta(minutes=m), 20.0 + i) for i, m in enumerate(minutes))
    )
    store.records(
        ("no1-b", BASE + timedelta(minutes=5), 25.0), ("no1-b", BASE + timedelta(minutes=25), 26.0)
    )
    first = BASE + timedelta(hours=5)
    store.summary("no1-a", first, first + timedelta(minutes=59), 60, (20.0, 22.0, 29.0))
    end = BASE + timedelta(hours=6)
    found = history.mkt(engine, "county", "no1", BASE, end)
    assert found is not None
    temps = [20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 22.0]
    weights = [900, 900, 900, 1800, 1800, 1200, 1800, 3600]  # b's last: until the window's end
    assert found.mkt_c == pytest.approx(mkt_c(temps, weights), abs=1e-6)
    assert found.mean_c == pytest.approx(
        sum(t * w for t, w in zip(temps, weights, strict=True)) / sum(weights)
    )
    assert (found.min_c, found.max_c) == (20.0, 29.0), "the summary's own extremes"
    assert (found.records, found.summarised) == (67, 60)


def test_a_series_of_a_short_window_is_every_record(engine: sa.Engine) -> None:
    store = Store(engine)
    store.records(
        ("no1-b", BASE + timedelta(minutes=10), 21.0, 60.0, 20.0),
        ("no1-a", BASE + timedelta(minutes=10), 22.0, 61.0, 21.5),
        ("no1-a", BASE + timedelta(hours=30), 23.0),
        ("no1-a", BASE + timedelta(days=3), 99.0),  # after the window
    )
    store.records(("no1-a", BASE, 50.0), room="no2")
    store.summary("no1-a", BASE + timedelta(hours=2), BASE + timedelta(hours=3), 12, (18, 19, 20))
    end = BASE + timedelta(days=2)
    found = history.series(engine, "county", "no1", BASE, end)
    assert found.bucket_s is None
    assert [(p.sensor, p.at, p.temperature_mean_c, p.records) for p in found.points] == [
        ("no1-a", BASE + timedelta(minutes=10), 22.0, 1),
        ("no1-b", BASE + timedelta(minutes=10), 21.0, 1),
        ("no1-a", BASE + timedelta(hours=2), 19.0, 12),
        ("no1-a", BASE + timedelta(hours=30), 23.0, 1),
    ]
    assert (found.points[2].summarised, found.points[2].temperature_max_c) == (12, 20.0)
    raw = history.series(engine, "county", "no1", BASE, end, values="raw")
    assert [p.temperature_mean_c for p in raw.points] == [21.5, 20.0, 22.5]
    assert raw.records == 3, "summaries hold no raw values"


def test_a_short_window_recorded_densely_is_bucketed(engine: sa.Engine) -> None:
    """Out of range a room is recorded every 2 min: a day of two sensors is 1440 records."""
    Store(engine).records(
        *((f"no1-{s}", BASE + timedelta(minutes=2 * i), 31.0) for i in range(720) for s in "ab")
    )
    found = history.series(engine, "county", "no1", BASE, BASE + timedelta(days=1))
    assert (found.bucket_s, len(found.points), found.records) == (900, 96, 1440)
    raw = history.series(engine, "county", "no1", BASE, BASE + timedelta(days=1), bucket="raw")
    assert len(raw.points) == 1440, "unless every record is asked for"


def test_a_series_is_bucketed_in_sql_with_summaries_folded_in(engine: sa.Engine) -> None:
    store = Store(engine)
    # 23:00 local on 1 January to 01:00 on 3 January: three local days (the zone's midnights).
    start = datetime(2026, 1, 1, 15, tzinfo=UTC)
    store.records(
        ("no1-a", start, 10.0, 40.0),  # 23:00 local, 1 Jan
        ("no1-a", start + timedelta(hours=1), 20.0, 50.0),  # 00:00 local, 2 Jan
        ("no1-b", start + timedelta(hours=2), 30.0, 60.0),
        ("no1-a", start + timedelta(hours=26), 25.0, 70.0),  # 01:00 local, 3 Jan
    )
    store.summary("no1-a", start + timedelta(hours=3), start + timedelta(hours=4), 4, (14, 15, 16))
    end = start + timedelta(days=3)
    found = history.series(engine, "county", "no1", start, end, bucket=86400, zone=SHANGHAI)
    assert found.bucket_s == 86400
    days = [p.at.astimezone(SHANGHAI).date().isoformat() for p in found.points]
    assert days == ["2026-01-01", "2026-01-02", "2026-01-03"]
    jan2 = found.points[1]
    assert (jan2.records, jan2.summarised) == (6, 4)
    assert jan2.temperature_mean_c == pytest.approx((20 + 30 + 4 * 15) / 6)
    assert (jan2.temperature_min_c, jan2.temperature_max_c) == (14.0, 30.0)
    assert (jan2.humidity_min_pct, jan2.humidity_max_pct) == (50.0, 60.0)
    assert jan2.humidity_mean_pct == pytest.approx((50 + 60 + 4 * 51) / 6)
    assert found.records == 8
    auto = history.series(engine, "county", "no1", start, end, zone=SHANGHAI)
    assert (auto.bucket_s, auto.records) == (900, 8)


points = st.lists(
    st.tuples(
        st.sampled_from(["no1-a", "no1-b"]),
        st.one_of(  # seconds into the window; often on, or a second off, a 15-minute boundary
            st.integers(0, 4 * 86400 - 1),
            st.integers(1, 4 * 96 - 1).flatmap(
                lambda k: st.sampled_from([k * 900 + d for d in (-1, 0, 1)])
            ),
        ),
        st.integers(-250, 600).map(lambda v: v / 10),
        st.integers(0, 1000).map(lambda v: v / 10),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda p: (p[0], p[1]),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(points, st.sampled_from(["auto", "raw", *BUCKETS_S]))
def test_any_series_and_mkt_agree_with_their_records(
    engine: sa.Engine, rows: list[tuple[str, int, float, float]], bucket: history.Bucket
) -> None:
    store = Store(engine)
    store.clear()
    store.records(*((s, BASE + timedelta(seconds=x), t, h) for s, x, t, h in rows))
    end = BASE + timedelta(days=4)
    found = history.series(engine, "county", "no1", BASE, end, bucket=bucket, zone=SHANGHAI)
    assert found.records == len(rows), "every record in exactly one point"
    if found.bucket_s is not None:
        size = found.bucket_s
        shift = history.bucket_shift_s(size, SHANGHAI, BASE)
        counts = Counter(
            history.bucket_start(
                (int((BASE + timedelta(seconds=x)).timestamp()) + shift) // size, size, shift
            )
            for _, x, _, _ in rows
        )
        assert {p.at: p.records for p in found.points} == counts, "each in its own bucket"
    for p in found.points:
        assert p.temperature_min_c - 1e-9 <= p.temperature_mean_c <= p.temperature_max_c + 1e-9
        assert p.humidity_min_pct - 1e-9 <= p.humidity_mean_pct <= p.humidity_max_pct + 1e-9
    assert [p.at for p in found.points] == sorted(p.at for p in found.points)
    result = history.mkt(engine, "county", "no1", BASE, end)
    assert result is not None
    temps, weights = [], []
    for sensor in ("no1-a", "no1-b"):
        mine = sorted((x, t) for s, x, t, _ in rows if s == sensor)
        temps += [t for _, t in mine]
        weights += record_weights([BASE + timedelta(seconds=x) for x, _ in mine], end)
    assert result.mkt_c == pytest.approx(mkt_c(temps, weights), abs=1e-4)  # SQLite: times to 0.1 ms
    assert result.mean_c - 1e-9 <= result.mkt_c <= result.max_c + 1e-9
    assert result.records == len(rows)


def test_summaries_from_ingest_count_in_series_and_mkt(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    events = [
        climate_event(1, occurred_at="2026-11-22T23:30:00+00:00"),
        summary_event(2, 60),  # 00:00 to 00:59 on 23 November, mean 21.0
        climate_event(62, occurred_at="2026-11-23T01:00:00+00:00"),
    ]
    body = {
        "v": 1,
        "agent_id": "station-1",
        "epoch": EPOCH,
        "sent_at": NOW.isoformat(),
        "events": events,
    }
    assert ingest.handle(TOPIC, json.dumps(body).encode(), NOW).acked_seq == 62
    start = datetime(2026, 11, 22, tzinfo=UTC)
    end = start + timedelta(days=2)
    found = history.series(engine, "county", "no1", start, end, bucket=3600)
    assert [(p.records, p.summarised) for p in found.points] == [(1, 0), (60, 60), (1, 0)]
    result = history.mkt(engine, "county", "no1", start, end)
    assert result is not None
    assert (result.records, result.summarised) == (62, 60)
    assert (result.min_c, result.max_c) == (20.0, 22.0)


def test_series_and_mkt_read_the_storeroom_index(tmp_path: Path) -> None:
    """On SQLite the plans use the storeroom index, never a scan of the whole table."""
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    migrate(engine)
    Store(engine).records(("no1-a", BASE, 20.0))
    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", keep)
    history.series(engine, "county", "no1", BASE, BASE + timedelta(days=30))
    history.series(engine, "county", "no1", BASE, BASE + timedelta(days=1))
    history.mkt(engine, "county", "no1", BASE, BASE + timedelta(days=365))
    sa.event.remove(engine, "before_cursor_execute", keep)
    queries = [(q, p) for q, p in seen if "FROM climate_" in q and "exp(0)" not in q]
    assert len(queries) >= 4
    with engine.connect() as conn:
        for query, params in queries:
            plan = [r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}", params)]
            scans = [line for line in plan if "climate_" in line and "USING" not in line]
            assert not scans, (query, plan)
            assert any("room_time" in line for line in plan), plan


def test_migration_0006_adds_and_removes_the_indexes(blank_engine: sa.Engine) -> None:
    cfg = alembic_config(blank_engine)

    def indexes() -> set[str]:
        inspect = sa.inspect(blank_engine)
        names = {
            i["name"]
            for t in ("climate_records", "climate_summaries")
            for i in inspect.get_indexes(t)
        }
        return {n for n in names if n and n.endswith("room_time")}

    command.upgrade(cfg, "0006")
    assert indexes() == {"ix_climate_records_room_time", "ix_climate_summaries_room_time"}
    command.downgrade(cfg, "0005")
    assert indexes() == set()
    command.upgrade(cfg, "0006")
    assert len(indexes()) == 2


# --- edge-server climate series|mkt|export ----------------------------------------------------


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "edge-server"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def county(tmp_path: Path) -> Path:
    """A server configuration whose store holds a year of monthly records in no1 and a day of
    records in no2, with a summary."""
    db = tmp_path / "data" / "server.db"
    path = tmp_path / "server.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    store = Store(engine)
    store.records(
        *(
            ("no1-a", datetime(2026, m, 15, 4, tzinfo=UTC), t)
            for m, t in zip(range(1, 13), MONTHLY, strict=True)
        )
    )
    day = datetime(2026, 3, 1, tzinfo=UTC)
    store.records(
        ("no2-a", day, 18.25, 45.5, 18.0), ("no2-a", day + timedelta(minutes=30), 19.0, 46.0, 18.5),
        room="no2",
    )  # fmt: skip
    store.summary("no1-a", day, day + timedelta(minutes=59), 60, (20.0, 21.0, 22.0))
    engine.dispose()
    return path


def test_mkt_command_prints_mkt_mean_range_and_count(county: Path) -> None:
    out = cli(county, "climate", "mkt", "county", "no1", "--from", "2026-01", "--to", "2026-12")
    assert out.returncode == 0, out.stderr
    assert "county / no1：2026-01-01 00:00 至 2027-01-01 00:00（Asia/Shanghai）" in out.stdout
    assert "平均动力学温度（MKT）：" in out.stdout
    assert "ΔH/R = 10000 K" in out.stdout
    assert "记录数：72" in out.stdout
    assert "其中 60 条记录由终端汇总" in out.stdout
    en = cli(
        county,
        "climate",
        "mkt",
        "county",
        "no1",
        "--from",
        "2026-04",
        "--to",
        "2026-12",
        "--lang",
        "en",
    )
    assert en.returncode == 0, en.stderr
    lines = en.stdout.splitlines()
    # April to December alone: nine monthly records, each weighing the cap alike.
    expected = mkt_c(MONTHLY[3:])
    assert f"mean kinetic temperature (MKT): {expected:.2f} °C (ΔH/R = 10000 K)" in lines
    assert f"mean temperature: {sum(MONTHLY[3:]) / 9:.2f} °C" in lines
    assert "min / max: 20.0 / 30.0 °C" in lines
    assert "records: 9" in lines


def test_the_configured_delta_h_over_r_is_used(county: Path) -> None:
    county.write_text(county.read_text() + "[climate]\nmkt_delta_h_over_r_k = 20000\n")
    out = cli(
        county,
        "climate",
        "mkt",
        "county",
        "no1",
        "--from",
        "2026-04",
        "--to",
        "2026-12",
        "--lang",
        "en",
    )
    assert out.returncode == 0, out.stderr
    assert (
        f"(MKT): {mkt_c(MONTHLY[3:], delta_h_over_r_k=20000):.2f} °C (ΔH/R = 20000 K)" in out.stdout
    )


@pytest.mark.parametrize("value", ["10", "40000", '"x"'])
def test_a_delta_h_over_r_out_of_bounds_is_a_config_error(county: Path, value: str) -> None:
    county.write_text(county.read_text() + f"[climate]\nmkt_delta_h_over_r_k = {value}\n")
    out = cli(county, "check")
    assert out.returncode == 2
    assert "climate.mkt_delta_h_over_r_k" in out.stderr
    assert "Traceback" not in out.stderr


def test_series_command_prints_the_downsampled_table(county: Path) -> None:
    out = cli(county, "climate", "series", "county", "no1", "--from", "2026-01", "--to", "2026-12")
    assert out.returncode == 0, out.stderr
    assert "每 1 天一个点，共 13 个点、72 条记录" in out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("2026-")]
    assert rows[0] == ["2026-01-15", "1", "20.0", "20.0", "20.0", "55.0", "55.0", "55.0"]
    assert ["2026-03-01", "60", "20.0", "21.0", "22.0", "50.0", "51.0", "52.0"] in rows
    assert len(rows) == 13
    raw = cli(
        county,
        "climate",
        "series",
        "county",
        "no2",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-01",
        "--raw",
        "--lang",
        "en",
    )
    assert raw.returncode == 0, raw.stderr
    assert "every record, 2 in all" in raw.stdout
    assert "Transmitters' own values" in raw.stdout
    rows = [line.split() for line in raw.stdout.splitlines() if line.startswith("2026-")]
    assert rows == [
        ["2026-03-01", "08:00:00", "no2-a", "18.0", "46.5"],
        ["2026-03-01", "08:30:00", "no2-a", "18.5", "47.0"],
    ]
    weekly = cli(
        county,
        "climate",
        "series",
        "county",
        "no1",
        "--from",
        "2026-01",
        "--to",
        "2026-12",
        "--bucket",
        "7d",
        "--lang",
        "en",
    )
    assert weekly.returncode == 0, weekly.stderr
    assert "one point per 7 days" in weekly.stdout


def test_export_writes_every_record_for_excel(county: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "记录.csv"
    out = cli(
        county,
        "climate",
        "export",
        "county",
        "--from",
        "2026-01",
        "--to",
        "2026-12",
        "--out",
        str(out_file),
    )
    assert out.returncode == 0, out.stderr
    assert "已导出 14 条记录和 1 条汇总" in out.stdout
    data = out_file.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "a byte-order mark, for Excel"
    rows = list(csv.reader(data.decode("utf-8-sig").splitlines()))
    assert rows[0][:8] == [
        "类型",
        "站点",
        "库房",
        "传感器",
        "传感器编号",
        "时间（UTC）",
        "时间（Asia/Shanghai）",
        "汇总至（Asia/Shanghai）",
    ]
    assert len(rows) == 1 + 12 + 1 + 2
    by_room = [r[2] for r in rows[1:]]
    assert by_room == sorted(by_room), "storeroom by storeroom, in time order"
    summary = next(r for r in rows if r[0] == "汇总")
    assert summary[5:10] == [
        "2026-03-01 00:00:00",
        "2026-03-01 08:00:00",
        "2026-03-01 08:59:00",
        "60",
        "21",
    ]
    no2 = [r for r in rows if r[2] == "no2"]
    assert no2[0][5:13] == [
        "2026-03-01 00:00:00",
        "2026-03-01 08:00:00",
        "",
        "1",
        "18.25",
        "45.5",
        "18",
        "46.5",
    ]
    one = tmp_path / "no2.csv"
    en = cli(
        county,
        "climate",
        "export",
        "county",
        "no2",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-01",
        "--out",
        str(one),
        "--lang",
        "en",
    )
    assert en.returncode == 0, en.stderr
    assert "2 records and 0 summaries" in en.stdout
    assert (
        one.read_text(encoding="utf-8-sig").splitlines()[0].startswith("kind,site,storeroom,sensor")
    )
    assert not list(tmp_path.glob(".*.partial"))


EMPTY_2025 = "county / no1 在 2025-01-01 00:00 至 2026-01-01 00:00（Asia/Shanghai）之间没有记录"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("series", "county", "no1", "--from", "yesterday"), "--from：无法识别的时间“yesterday”"),
        (("mkt", "county", "no1", "--to", "2026-02-30"), "--to：无法识别的时间"),
        (
            ("mkt", "county", "no1", "--from", "2026-05", "--to", "2026-04", "--lang", "en"),
            "--from must be before --to",
        ),
        (("series", "county", "no1", "--bucket", "5m"), "--bucket 应为 auto"),
        (("mkt", "nowhere", "no1"), "没有站点 nowhere 的数据"),
        (
            ("series", "county", "no9", "--lang", "en"),
            "site county has no storeroom no9 (it has: no1, no2)",
        ),
        (
            ("export", "county", "no9", "--out", "x.csv"),
            "站点 county 没有库房 no9（已有：no1、no2）",
        ),
        (("mkt", "county", "no1", "--from", "2025-01", "--to", "2025-12"), EMPTY_2025),
        (
            ("series", "county", "no2", "--from", "2026-04-01", "--to", "2026-06", "--lang", "en"),
            "county / no2: no records between",
        ),
    ],
)
def test_bad_input_gets_one_clear_line(county: Path, args: tuple[str, ...], message: str) -> None:
    out = cli(county, "climate", *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize("where", ["missing/dir/out.csv", "."])
def test_an_unwritable_export_gets_one_line_and_leaves_nothing(
    county: Path, tmp_path: Path, where: str
) -> None:
    target = tmp_path / where
    out = cli(
        county,
        "climate",
        "export",
        "county",
        "--from",
        "2026-01",
        "--to",
        "2026-12",
        "--out",
        str(target),
        "--lang",
        "en",
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == f"cannot write {target}"
    assert not list(tmp_path.rglob("*.partial"))


def test_an_empty_export_writes_no_file(county: Path, tmp_path: Path) -> None:
    target = tmp_path / "empty.csv"
    target.write_text("kept")
    out = cli(
        county,
        "climate",
        "export",
        "county",
        "--from",
        "2020-01",
        "--to",
        "2020-12",
        "--out",
        str(target),
    )
    assert out.returncode == 2
    assert "之间没有记录" in out.stderr
    assert target.read_text() == "kept", "an existing file is left as it was"


def test_history_commands_never_create_a_database(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "data" / "server.db"}"\n')
    out = cli(path, "climate", "mkt", "county", "no1")
    assert out.returncode == 1
    assert "does not exist" in out.stderr
    assert not (tmp_path / "data").exists()


def test_the_extremes_of_the_wire_are_within_reach() -> None:
    """A record at −25 °C and one at 60 °C are within the formula's reach."""
    assert math.isfinite(mkt_c([-25.0, 60.0]))
