"""Schema migrations carry a county's data: a database of schema 0002 through 0003."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import command

from server.ingest.core import Ingestor
from server.projections import default_projections, replay
from server.store.db import alembic_config, migrate
from server.store.schema import climate_notices, climate_records, journal, streams
from tests.test_ingest import NOW, TOPIC, batch
from tests.test_wire import climate_event

OLD_EPOCH = "a0a0a0a0"


def old_event(seq: int, kind: str = "climate.record", **over: object) -> dict[str, object]:
    event = climate_event(seq, **over)
    event["kind"] = kind
    if kind == "climate.state":
        event["payload"] = {
            "storeroom": "no1", "state": "alarm", "previous": "normal", "sensor": "no1-a",
            "temperature_c": 31.0, "humidity_pct": 50.0,
        }  # fmt: skip
    return event


def fill_0002(engine: sa.Engine) -> None:
    """What ingest of schema 0002 left: agents, per-event rows, derived records."""
    events = [old_event(1), old_event(2, "climate.state"), old_event(3), old_event(5)]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO agents (agent_id, site_id, epoch, acked_seq, highest_seq, "
                "first_seen_at, last_seen_at) VALUES ('station-1', 'county', :e, 3, 5, :t, :t)"
            ),
            {"e": OLD_EPOCH, "t": NOW},
        )
        for e in events:
            conn.execute(
                sa.text(
                    "INSERT INTO events (agent_id, epoch, seq, span, event_id, kind, occurred_at, "
                    "agent_occurred_at, clock_synced, time_corrected, boot_id, mono_s, "
                    "received_at, status, applied, body) VALUES ('station-1', :e, :seq, 1, :id, "
                    ":kind, :t, :t, true, false, 'b1', 12.5, :t, 'ok', :applied, :body)"
                ),
                {
                    "e": OLD_EPOCH, "seq": e["seq"], "id": e["id"], "kind": e["kind"], "t": NOW,
                    "applied": e["seq"] != 5, "body": json.dumps(e),
                },
            )  # fmt: skip
        for seq in (1, 3):
            conn.execute(
                sa.text(
                    "INSERT INTO climate_records (agent_id, epoch, seq, site_id, storeroom, "
                    "sensor, temperature_c, humidity_pct, raw_temperature_c, raw_humidity_pct, "
                    "quality, occurred_at, agent_occurred_at, clock_synced, time_corrected) "
                    "VALUES ('station-1', :e, :seq, 'county', 'no1', 'no1-a', 21.5, 55.0, 21.5, "
                    "55.0, '', :t, :t, true, false)"
                ),
                {"e": OLD_EPOCH, "seq": seq, "t": NOW},
            )


def test_a_0002_database_is_carried_into_the_journal(blank_engine: sa.Engine) -> None:
    command.upgrade(alembic_config(blank_engine), "0002")
    fill_0002(blank_engine)
    migrate(blank_engine)
    with blank_engine.connect() as conn:
        stream = conn.execute(sa.select(streams)).one()
        assert (stream.epoch, stream.state, stream.acked_seq, stream.highest_seq) == (
            OLD_EPOCH, "primary", 3, 5,
        )  # fmt: skip
        seqs = conn.execute(sa.select(journal.c.seq, journal.c.kind).order_by(journal.c.seq))
        assert [s for s, _ in seqs] == [1, 2, 3, 5]
        notice = conn.execute(sa.select(climate_notices.c.kind, climate_notices.c.seq)).one()
        assert tuple(notice) == ("climate.state", 2)
        boots = conn.execute(sa.select(climate_records.c.boot_id)).scalars().all()
        assert boots == ["b1", "b1"]
    filled = json.loads(batch(4, epoch=OLD_EPOCH))
    result = Ingestor(blank_engine, "fp").handle(TOPIC, json.dumps(filled).encode(), NOW)
    assert result.acked_seq == 5, "the gap fills and the held-back event follows"
    with blank_engine.connect() as conn:
        applied = conn.execute(sa.select(climate_records.c.seq).order_by(climate_records.c.id))
        assert list(applied.scalars()) == [1, 3, 4, 5]
    replay(blank_engine, default_projections())
    with blank_engine.connect() as conn:
        applied = conn.execute(sa.select(climate_records.c.seq).order_by(climate_records.c.seq))
        assert list(applied.scalars()) == [1, 3, 4, 5], "the journal alone rebuilds it"
