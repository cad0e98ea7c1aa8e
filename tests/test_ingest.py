"""Server ingest against a real SQLite file: once per (agent, seq), gaps, dead letters."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.ingest import Ingestor
from server.store.db import open_store
from server.store.schema import agents, climate_records, dead_letters, events, metadata
from tests.test_wire import climate_event

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
TOPIC = "fp/v1/county/station-1/events"


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return open_store(f"sqlite:///{tmp_path / 'server.db'}")


def batch(*seqs: int, agent: str = "station-1", **event_overrides: Any) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "agent_id": agent,
            "sent_at": NOW.isoformat(),
            "events": [climate_event(s, **event_overrides) for s in seqs],
        }
    ).encode()


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_migrations_match_the_schema(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_batch_is_stored_and_acknowledged(engine: sa.Engine) -> None:
    result = Ingestor(engine, "fp").handle(TOPIC, batch(1, 2, 3), NOW)
    assert (result.stored, result.duplicates, result.acked_seq) == (3, 0, 3)
    assert (result.site_id, result.agent_id) == ("county", "station-1")
    with engine.connect() as conn:
        row = conn.execute(sa.select(climate_records)).first()
        assert row is not None
        assert (row.storeroom, row.sensor, row.temperature_c, row.humidity_pct) == (
            "no1",
            "no1-a",
            21.5,
            55.0,
        )
        assert conn.execute(sa.select(agents.c.acked_seq)).scalar_one() == 3


def test_replayed_batch_is_applied_once(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    payload = batch(1, 2)
    ingest.handle(TOPIC, payload, NOW)
    again = ingest.handle(TOPIC, payload, NOW)
    assert (again.stored, again.duplicates, again.acked_seq) == (0, 2, 2)
    assert count(engine, climate_records) == 2


def test_gap_holds_the_ack_until_filled(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    assert ingest.handle(TOPIC, batch(1, 2, 4, 5), NOW).acked_seq == 2
    assert ingest.handle(TOPIC, batch(3), NOW).acked_seq == 5


def test_invalid_event_is_kept_as_rejected_and_does_not_block_the_ack(engine: sa.Engine) -> None:
    payload = json.loads(batch(1, 2, 3))
    payload["events"][1]["payload"]["humidity_pct"] = 250
    result = Ingestor(engine, "fp").handle(TOPIC, json.dumps(payload).encode(), NOW)
    assert (result.stored, result.rejected, result.acked_seq) == (2, 1, 3)
    with engine.connect() as conn:
        status, error = conn.execute(
            sa.select(events.c.status, events.c.error).where(events.c.seq == 2)
        ).one()
    assert status == "rejected"
    assert "humidity_pct" in error


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TOPIC, b"\x00\xffnot json", "not an event batch"),
        (TOPIC, b'{"v": 1}', "not an event batch"),
        (TOPIC, batch(1, agent="station-2"), "differs from topic agent"),
        ("fp/v1/county/station-1/nonsense", batch(1), "unknown channel"),
        ("elsewhere/x", batch(1), "is not under"),
    ],
)
def test_garbage_is_dead_lettered_and_nothing_applied(
    engine: sa.Engine, topic: str, payload: bytes, reason: str
) -> None:
    result = Ingestor(engine, "fp").handle(topic, payload, NOW)
    assert result.dead_lettered
    assert result.acked_seq is None
    with engine.connect() as conn:
        row = conn.execute(sa.select(dead_letters)).one()
    assert reason in row.reason
    assert row.payload == payload
    assert count(engine, climate_records) == 0


def test_event_of_another_agent_inside_a_batch_is_refused(engine: sa.Engine) -> None:
    payload = json.loads(batch(1, 2))
    payload["events"][1]["agent_id"] = "intruder"
    result = Ingestor(engine, "fp").handle(TOPIC, json.dumps(payload).encode(), NOW)
    assert (result.stored, result.rejected, result.acked_seq) == (1, 1, 1)
    assert count(engine, climate_records) == 1


def test_status_is_recorded(engine: sa.Engine) -> None:
    status = {"v": 1, "agent_id": "station-1", "online": False}
    topic = "fp/v1/county/station-1/status"
    Ingestor(engine, "fp").handle(topic, json.dumps(status).encode(), NOW)
    with engine.connect() as conn:
        assert conn.execute(sa.select(agents.c.online)).scalar_one() is False
