"""Scaling benchmark: years of a county's climate records on PostgreSQL, partitioned by month.

Run from the repository root with the project installed::

    python bench/scaling.py [--sites 16] [--years 5] [--compare]

A private PostgreSQL on loopback with its default, durable settings
(``simulators.broker.Postgres(durable=True)``, as ``bench/link.py`` starts it; where it cannot
start, the figures are skipped with a ``#`` line) gets the real schema
(``server.store.db.migrate``: migration 0008 makes ``climate_records`` a table partitioned by
month, every index with it). It is filled with ``--sites`` sites of three storerooms, one record
every 10 to 15 minutes (drawn at random, the same draw as ``bench/ledger.py``) for ``--years``
years, written in SQL (``generate_series`` and one ``INSERT … SELECT`` per month,
``synchronous_commit=off``) into the real, logged table with every index in place, in time
order across the sites, as ingest writes them: a storeroom's records of a month are spread
over the month's partition among everybody else's, not stored side by side.

The default, 16 sites (10.1 million rows), fits in five minutes on the project's 2-core
machine; ``--sites 50`` is the full county (31.5 million rows; ``docs/benchmarks.md`` says how
long it took). The queries are the ones ``edge-server climate series|mkt`` run
(``server.climate.history``), through SQLAlchemy.

Figures (``figure: NAME VALUE UNIT``):

- ``pg_climate_rows``: records in the store; ``pg_climate_partitions``: its partitions.
- ``pg_climate_load_s``: writing them; ``pg_climate_analyze_s``: ``ANALYZE`` afterwards;
  ``pg_climate_gb``: the table's size on disk with its indexes.
- ``pg_climate_series_ms``: a 30-day series of one storeroom (hourly points), the median of
  20 storerooms and windows picked at random; ``pg_climate_series_max_ms`` the slowest.
- ``pg_climate_series_5y_ms``: the whole span of one storeroom (weekly points).
- ``pg_mkt_year_ms``: a year's mean kinetic temperature of one storeroom, the median of 10.

Then the plan of a 30-day series, ``EXPLAIN (ANALYZE, BUFFERS)``, as ``#`` lines: the first
time its window is read, and again.

``--compare`` also loads the same rows into a second database left at migration 0007 (one
plain table, the same indexes), gives the same figures named ``pg_plain_…`` and its plan, and
then migrates that database to 0008: ``pg_migrate_0008_s`` is how long turning a store of that
size into the partitioned table takes.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from benchsupport import (
    END,
    ROOMS,
    ZONE,
    climate_query_figures,
    figure,
    private_postgres,
    span,
)

from server.climate import history
from server.climate.partitions import (
    FIRST_MONTH,
    add_months,
    ensure_partitions,
    month_start,
    partitions,
)
from server.store.db import alembic_config, make_engine, migrate, statements
from simulators.broker import Postgres


def note(text: str) -> None:
    for line in text.splitlines():
        print(f"# {line}".rstrip(), flush=True)


# --- filling -----------------------------------------------------------------------------------

#: One storeroom's years of record times and values, drawn once per storeroom number and
#: reused by every site with its own offsets (the same instants at every site, as in
#: ``bench/ledger.py``: harmless to the queries). Not the real table: unlogged is fine here.
_TEMPLATE = """
CREATE UNLOGGED TABLE bench_times AS
WITH steps AS (
    SELECT n, room, i, 600 + floor(random() * 301) AS step
    FROM unnest(CAST(:rooms AS text[])) WITH ORDINALITY AS r(room, n),
        generate_series(1, :count) AS i
), times AS (
    SELECT n, room, i, CAST(:start AS timestamptz)
        + make_interval(secs => sum(step) OVER (PARTITION BY room ORDER BY i)) AS at
    FROM steps
)
SELECT n, room, i, at,
    round(CAST(6 * sin(extract(epoch FROM at) * 1.99e-7)
        + 2 * sin(extract(epoch FROM at) * 7.27e-5) + random() AS numeric), 2)::float8 AS t,
    round(CAST(55 + 10 * sin(extract(epoch FROM at) * 1.99e-7 + 1) + random() * 5
        AS numeric), 1)::float8 AS h
FROM times WHERE at < :end
"""
#: A month of every site's records, in time order across the sites.
_FILL = """
INSERT INTO climate_records (agent_id, epoch, seq, site_id, storeroom, sensor, serial,
    temperature_c, humidity_pct, raw_temperature_c, raw_humidity_pct, quality, occurred_at,
    clock_synced, time_corrected)
SELECT 'station-' || lpad(s::text, 2, '0'), 'e0e0e0e0', (n - 1) * 1000000 + i,
    'site-' || lpad(s::text, 2, '0'), room, room || '-a', 'SN' || lpad(s::text, 2, '0') || n,
    t + 15 + n + (s % 7) / 2.0, h, t + 14.7 + n + (s % 7) / 2.0, h + 1.5, '', at, true, false
FROM bench_times CROSS JOIN generate_series(0, :sites - 1) AS s
WHERE at >= :start AND at < :end
ORDER BY at, s, n
"""


def fill(engine: sa.Engine, sites: int, years: int) -> int:
    """Write ``years`` of records of ``sites`` sites into ``climate_records``."""
    start, end = span(years)
    rows = 0
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(sa.text("SET synchronous_commit = off"))
        conn.execute(sa.text("SELECT setseed(0.11)"))
        conn.execute(
            sa.text(_TEMPLATE),
            {
                "rooms": list(ROOMS),
                "count": int((end - start).total_seconds() // 600) + 1,
                "start": start,
                "end": end,
            },
        )
        conn.execute(sa.text("CREATE INDEX ON bench_times (at)"))
        month = month_start(start)
        while month < end:
            after = add_months(month, 1)
            window = {"sites": sites, "start": max(month, start), "end": min(after, end)}
            rows += conn.execute(sa.text(_FILL), window).rowcount
            month = after
        conn.execute(sa.text("DROP TABLE bench_times"))
    return rows


# --- queries -----------------------------------------------------------------------------------


def plans(engine: sa.Engine, site: str, room: str, start: datetime, end: datetime) -> list[str]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of the query a 30-day series of the storeroom runs, twice:
    the first time its pages are read (from the OS's cache, not PostgreSQL's buffers), and
    again. The statement is taken from a series of another window (so this one is not read
    before), its times swapped for this window's."""
    other = (start - timedelta(days=200), end - timedelta(days=200))
    with statements(engine, "climate_records") as seen:
        history.series(engine, site, room, *other, zone=ZONE)
    [(statement, params)] = seen
    swap = {other[0]: start, other[1]: end}
    params = {k: swap.get(v, v) if isinstance(v, datetime) else v for k, v in params.items()}
    assert {start, end} <= set(params.values()), params
    shown = []
    with engine.connect() as conn:
        for _ in range(2):
            lines = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params)
            shown.append("\n".join(str(line) for (line,) in lines))
    return shown


def query_figures(engine: sa.Engine, prefix: str, sites: int, years: int) -> None:
    mkt = "pg_mkt_year_ms" if prefix == "climate_" else f"pg_{prefix}mkt_year_ms"
    climate_query_figures(
        engine,
        sites,
        years,
        {"series": f"pg_{prefix}series_ms", "series_max": f"pg_{prefix}series_max_ms",
         "series_5y": f"pg_{prefix}series_5y_ms", "mkt_year": mkt},
    )  # fmt: skip
    end = END - timedelta(days=100)
    first, again = plans(engine, "site-00", "no1", end - timedelta(days=30), end)
    note(f"EXPLAIN (ANALYZE, BUFFERS): a 30-day series of site-00 no1 to {end:%Y-%m-%d}, first")
    note(first)
    note("the same, again")
    note(again)


#: Bytes of ``climate_records`` with its indexes: every partition's, or the plain table's.
_SIZE = """
SELECT coalesce(sum(pg_total_relation_size(inhrelid)), pg_total_relation_size('climate_records'))
FROM pg_inherits WHERE inhparent = 'climate_records'::regclass
"""


def load_and_query(engine: sa.Engine, prefix: str, sites: int, years: int) -> None:
    started = time.perf_counter()
    rows = fill(engine, sites, years)
    figure(f"pg_{prefix}rows", rows, "rows")
    figure(f"pg_{prefix}load_s", time.perf_counter() - started, "s")
    started = time.perf_counter()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("ANALYZE climate_records")
        )
    figure(f"pg_{prefix}analyze_s", time.perf_counter() - started, "s")
    with engine.connect() as conn:
        size = conn.execute(sa.text(_SIZE)).scalar_one()
    figure(f"pg_{prefix}gb", float(size) / 1e9, "GB")
    if prefix == "climate_":
        figure("pg_climate_partitions", len(partitions(engine)), "partitions")
    query_figures(engine, prefix, sites, years)


def database(pg: Postgres, admin: sa.Engine) -> sa.Engine:
    name = f"scaling_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    return make_engine(pg.url(name))


def postgres_figures(sites: int, years: int, compare: bool) -> None:
    with private_postgres() as pg:
        if pg is not None:
            postgres_run(pg, sites, years, compare)


def postgres_run(pg: Postgres, sites: int, years: int, compare: bool) -> None:
    admin = sa.create_engine(pg.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # Fewer checkpoints while bulk-loading; reloaded, no restart. Everything else is
            # PostgreSQL's default (fsync on, shared_buffers 128 MB): the store is in the OS's
            # cache.
            conn.execute(sa.text("ALTER SYSTEM SET max_wal_size = '8GB'"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        note(f"PostgreSQL {version}, {sites} sites x {len(ROOMS)} storerooms, {years} years")
        engine = database(pg, admin)
        migrate(engine)
        start, _ = span(years)
        if start < FIRST_MONTH:
            ensure_partitions(engine, datetime.now(UTC), since=start)  # before 2020: not DEFAULT
        load_and_query(engine, "climate_", sites, years)
        engine.dispose()
        if compare:
            plain = database(pg, admin)
            cfg = alembic_config(plain)
            command.upgrade(cfg, "0007")
            load_and_query(plain, "plain_climate_", sites, years)
            started = time.perf_counter()
            command.upgrade(cfg, "head")
            figure("pg_migrate_0008_s", time.perf_counter() - started, "s")
            plain.dispose()
    finally:
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=16, help="50: the full county")
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also a plain table (migration 0007), and the time migration 0008 takes on it",
    )
    args = parser.parse_args()
    note(f"cpus {os.cpu_count()}")
    started = time.perf_counter()
    postgres_figures(args.sites, args.years, args.compare)
    note(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
