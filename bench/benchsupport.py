"""What the benchmark scripts share: the figure line, timing, the climate history's shape and
its queries, and a private PostgreSQL with durable commits. Imported by the scripts, which run
as ``python bench/NAME.py`` (this folder is then on the import path)."""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from server.climate import history
from simulators.broker import Postgres, PostgresError

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


def span(years: int) -> tuple[datetime, datetime]:
    return END - timedelta(days=round(365.25 * years)), END


def climate_query_figures(engine: sa.Engine, sites: int, years: int, names: dict[str, str]) -> None:
    """The queries ``edge-server climate series|mkt`` run over a store of ``sites`` sites named
    ``site-00``…, printed under ``names`` (keys ``series``, ``series_max``, ``series_5y``,
    ``mkt_year``): a 30-day series of one storeroom (the median of 20 storerooms and windows
    picked at random, and the slowest), five years of one, and a year's MKT (median of 10)."""
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
    figure(names["series"], statistics.median(month), "ms")
    figure(names["series_max"], max(month), "ms")
    whole = span(years)
    timed_ms(lambda: history.series(engine, "site-00", "no2", *whole, zone=ZONE))
    last = f"site-{sites - 1:02d}"
    figure(
        names["series_5y"],
        timed_ms(lambda: history.series(engine, last, "no2", *whole, zone=ZONE)),
        "ms",
    )
    figure(names["mkt_year"], statistics.median(timed_ms(mkt_year()) for _ in range(10)), "ms")


@contextmanager
def private_postgres() -> Iterator[Postgres | None]:
    """A throw-away PostgreSQL with its default, durable settings (``fsync`` on), or ``None``
    (said on a ``#`` line) where it cannot start; removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-pg-"))  # the postgres user must reach it
    pg = Postgres(workdir, durable=True)
    try:
        pg.start()
    except PostgresError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"# PostgreSQL figures skipped: {exc}", flush=True)
        yield None
        return
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
