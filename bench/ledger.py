"""Ledger and climate history benchmark: queries over a county's years of records.

Run from the repository root with the project installed::

    python bench/ledger.py [--sites 50] [--years 5]

Each group of figures is one function called from ``main()``; add new ones the same way.

Climate history (``climate_figures``): a SQLite store made with the real schema
(``server.store.db.migrate``) is filled with a county's history: ``--sites`` sites of three
storerooms, one record every 10 to 15 minutes (drawn at random) for ``--years`` years, written
in SQL (a recursive CTE per storeroom, synchronous off) because Python tuples would take longer
than the whole budget. Rows carry what the queries read (site, storeroom, sensor, corrected and
raw values, quality, time); the re-dating columns are left empty and clocks synced.

Figures (``figure: NAME VALUE UNIT``):

- ``climate_rows``: records in the store.
- ``climate_build_s``: the time it took to write them (with every index of the schema).
- ``climate_series_ms``: a 30-day series of one storeroom (hourly points, min/mean/max in
  SQL), the median of 20 storerooms and windows picked at random; ``climate_series_max_ms``
  the slowest of them.
- ``climate_series_5y_ms``: a five-year series of one storeroom (weekly points).
- ``mkt_year_ms``: a year's mean kinetic temperature of one storeroom, the median of 10.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from server.climate import history
from server.store.db import make_engine, migrate

ROOMS = ("no1", "no2", "no3")
END = datetime(2026, 11, 1, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Shanghai")


def figure(name: str, value: float, unit: str) -> None:
    shown = str(value) if isinstance(value, int) else f"{value:.4g}"
    print(f"figure: {name} {shown} {unit}", flush=True)


def timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


# --- climate history ---------------------------------------------------------------------------

#: One storeroom's years of record times and values, made once per storeroom number and reused
#: by every site with its own offsets (the same instants at every site: harmless to the queries).
_TEMPLATE = """
INSERT INTO bench_times
WITH RECURSIVE s(i, t) AS (
    SELECT 0, :start UNION ALL
    SELECT i + 1, t + 600 + abs(random()) % 301 FROM s WHERE t < :end - 900
)
SELECT i, strftime('%Y-%m-%d %H:%M:%S', t, 'unixepoch') || '.000000',
    round(6 * sin(t * 1.99e-7) + 2 * sin(t * 7.27e-5) + (abs(random()) % 100) / 100.0, 2),
    round(55 + 10 * sin(t * 1.99e-7 + 1) + (abs(random()) % 100) / 20.0, 1)
FROM s
"""
_FILL = """
INSERT INTO climate_records (agent_id, epoch, seq, site_id, storeroom, sensor, serial,
    temperature_c, humidity_pct, raw_temperature_c, raw_humidity_pct, quality, occurred_at,
    clock_synced, time_corrected)
SELECT :agent, 'e0e0e0e0', :base + i, :site, :room, :sensor, :serial, t + :offset, h,
    t + :offset - 0.3, h + 1.5, '', at, 1, 0
FROM bench_times WHERE room = :room ORDER BY room, i
"""


def build_climate_store(path: Path, sites: int, years: int) -> int:
    """A store of the real schema holding ``years`` of records of ``sites`` sites."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 16384")  # before the first table; nothing else differs
    db.close()
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    start = int((END - timedelta(days=round(365.25 * years))).timestamp())
    end = int(END.timestamp())
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000"):
        db.execute(f"PRAGMA {pragma}")
    db.execute("PRAGMA temp_store = MEMORY")
    db.execute(
        "CREATE TEMP TABLE bench_times (room TEXT, i INTEGER, at TEXT, t REAL, h REAL, "
        "PRIMARY KEY (room, i))"
    )
    for room in ROOMS:
        db.execute(
            _TEMPLATE.replace("SELECT i, strftime", f"SELECT '{room}', i, strftime"),
            {"start": start, "end": end},
        )
    rows = 0
    db.execute("BEGIN")
    for s in range(sites):
        for n, room in enumerate(ROOMS):
            cursor = db.execute(
                _FILL,
                {
                    "agent": f"station-{s:02d}", "base": n * 1_000_000, "site": f"site-{s:02d}",
                    "room": room, "sensor": f"{room}-a", "serial": f"SN{s:02d}{n}",
                    "offset": 16 + n + (s % 7) / 2,
                },
            )  # fmt: skip
            rows += cursor.rowcount
    db.execute("COMMIT")
    db.execute("DROP TABLE bench_times")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    return rows


def climate_figures(work: Path, sites: int, years: int) -> None:
    path = work / "climate.db"
    started = time.perf_counter()
    rows = build_climate_store(path, sites, years)
    figure("climate_rows", rows, "rows")
    figure("climate_build_s", time.perf_counter() - started, "s")
    engine = make_engine(f"sqlite:///{path}", create=False)
    picks = random.Random(11)

    def somewhere(days: int) -> tuple[str, str, datetime, datetime]:
        site = f"site-{picks.randrange(sites):02d}"
        end = END - timedelta(hours=picks.randrange(24 * 365))
        return site, picks.choice(ROOMS), end - timedelta(days=days), end

    def series(days: int) -> Callable[[], object]:
        site, room, start, end = somewhere(days)

        def run() -> object:
            found = history.series(engine, site, room, start, end, zone=ZONE)
            assert found.points, (site, room, start, end)
            return found

        return run

    def mkt_year() -> Callable[[], object]:
        site, room, start, end = somewhere(365)
        return lambda: history.mkt(engine, site, room, start, end)

    timed_ms(series(30))  # the first connection
    month = [timed_ms(series(30)) for _ in range(20)]
    figure("climate_series_ms", statistics.median(month), "ms")
    figure("climate_series_max_ms", max(month), "ms")
    five_years = (END - timedelta(days=round(365.25 * years)), END)
    timed_ms(lambda: history.series(engine, "site-00", "no2", *five_years, zone=ZONE))
    figure(
        "climate_series_5y_ms",
        timed_ms(
            lambda: history.series(engine, f"site-{sites - 1:02d}", "no2", *five_years, zone=ZONE)
        ),
        "ms",
    )
    figure("mkt_year_ms", statistics.median(timed_ms(mkt_year()) for _ in range(10)), "ms")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--years", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-bench-ledger-") as tmp:
        climate_figures(Path(tmp), args.sites, args.years)


if __name__ == "__main__":
    main()
