"""Server ingest against a real SQLite file: once per (agent, seq), gaps, dead letters."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.ingest import core
from server.ingest.core import Ingestor, Settings
from server.store.db import utc
from server.store.schema import (
    agents,
    climate_records,
    climate_summaries,
    commands,
    dead_letters,
    journal,
    lost_ranges,
    metadata,
    streams,
)
from tests.test_wire import climate_event

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
TOPIC = "fp/v1/county/station-1/events"


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
        found = compare_metadata(MigrationContext.configure(conn), metadata)
    if engine.dialect.name == "postgresql":
        # 0008: on a partitioned table a unique key includes the partition key (occurred_at).
        found = [
            d for d in found if getattr(d[1], "name", "") != "uq_climate_records_agent_epoch_seq"
        ]
    assert found == []


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
        assert conn.execute(sa.select(streams.c.acked_seq)).scalar_one() == 3


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


def test_malformed_event_is_dead_lettered_and_takes_no_number(engine: sa.Engine) -> None:
    payload = json.loads(batch(1, 2, 3))
    payload["events"][1]["payload"]["humidity_pct"] = 250
    ingest = Ingestor(engine, "fp")
    result = ingest.handle(TOPIC, json.dumps(payload).encode(), NOW)
    assert (result.stored, result.acked_seq, result.highest_seq) == (2, 1, 3)
    [refusal] = result.refused
    assert (refusal.seq, refusal.code) == (2, "malformed")
    assert str(refusal.id) == payload["events"][1]["id"]
    assert "humidity_pct" in refusal.reason
    with engine.connect() as conn:
        row = conn.execute(sa.select(dead_letters)).one()
    assert (row.agent_id, row.epoch, row.seq) == ("station-1", EPOCH, 2)
    assert "humidity_pct" in row.reason
    real = ingest.handle(TOPIC, batch(2), NOW)
    assert (real.stored, real.acked_seq) == (1, 3), "the real event with that number is taken"
    assert applied_seqs(engine) == [1, 2, 3]


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
        assert conn.execute(sa.select(streams.c.gap_since)).scalar_one() is None


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


def opener(seq: int = 1, kind: str = "agent.outbox_reset") -> dict[str, Any]:
    payload = {"reason": "corrupt", "kept_as": "outbox.db.corrupt-x"}
    return climate_event(
        seq, kind=kind, payload=payload if kind == "agent.outbox_reset" else {"version": "1"}
    )


def new_epoch_batch(*seqs: int, epoch: str = "f1f1f1f1", announce: bool = True) -> bytes:
    payload = json.loads(batch(*seqs, epoch=epoch))
    if announce and seqs and seqs[0] == 1:
        payload["events"][0] = opener()
    return json.dumps(payload).encode()


def stream_states(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(streams.c.epoch, streams.c.state)).all())


def test_new_epoch_is_adopted_once_proven_and_closes_the_old_one(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1, 2, 4), NOW)
    result = ingest.handle(TOPIC, new_epoch_batch(1, 2, 3), NOW)
    assert (result.epoch, result.acked_seq, result.stored) == ("f1f1f1f1", 3, 3)
    assert stream_states(engine) == {EPOCH: "primary", "f1f1f1f1": "candidate"}
    assert applied_seqs(engine) == [1, 2], "not applied on the word of one batch"
    ingest.settle_epochs(NOW + timedelta(seconds=60))
    assert stream_states(engine)["f1f1f1f1"] == "candidate", "the proof takes its time"
    ingest.settle_epochs(NOW + timedelta(seconds=121))
    assert stream_states(engine) == {EPOCH: "closed", "f1f1f1f1": "primary"}
    with engine.connect() as conn:
        lost = conn.execute(sa.select(lost_ranges).order_by(lost_ranges.c.from_seq)).all()
    assert [(r.epoch, r.from_seq, r.to_seq) for r in lost] == [(EPOCH, 3, 3), (EPOCH, 5, None)]
    assert applied_seqs(engine) == [1, 2, 4, 2, 3], "held-back 4 applied, then the new epoch"
    after = ingest.handle(TOPIC, new_epoch_batch(4, 5), NOW + timedelta(seconds=130))
    assert after.acked_seq == 5
    assert applied_seqs(engine)[-2:] == [4, 5]


def test_forged_epoch_is_kept_apart_and_never_stops_the_real_one(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1, 2), NOW)
    forged = ingest.handle(TOPIC, new_epoch_batch(1, 2, 3, epoch="baadf00d"), NOW)
    assert (forged.epoch, forged.acked_seq) == ("baadf00d", 3), "acknowledged on its own"
    later = NOW + timedelta(seconds=30)
    real = ingest.handle(TOPIC, batch(3, 4), later)
    assert (real.epoch, real.acked_seq) == (EPOCH, 4), "the real epoch goes on being acked"
    assert stream_states(engine)["baadf00d"] == "quarantined"
    ingest.settle_epochs(NOW + timedelta(hours=1))
    assert stream_states(engine) == {EPOCH: "primary", "baadf00d": "quarantined"}
    assert applied_seqs(engine) == [1, 2, 3, 4], "nothing forged applied"
    with engine.connect() as conn:
        conflict = conn.execute(sa.select(agents.c.identity_conflict)).scalar_one()
    assert "both alive" in conflict
    assert ingest.handle(TOPIC, batch(5), later).acked_seq == 5


def test_unannounced_epoch_is_never_adopted(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1), NOW)
    ingest.handle(TOPIC, new_epoch_batch(1, 2, epoch="baadf00d", announce=False), NOW)
    ingest.settle_epochs(NOW + timedelta(days=1))
    assert stream_states(engine)["baadf00d"] == "candidate"
    assert applied_seqs(engine) == [1]


def test_same_number_other_content_is_a_kept_conflict(engine: sa.Engine) -> None:
    """Two boxes cloned from one SD card: same agent, same epoch, different events."""
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1, 2), NOW)
    other = json.loads(batch(2, 3))
    for event in other["events"]:
        event["payload"]["temperature_c"] = 29.0
    clone = ingest.handle(TOPIC, json.dumps(other).encode(), NOW)
    assert (clone.duplicates, clone.conflicts, clone.stored, clone.acked_seq) == (0, 1, 1, 3)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(journal)).scalar_one() == 3
        assert conn.execute(sa.text("SELECT count(*) FROM journal_conflicts")).scalar_one() == 1
        assert "seq 2" in conn.execute(sa.select(agents.c.identity_conflict)).scalar_one()
    assert applied_seqs(engine) == [1, 2, 3], "the conflicting event is kept, not applied"
    again = ingest.handle(TOPIC, batch(1, 2), NOW)
    assert again.conflicts == 2, "fresh ids: not the same events"


def test_a_resend_of_the_same_events_is_a_duplicate(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    payload = batch(1, 2, 3)
    ingest.handle(TOPIC, payload, NOW)
    events_ = json.loads(payload)["events"]
    regrouped = json.loads(batch(4))
    regrouped["events"] = [events_[2], *regrouped["events"]]
    result = ingest.handle(TOPIC, json.dumps(regrouped).encode(), NOW)
    assert (result.duplicates, result.conflicts, result.acked_seq) == (1, 0, 4)


def test_numbers_far_beyond_what_was_sent_open_no_gap(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1), NOW)
    forged = json.loads(batch(2_000_000))
    forged["events"][0]["span"] = 9_999_999
    result = ingest.handle(TOPIC, json.dumps(forged).encode(), NOW)
    assert result.refused
    assert (result.refused[0].code, result.refused[0].seq) == ("too_far", 2_000_000)
    assert "too far" in result.refused[0].reason
    assert (result.acked_seq, result.highest_seq) == (1, 1)
    assert ingest.handle(TOPIC, batch(2), NOW).highest_seq == 2


def test_malformed_span_is_not_believed(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1), NOW)
    bad = summary_event(2, 9_000_000)
    bad["payload"]["records"] = 5  # span and records disagree: impossible
    payload = json.loads(batch(3))
    payload["events"].insert(0, bad)
    result = ingest.handle(TOPIC, json.dumps(payload).encode(), NOW)
    assert (result.acked_seq, result.highest_seq) == (1, 3)
    assert ingest.handle(TOPIC, batch(2), NOW).acked_seq == 3


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


def test_event_with_an_unknown_field_is_kept_not_understood_and_fills_its_numbers(
    engine: sa.Engine,
) -> None:
    newer = summary_event(1, 5)
    newer["payload"]["unknown_field"] = 1  # from a newer agent
    payload = json.loads(batch(6))
    payload["events"].insert(0, newer)
    result = Ingestor(engine, "fp").handle(TOPIC, json.dumps(payload).encode(), NOW)
    assert (result.not_understood, result.stored, result.acked_seq) == (1, 1, 6)
    assert count(engine, climate_summaries) == 0, "never applied silently"
    with engine.connect() as conn:
        assert conn.execute(sa.select(streams.c.not_understood)).scalar_one() == 1


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
    with engine.begin() as conn:  # as migration 0003 carries an agent known before epochs
        conn.execute(streams.update().values(epoch=""))
    assert ingest.handle(TOPIC, batch(4, epoch="a1a1a1a1"), NOW).acked_seq == 4


def test_a_flood_of_refusals_is_kept_up_to_the_limit_and_counted(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp", settings=Settings(refusals_per_min=30))
    ingest.handle(TOPIC, batch(1), NOW)
    results = ingest.handle_many([(TOPIC, b"not json %d" % i) for i in range(50)], NOW)
    assert [r.kept for r in results] == [True] * 30 + [False] * 20
    assert count(engine, dead_letters) == 30
    with engine.connect() as conn:
        row = conn.execute(sa.select(agents.c.dead_lettered, agents.c.dead_letters_dropped))
        assert tuple(row.one()) == (30, 20)
    later = NOW + timedelta(seconds=61)
    assert ingest.handle(TOPIC, b"still not json", later).kept
    assert ingest.handle(TOPIC, batch(2), later).acked_seq == 2


def test_a_filled_gap_walks_over_everything_held_back_in_chunks(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "WALK_CHUNK", 70)
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1), NOW)
    for first in range(3, 503, 100):
        result = ingest.handle(TOPIC, batch(*range(first, first + 100)), NOW)
    assert (result.acked_seq, result.highest_seq) == (1, 502)
    covered = json.loads(batch(2))
    covered["events"][0]["seq"] = 250  # inside what is held, with other content: a conflict
    assert ingest.handle(TOPIC, json.dumps(covered).encode(), NOW).conflicts == 1
    assert ingest.handle(TOPIC, batch(2), NOW).acked_seq == 502
    with engine.connect() as conn:
        applied = conn.execute(sa.select(climate_records.c.seq).order_by(climate_records.c.id))
        assert list(applied.scalars()) == list(range(1, 503))


def test_an_event_inside_a_held_summarys_span_is_a_conflict(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    ingest.handle(TOPIC, batch(1), NOW)
    held = json.loads(batch(1))
    held["events"] = [summary_event(10, 20), climate_event(30)]
    assert ingest.handle(TOPIC, json.dumps(held).encode(), NOW).highest_seq == 30
    assert ingest.handle(TOPIC, batch(15, 31), NOW).conflicts == 1
    assert ingest.handle(TOPIC, batch(*range(2, 10)), NOW).acked_seq == 31
