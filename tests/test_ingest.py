"""Server ingest against a real SQLite file: once per (agent, seq), gaps, dead letters."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.ingest import Ingestor
from server.store.db import open_store, utc
from server.store.schema import (
    agents,
    climate_records,
    climate_summaries,
    commands,
    dead_letters,
    events,
    lost_ranges,
    metadata,
)
from simulators.broker import Postgres
from tests.test_wire import climate_event

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
TOPIC = "fp/v1/county/station-1/events"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """Every ingest test runs on SQLite and on PostgreSQL (a fresh database each)."""
    if request.param == "sqlite":
        yield open_store(f"sqlite:///{tmp_path / 'server.db'}")
        return
    pg: Postgres = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine = open_store(pg.url(name))
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name}"))
    admin.dispose()


EPOCH = "e0e0e0e0"


def batch(
    *seqs: int, agent: str = "station-1", epoch: str = EPOCH, **event_overrides: Any
) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "agent_id": agent,
            "epoch": epoch,
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
    assert (result.stored, result.acked_seq) == (1, 1)
    assert count(engine, climate_records) == 1
    assert count(engine, dead_letters) == 1


def test_status_is_recorded(engine: sa.Engine) -> None:
    status = {"v": 1, "agent_id": "station-1", "online": False}
    topic = "fp/v1/county/station-1/status"
    Ingestor(engine, "fp").handle(topic, json.dumps(status).encode(), NOW)
    with engine.connect() as conn:
        assert conn.execute(sa.select(agents.c.online)).scalar_one() is False


def applied_seqs(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.select(climate_records.c.seq).order_by(climate_records.c.id)).scalars()
        )


def test_events_after_a_gap_are_held_back_then_applied_in_order(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    result = ingest.handle(TOPIC, batch(1, 2, 5, 6), NOW)
    assert (result.acked_seq, result.highest_seq) == (2, 6)
    assert applied_seqs(engine) == [1, 2], "5 and 6 wait for 3 and 4"
    ingest.handle(TOPIC, batch(4), NOW)
    assert applied_seqs(engine) == [1, 2]
    assert ingest.handle(TOPIC, batch(3), NOW).acked_seq == 6
    assert applied_seqs(engine) == [1, 2, 3, 4, 5, 6]
    with engine.connect() as conn:
        assert conn.execute(sa.select(agents.c.gap_since)).scalar_one() is None


def summary_event(seq: int, span: int) -> dict[str, Any]:
    stats = {
        "storeroom": "no1",
        "sensor": "no1-a",
        "count": span,
        "first_at": "2026-11-23T00:00:00+00:00",
        "last_at": "2026-11-23T00:59:00+00:00",
        "temperature_min_c": 20.0,
        "temperature_mean_c": 21.0,
        "temperature_max_c": 22.0,
        "humidity_min_pct": 50.0,
        "humidity_mean_pct": 51.0,
        "humidity_max_pct": 52.0,
    }
    return climate_event(
        seq,
        span=span,
        kind="climate.summary",
        payload={
            "window_start": stats["first_at"],
            "window_end": stats["last_at"],
            "records": span,
            "sensors": [stats],
        },
    )


def test_a_summary_fills_every_seq_it_stands_for(engine: sa.Engine) -> None:
    payload = json.loads(batch(1))
    payload["events"].append(summary_event(2, 60))
    payload["events"].append(climate_event(62))
    result = Ingestor(engine, "fp").handle(TOPIC, json.dumps(payload).encode(), NOW)
    assert (result.acked_seq, result.highest_seq) == (62, 62)
    assert count(engine, climate_summaries) == 1
    assert applied_seqs(engine) == [1, 62]


def test_new_epoch_closes_the_old_one_and_counts_from_one(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1, 2, 4), NOW)
    result = ingest.handle(TOPIC, batch(1, 2, epoch="f1f1f1f1"), NOW)
    assert (result.epoch, result.acked_seq, result.stored) == ("f1f1f1f1", 2, 2)
    with engine.connect() as conn:
        lost = conn.execute(sa.select(lost_ranges)).one()
    assert (lost.epoch, lost.from_seq, lost.to_seq) == (EPOCH, 3, None)
    late = ingest.handle(TOPIC, batch(3, epoch=EPOCH), NOW)
    assert late.stored == 1, "a late batch of the old epoch is still kept"
    assert count(engine, climate_records) == 6


def test_agent_cannot_move_to_another_site(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1), NOW)
    result = ingest.handle("fp/v1/other-county/station-1/events", batch(2), NOW)
    assert result.dead_lettered
    assert count(engine, climate_records) == 1


def test_times_from_before_the_clock_was_set_are_corrected(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    unsynced = batch(1, 2, clock_synced=False, occurred_at="1970-01-01T00:01:00+00:00")
    payload = json.loads(unsynced)
    payload["events"][0]["mono_s"] = 100.0
    payload["events"][1]["mono_s"] = 160.0
    ingest.handle(TOPIC, json.dumps(payload).encode(), NOW)
    synced = json.loads(batch(3, occurred_at="2026-11-23T04:10:00+00:00"))
    synced["events"][0]["mono_s"] = 700.0
    ingest.handle(TOPIC, json.dumps(synced).encode(), NOW)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                climate_records.c.seq,
                climate_records.c.occurred_at,
                climate_records.c.agent_occurred_at,
                climate_records.c.time_corrected,
            ).order_by(climate_records.c.seq)
        ).all()
    ref = datetime(2026, 11, 23, 4, 10, tzinfo=UTC)
    assert [(r.seq, utc(r.occurred_at), r.time_corrected) for r in rows] == [
        (1, ref - timedelta(seconds=600), True),
        (2, ref - timedelta(seconds=540), True),
        (3, ref, False),
    ]
    assert utc(rows[0].agent_occurred_at).year == 1970, "the agent's own time is kept"
    # A later unsynced event of the same boot is corrected on arrival.
    late = json.loads(batch(4, clock_synced=False, occurred_at="1970-01-01T00:20:00+00:00"))
    late["events"][0]["mono_s"] = 760.0
    ingest.handle(TOPIC, json.dumps(late).encode(), NOW)
    with engine.connect() as conn:
        fourth = conn.execute(
            sa.select(climate_records.c.occurred_at).where(climate_records.c.seq == 4)
        ).scalar_one()
    assert utc(fourth) == ref + timedelta(seconds=60)


def test_command_result_closes_the_command(engine: sa.Engine) -> None:
    cid = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            commands.insert().values(
                id=cid,
                agent_id="station-1",
                site_id="county",
                kind="ping",
                message="{}",
                created_at=NOW,
            )
        )
    result_event = climate_event(
        1,
        kind="command.result",
        payload={"command_id": cid, "command_kind": "ping", "ok": True, "detail": "pong"},
    )
    payload = json.loads(batch(1))
    payload["events"] = [result_event]
    Ingestor(engine, "fp").handle(TOPIC, json.dumps(payload).encode(), NOW)
    with engine.connect() as conn:
        row = conn.execute(sa.select(commands)).one()
    assert (row.result_ok, row.result_detail) == (True, "pong")


def test_a_rejected_summary_still_fills_every_number_it_claims(engine: sa.Engine) -> None:
    bad = summary_event(1, 5)
    bad["payload"]["unknown_field"] = 1  # e.g. from a newer agent
    payload = json.loads(batch(6))
    payload["events"].insert(0, bad)
    result = Ingestor(engine, "fp").handle(TOPIC, json.dumps(payload).encode(), NOW)
    assert (result.rejected, result.acked_seq) == (1, 6)


def test_a_refused_batch_keeps_its_payload_as_evidence(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1), NOW)
    moved = batch(2)
    assert ingest.handle("fp/v1/other/station-1/events", moved, NOW).dead_lettered
    with engine.connect() as conn:
        assert conn.execute(sa.select(dead_letters.c.payload)).scalar_one() == moved


def test_agent_from_before_epochs_keeps_its_numbering(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1, 2, 3), NOW)
    with engine.begin() as conn:  # as migration 0002 leaves an agent known before epochs
        conn.execute(agents.update().values(epoch=None))
    assert ingest.handle(TOPIC, batch(4, epoch="a1a1a1a1"), NOW).acked_seq == 4
