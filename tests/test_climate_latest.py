"""``climate latest``: the newest record of every sensor, found by seeks along the (site, sensor,
time) index, never by reading the whole table (years of records: millions of rows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from server.climate.queries import Reading, latest
from server.store.db import make_engine, migrate, statements, utc
from server.store.schema import climate_records
from tests.support import plan_lines
from tests.test_climate_history import Store

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def fill(store: Store) -> None:
    """Three sites; two sensors share a name in different sites, one site has two storerooms,
    one sensor fell silent in February, two records of one sensor share their time."""
    days = [BASE + timedelta(days=d) for d in range(0, 180, 3)]
    store.records(*[("no1-a", at, 20.0 + i % 5) for i, at in enumerate(days)], site="county")
    store.records(*[("no1-b", at, 21.0) for at in days if at < BASE + timedelta(days=40)],
                  site="county")  # fmt: skip
    store.records(*[("no1-a", at + timedelta(hours=1), 18.0) for at in days], site="town")
    store.records(*[("no2-a", at, 24.0) for at in days[:-1]], room="no2", site="town")
    last = days[-1] + timedelta(hours=5)
    store.records(("no2-a", last, 25.0), ("no2-a", last, 26.0), room="no2", site="town")
    store.records(("no3-a", BASE, 15.0), room="no3", site="village")


def newest_by_hand(engine: sa.Engine) -> list[tuple[str, str, str, int]]:
    """Every record read, the newest of each (site, sensor) kept: the answer to match."""
    r = climate_records
    with engine.connect() as conn:
        rows = conn.execute(sa.select(r.c.id, r.c.site_id, r.c.storeroom, r.c.sensor,
                                      r.c.occurred_at)).all()  # fmt: skip
    newest: dict[tuple[str, str], Any] = {}
    for row in rows:
        key = (row.site_id, row.sensor)
        if key not in newest or (utc(row.occurred_at), row.id) > (
            utc(newest[key].occurred_at),
            newest[key].id,
        ):
            newest[key] = row
    return sorted((x.site_id, x.storeroom, x.sensor, x.id) for x in newest.values())


def shown(readings: list[Reading]) -> list[tuple[str, str, str, int]]:
    return [(x.site_id, x.storeroom, x.sensor, x.id) for x in readings]


def test_the_newest_record_of_each_sensor_ties_by_id(engine: sa.Engine) -> None:
    store = Store(engine)
    assert latest(engine) == []
    fill(store)
    found = latest(engine)
    assert shown(found) == newest_by_hand(engine)
    by_sensor = {(x.site_id, x.sensor): x for x in found}
    assert len(by_sensor) == 5
    silent = by_sensor[("county", "no1-b")]
    assert silent.occurred_at == BASE + timedelta(days=39), "silent since February, still shown"
    assert by_sensor[("town", "no2-a")].temperature_c == 26.0, "same time: the later stored"
    assert by_sensor[("village", "no3-a")].occurred_at == BASE
    assert by_sensor[("town", "no1-a")].occurred_at.tzinfo is not None


def test_no_statement_reads_the_whole_table(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    migrate(engine)
    fill(Store(engine))
    with statements(engine, "climate_records") as read:
        assert len(latest(engine)) == 5
    # Per site: its sensors (one more seek to find there is none left), their newest, the rows.
    assert len(read) == 4 + (3 + 3 + 2) + 5 + 3
    for query, params in read:
        on_table = plan_lines(engine, query, params, "climate_records")
        assert on_table, query
        for line in on_table:
            assert line.startswith("SEARCH"), (query, on_table)
            assert "USING" in line, (query, on_table)
    engine.dispose()
