"""Climate records partitioned by month on PostgreSQL (migration 0008,
``server/climate/partitions.py``): every record in its month's partition, re-dated records
moving, maintenance idempotent and concurrent, rows in DEFAULT kept, and a 30-day series
reading only its window's partitions. A real private PostgreSQL; SQLite is left as it was."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.climate import history
from server.climate.partitions import (
    DEFAULT,
    FIRST_MONTH,
    SCHEMA,
    Ensured,
    add_months,
    ensure_partitions,
    is_partitioned,
    month_start,
    partition_name,
    partitions,
)
from server.ingest.core import Ingestor
from server.store.db import alembic_config, make_engine, migrate, utc
from server.store.schema import climate_records, metadata
from simulators.broker import Postgres
from tests.conftest import fresh_database
from tests.test_ingest import EPOCH, NOW, TOPIC, batch

MARCH = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def pg(postgres: Postgres) -> Iterator[sa.Engine]:
    """A fresh PostgreSQL database, not migrated."""
    with fresh_database(postgres) as engine:
        yield engine


@pytest.fixture
def store(pg: sa.Engine) -> sa.Engine:
    migrate(pg)
    return pg


def record(seq: int, at: datetime, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(
        agent_id="station-1", epoch=EPOCH, seq=seq, site_id="county", storeroom="no1",
        sensor="no1-a", temperature_c=20.0 + seq % 7, humidity_pct=55.0,
        raw_temperature_c=19.5, raw_humidity_pct=56.0, quality="", occurred_at=at,
        clock_synced=True, time_corrected=False,
    )  # fmt: skip
    values.update(over)
    return values


def insert(engine: sa.Engine, *rows: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(climate_records.insert(), list(rows))


def where(engine: sa.Engine) -> dict[int, tuple[str, int]]:
    """Each record's (partition, id), by seq."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT seq, tableoid::regclass::text, id FROM climate_records")
        ).all()
    return {seq: (table.removeprefix(f"{SCHEMA}."), rid) for seq, table, rid in rows}


def months(first: datetime, last: datetime) -> list[str]:
    names, month = [], month_start(first)
    while month <= last:
        names.append(partition_name(month))
        month = add_months(month, 1)
    return names


def test_sqlite_is_left_as_it_was(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    migrate(engine)
    assert ensure_partitions(engine, NOW) == Ensured(())
    assert partitions(engine) == []
    assert not is_partitioned(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_migrate_makes_every_month_from_2020_to_a_year_ahead(store: sa.Engine) -> None:
    now = datetime.now(UTC)
    assert is_partitioned(store)
    expected = months(FIRST_MONTH, add_months(month_start(now), 12))
    assert partitions(store) == sorted([*expected, DEFAULT])
    with store.connect() as conn:
        keys: dict[str, str] = dict(
            conn.execute(
                sa.text(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = 'climate_records'::regclass AND contype IN ('p', 'u')"
                )
            ).all()
        )
        indexes = set(
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = 'climate_records'::regclass AND c.relkind = 'I'"
                )
            ).scalars()
        )
        schemas = set(conn.execute(sa.text("SELECT nspname FROM pg_namespace")).scalars())
    assert keys == {
        "climate_records_pkey": "PRIMARY KEY (id, occurred_at)",
        "uq_climate_records_agent_epoch_seq": "UNIQUE (agent_id, epoch, seq, occurred_at)",
    }
    assert indexes == {
        "climate_records_pkey",
        "uq_climate_records_agent_epoch_seq",
        "ix_climate_records_sensor_time",
        "ix_climate_records_room_time",
        "ix_climate_records_undated",
    }, "every index partitioned, under the schema's names"
    assert SCHEMA in schemas
    with store.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    # The one difference from schema.py, and why: PostgreSQL's unique keys of a partitioned
    # table include the partition key (migration 0008's docstring). The partitions themselves
    # live in their own schema, which Alembic does not compare.
    assert [(d[0], sorted(c.name for c in d[1].columns)) for d in differences] == [
        ("remove_constraint", ["agent_id", "epoch", "occurred_at", "seq"]),
        ("add_constraint", ["agent_id", "epoch", "seq"]),
    ]


def test_a_record_lands_in_its_months_partition(store: sa.Engine) -> None:
    result = Ingestor(store, "fp").handle(TOPIC, batch(1, 2), NOW)
    assert result.acked_seq == 2
    insert(store, record(3, MARCH + timedelta(days=30, hours=23, minutes=59, seconds=59)))
    insert(store, record(4, MARCH + timedelta(days=31)))
    found = where(store)
    assert {seq: table for seq, (table, _) in found.items()} == {
        1: "climate_records_y2026m11",
        2: "climate_records_y2026m11",
        3: "climate_records_y2026m03",
        4: "climate_records_y2026m04",
    }


def test_a_redated_record_moves_to_its_new_month(store: sa.Engine) -> None:
    """Recorded before the agent's clock was set (1970: DEFAULT), re-dated when a record of the
    same boot brings the clock's reference: the row moves, keeping its id."""
    ingest = Ingestor(store, "fp")
    unsynced = json.loads(batch(1, 2, clock_synced=False, occurred_at="1970-01-01T00:01:00Z"))
    unsynced["events"][0]["mono_s"] = 100.0
    unsynced["events"][1]["mono_s"] = 160.0
    ingest.handle(TOPIC, json.dumps(unsynced).encode(), NOW)
    before = where(store)
    assert {before[1][0], before[2][0]} == {DEFAULT}
    synced = json.loads(batch(3, occurred_at="2026-11-01T00:05:00+00:00"))
    synced["events"][0]["mono_s"] = 700.0
    ingest.handle(TOPIC, json.dumps(synced).encode(), NOW)
    after = where(store)
    assert after[1] == ("climate_records_y2026m10", before[1][1]), "600 s before: October"
    assert after[2] == ("climate_records_y2026m10", before[2][1])
    assert after[3][0] == "climate_records_y2026m11"
    with store.connect() as conn:
        times = dict(
            conn.execute(sa.select(climate_records.c.seq, climate_records.c.occurred_at)).all()
        )
        left = conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.{DEFAULT}")).scalar_one()
    assert utc(times[1]) == datetime(2026, 10, 31, 23, 55, tzinfo=UTC)
    assert left == 0


def test_ensuring_twice_changes_nothing(store: sa.Engine) -> None:
    now = datetime.now(UTC)
    assert ensure_partitions(store, now) == Ensured(())
    later = now + timedelta(days=800)
    made = ensure_partitions(store, later)
    last_made = add_months(month_start(now), 12)
    assert made.created == tuple(months(add_months(last_made, 1), add_months(later, 12))), (
        "from the month after the last one made: none left out"
    )
    assert made.moved == ()
    kept = partitions(store)
    assert ensure_partitions(store, later) == Ensured(())
    assert ensure_partitions(store, later, since=FIRST_MONTH) == Ensured(())
    assert partitions(store) == kept


def test_several_processes_ensuring_at_once_make_each_month_once(store: sa.Engine) -> None:
    """Four connections (as four ingest processes would) start the same maintenance at once."""
    later = datetime.now(UTC) + timedelta(days=3 * 365)
    start = threading.Barrier(4)

    def maintain() -> Ensured:
        engine = make_engine(store.url.render_as_string(hide_password=False))
        try:
            with engine.connect():
                start.wait(timeout=30)  # every connection open before any of them starts
            return ensure_partitions(engine, later)
        finally:
            engine.dispose()

    with ThreadPoolExecutor(4) as pool:
        results = [f.result(timeout=60) for f in [pool.submit(maintain) for _ in range(4)]]
    created = [name for r in results for name in r.created]
    assert len(created) == len(set(created)) > 20
    assert set(created) <= set(partitions(store))
    assert sum(1 for r in results if r.created) == 1, "the first did all; the others found it"


def test_rows_waiting_in_default_go_into_the_month_made_for_them(store: sa.Engine) -> None:
    """An agent whose clock ran ahead stored records beyond the last month: they wait in
    DEFAULT, and the month made for them later takes them over, none lost, ids kept."""
    now = datetime.now(UTC)
    ahead = add_months(month_start(now), 14) + timedelta(days=3)
    insert(
        store,
        record(1, ahead),
        record(2, ahead + timedelta(hours=5)),
        record(3, add_months(ahead, 1)),
        record(4, datetime(1970, 1, 1, 0, 1, tzinfo=UTC)),
    )
    before = where(store)
    assert {table for table, _ in before.values()} == {DEFAULT}
    made = ensure_partitions(store, add_months(now, 2))
    month = partition_name(ahead)
    assert month in made.created
    assert made.moved == ((month, 2),)
    after = where(store)
    assert after == {
        1: (month, before[1][1]),
        2: (month, before[2][1]),
        3: (DEFAULT, before[3][1]),
        4: (DEFAULT, before[4][1]),
    }
    assert ensure_partitions(store, add_months(now, 3)).moved == (
        (partition_name(add_months(ahead, 1)), 1),
    )


def test_maintenance_does_not_wait_for_ingest_or_queries(store: sa.Engine) -> None:
    """Attaching takes no lock that an open insert or read holds: an ingest transaction and a
    series left open do not stop a month being made (a lock wait would fail after 5 s)."""
    with store.connect() as busy:
        busy.begin()
        busy.execute(climate_records.insert(), [record(1, NOW)])
        history.series(busy, "county", "no1", NOW - timedelta(days=30), NOW)
        made = ensure_partitions(store, datetime.now(UTC) + timedelta(days=500), lock_timeout_s=5)
        assert made.created
        busy.commit()
    assert len(where(store)) == 1


def statements(engine: sa.Engine, call: Any) -> list[tuple[str, Any]]:
    """The SQL (and parameters) ``call`` runs on climate_records."""
    seen: list[tuple[str, Any]] = []

    def keep(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if "climate_records" in statement:
            seen.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", keep)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", keep)
    return seen


def relations(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= relations(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= relations(value)
    return found


def test_a_30_day_series_reads_only_its_months(store: sa.Engine) -> None:
    start = datetime(2025, 12, 1, tzinfo=UTC)
    rows = [record(n, start + timedelta(hours=6 * n)) for n in range(1, 4 * 182)]
    insert(store, *rows)  # December 2025 to May 2026, every 6 hours
    with store.connect() as conn:
        conn.execute(sa.text("ANALYZE climate_records"))
    window = (datetime(2026, 3, 20, tzinfo=UTC), datetime(2026, 4, 19, tzinfo=UTC))
    found: list[history.Series] = []
    ran = statements(store, lambda: found.append(history.series(store, "county", "no1", *window)))
    assert found[0].bucket_s == 3600
    assert found[0].records == 30 * 4
    assert ran
    for statement, params in ran:
        with store.connect() as conn:
            [[plan]] = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", params).all()
        read = {r for r in relations(plan) if r.startswith("climate_records")}
        assert read == {"climate_records_y2026m03", "climate_records_y2026m04"}, read
    mkt = statements(store, lambda: history.mkt(store, "county", "no1", *window))
    for statement, params in mkt:
        with store.connect() as conn:
            [[plan]] = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", params).all()
        assert {r for r in relations(plan) if r.startswith("climate_records")} == {
            "climate_records_y2026m03",
            "climate_records_y2026m04",
        }


def test_the_migration_carries_the_rows_and_the_downgrade_brings_them_back(
    pg: sa.Engine,
) -> None:
    cfg = alembic_config(pg)
    command.upgrade(cfg, "0007")
    insert(
        pg,
        record(1, datetime(1970, 1, 1, tzinfo=UTC)),
        record(2, MARCH),
        record(3, datetime(2019, 12, 31, 23, 59, tzinfo=UTC)),
        record(4, NOW),
    )
    with pg.connect() as conn:
        ids = dict(conn.execute(sa.select(climate_records.c.seq, climate_records.c.id)).all())
    command.upgrade(cfg, "head")
    assert where(pg) == {
        1: (DEFAULT, ids[1]),
        2: ("climate_records_y2026m03", ids[2]),
        3: (DEFAULT, ids[3]),
        4: ("climate_records_y2026m11", ids[4]),
    }
    insert(pg, record(5, NOW))
    assert where(pg)[5][1] == max(ids.values()) + 1, "ids go on from the same sequence"
    command.downgrade(cfg, "0007")
    assert not is_partitioned(pg)
    with pg.connect() as conn:
        kept = dict(conn.execute(sa.select(climate_records.c.seq, climate_records.c.id)).all())
        unique = conn.execute(
            sa.text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'uq_climate_records_agent_epoch_seq'"
            )
        ).scalar_one()
        left = conn.execute(
            sa.text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": SCHEMA}
        ).scalar_one()
    assert kept == {**ids, 5: max(ids.values()) + 1}
    assert unique == "UNIQUE (agent_id, epoch, seq)"
    assert left == 0
    assert ensure_partitions(pg, NOW) == Ensured(()), "nothing to do before 0008"
    command.upgrade(cfg, "head")
    assert {seq: rid for seq, (_, rid) in where(pg).items()} == kept
    insert(pg, record(6, NOW))
    assert where(pg)[6][1] == kept[5] + 1
