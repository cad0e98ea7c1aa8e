"""The outbox on a real SQLite file: numbering, durability across reopen, limits, acks."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.climate.compaction import COMPACTION
from edge_agent.clock import Stamp
from edge_agent.outbox import MIGRATIONS, AsyncOutbox, Outbox, OutboxError, OutboxFull
from edge_agent.wire import (
    AgentStarted,
    ClimateRecord,
    ClimateRecordEvent,
    ClimateSummaryEvent,
    SensorFault,
    StorageAlarmEvent,
    parse_event,
)

STAMP = Stamp(datetime(2026, 11, 23, 4, 0, tzinfo=UTC), True, "boot-1", 10.0)


def record(t: float = 21.5) -> ClimateRecord:
    return ClimateRecord(
        storeroom="no1",
        sensor="no1-a",
        temperature_c=t,
        humidity_pct=50.0,
        raw_temperature_c=t,
        raw_humidity_pct=50.0,
    )


def test_sequence_numbers_are_contiguous_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, "station-1")
    assert [box.append("climate.record", record(), STAMP) for _ in range(3)] == [1, 2, 3]
    box.close()
    box = Outbox(path, "station-1")
    assert box.last_seq == 3
    assert box.append("agent.started", AgentStarted(version="x"), STAMP) == 4
    bodies = [parse_event(json.loads(p.body)) for p in box.pending(0, 100, 10**6)]
    assert [e.seq for e in bodies] == [1, 2, 3, 4]
    assert bodies[0].agent_id == "station-1"
    assert bodies[0].occurred_at == STAMP.occurred_at


def test_pending_respects_cursor_and_limits(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "a")
    for i in range(10):
        box.append("climate.record", record(20 + i), STAMP)
    assert [p.seq for p in box.pending(3, 4, 10**6)] == [4, 5, 6, 7]
    one = len(box.pending(0, 1, 10**6)[0].body)
    assert [p.seq for p in box.pending(0, 100, one * 2 + 5)] == [1, 2]
    assert [p.seq for p in box.pending(0, 100, 10)] == [1], "always at least one event"
    assert box.pending(10, 100, 10**6) == []


def test_ack_removes_stored_events_and_is_persistent(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "a")
    for _ in range(5):
        box.append("climate.record", record(), STAMP)
    assert box.ack(3) == 3
    assert box.ack(2) == 0, "an old ack changes nothing"
    stats = box.stats()
    assert (stats.last_seq, stats.acked_seq, stats.backlog) == (5, 3, 2)
    assert stats.oldest_unsent_at == STAMP.occurred_at
    box.close()
    box = Outbox(path, "a")
    assert box.acked_seq == 3
    assert [p.seq for p in box.pending(box.acked_seq, 100, 10**6)] == [4, 5]


def test_ack_beyond_last_seq_is_clamped(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "a")
    box.append("climate.record", record(), STAMP)
    box.ack(40)
    assert box.acked_seq == 1
    assert box.append("climate.record", record(), STAMP) == 2


def test_epoch_is_kept_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    epoch = Outbox(path, "a").epoch
    assert re.fullmatch(r"[0-9a-f]{32}", epoch)
    assert Outbox(path, "a").epoch == epoch


def test_second_writer_process_does_not_break_numbering(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    first, second = Outbox(path, "a"), Outbox(path, "a")
    seqs = [box.append("climate.record", record(), STAMP) for box in (first, second, first)]
    assert seqs == [1, 2, 3]


@pytest.mark.parametrize("garbage", [b"this is not a database at all" * 100, b""])
def test_corrupt_outbox_is_set_aside_and_a_new_epoch_starts(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "o.db"
    old = Outbox(path, "a")
    old_epoch = old.epoch
    old.append("climate.record", record(), STAMP)
    old.close()
    if garbage:
        path.write_bytes(garbage)
    else:  # damage the middle of a real database file
        data = bytearray(path.read_bytes())
        data[100:4096] = b"\xff" * (4096 - 100)
        path.write_bytes(bytes(data))
    box = Outbox(path, "a")
    assert box.reset is not None
    assert box.reset.kept_as is not None
    assert box.reset.kept_as.exists()
    assert box.reset.kept_as.name.startswith("o.db.corrupt-")
    assert box.epoch != old_epoch
    assert box.append("climate.record", record(), STAMP) == 1


def climate_at(minute: int, sensor: str = "no1-a", t: float = 20.0) -> tuple[ClimateRecord, Stamp]:
    stamp = Stamp(
        datetime(2026, 11, 23, 0, 0, tzinfo=UTC) + timedelta(minutes=minute),
        True,
        "b",
        float(minute),
    )
    rec = ClimateRecord(
        storeroom="no1",
        sensor=sensor,
        temperature_c=t,
        humidity_pct=50.0,
        raw_temperature_c=t,
        raw_humidity_pct=50.0,
    )
    return rec, stamp


def test_cap_folds_unsent_climate_records_and_keeps_everything_else(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "a", max_events=100, compaction=[COMPACTION])
    kept_kinds = []
    for minute in range(300):
        for sensor in ("no1-a", "no1-b"):
            rec, stamp = climate_at(minute, sensor, 20.0 + (minute % 10))
            box.append("climate.record", rec, stamp)
        if minute % 50 == 0:
            fault = SensorFault(storeroom="no1", sensor="no1-c", error="timeout")
            box.append("climate.sensor_fault", fault, climate_at(minute)[1])
            kept_kinds.append("climate.sensor_fault")
    assert box.backlog <= 100
    events = [parse_event(json.loads(p.body)) for p in box.pending(0, 10_000, 10**9)]
    kinds = [e.kind for e in events]
    assert kinds.count("climate.sensor_fault") == len(kept_kinds)
    assert "agent.storage_alarm" in kinds
    assert box.stats().storage == "cap_reached"
    # The spans cover every number ever given out, with no hole and no overlap.
    expected = 1
    for e in events:
        assert e.seq == expected
        expected += e.span
    assert expected == box.last_seq + 1
    summaries = [e for e in events if isinstance(e, ClimateSummaryEvent)]
    records = sum(e.payload.records for e in summaries)
    remaining = sum(isinstance(e, ClimateRecordEvent) for e in events)
    assert records + remaining == 600
    assert box.stats().compacted_total == records
    big = next(e.payload.sensors[0] for e in summaries if e.payload.sensors[0].count >= 30)
    assert (big.temperature_min_c, big.temperature_max_c) == (20.0, 29.0)
    assert 20.0 < big.temperature_mean_c < 29.0


def test_already_sent_events_are_never_folded(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "a", max_events=50, compaction=[COMPACTION])
    for minute in range(40):
        box.append("climate.record", *climate_at(minute))
    sent = box.pending(0, 40, 10**9)
    for minute in range(40, 80):
        box.append("climate.record", *climate_at(minute))
    events = [parse_event(json.loads(p.body)) for p in box.pending(0, 10_000, 10**9)]
    assert [e.seq for e in events[:40]] == [p.seq for p in sent]
    assert all(e.kind == "climate.record" for e in events[:40])


def test_acknowledging_a_summary_removes_it_whole(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "a", max_events=10, compaction=[COMPACTION])
    for minute in range(20):
        box.append("climate.record", *climate_at(minute))
    first = box.pending(0, 1, 10**9)[0]
    assert first.span > 1
    box.ack(first.last_seq)
    assert box.pending(0, 1, 10**9)[0].seq == first.last_seq + 1


def test_size_cap_gives_outbox_full_after_compaction_fails(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "a", max_bytes=64 * 1024, compaction=[COMPACTION])
    fault = SensorFault(storeroom="no1", sensor="no1-a", error="x" * 400)
    accepted = 0

    def fill() -> None:
        nonlocal accepted
        for _ in range(10_000):
            box.append("climate.sensor_fault", fault, STAMP)
            accepted += 1

    with pytest.raises(OutboxFull, match="no room"):
        fill()
    assert accepted > 10
    assert len(box.pending(0, 100_000, 10**9)) == accepted, "nothing accepted was lost"


def test_size_cap_is_relieved_by_folding_climate_records(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "a", max_bytes=256 * 1024, compaction=[COMPACTION])
    for minute in range(2000):
        box.append("climate.record", *climate_at(minute))
    assert box.stats().compacted_total > 0
    assert box.backlog < 2000


def test_invalid_event_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "a")
    with pytest.raises(OutboxError, match=r"refusing invalid climate\.record"):
        box.append("climate.record", AgentStarted(version="x"), STAMP)
    assert box.stats().backlog == 0
    assert box.append("climate.record", record(), STAMP) == 1


def test_schema_version_is_recorded_and_newer_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    Outbox(path, "a").close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(OutboxError, match="newer than this agent knows"):
        Outbox(path, "a")


def test_unopenable_outbox_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxError, match="cannot create directory"):
        Outbox(tmp_path / "file" / "outbox.db", "a")


async def test_disk_full_holds_events_in_memory_and_writes_them_when_room_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = AsyncOutbox(tmp_path / "o.db", "a", max_bytes=64 * 1024, compaction=[COMPACTION])
    await box.open()
    fault = SensorFault(storeroom="no1", sensor="no1-a", error="x" * 400)
    stored: list[int] = []
    held = 0
    while held < 10:
        seq = await box.append("climate.sensor_fault", fault, STAMP)
        if seq is None:
            held += 1
        else:
            stored.append(seq)
    assert box.storage == "disk_full"
    assert "holding events in memory" in caplog.text
    assert stored == list(range(1, len(stored) + 1)), "nothing accepted before was lost"

    await box.ack(stored[-1])  # the server took the backlog: room again
    assert await box.flush_held()
    assert str(box.storage) == "ok"
    events = [parse_event(json.loads(p.body)) for p in await box.pending(stored[-1], 10_000, 10**9)]
    kinds = [e.kind for e in events]
    assert kinds[0] == "agent.storage_alarm"
    assert kinds.count("climate.sensor_fault") == held
    assert kinds[-1] == "agent.storage_alarm"
    assert [e.payload.state for e in events if isinstance(e, StorageAlarmEvent)] == [
        "disk_full",
        "recovered",
    ]
    await box.close()


def test_an_outbox_of_the_first_schema_is_migrated_with_its_events(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);
        INSERT INTO meta VALUES ('last_seq', 3), ('acked_seq', 1);
        CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, kind TEXT NOT NULL,
                             occurred_at TEXT NOT NULL, body TEXT NOT NULL);
        PRAGMA user_version = 1;
        """
    )
    for seq in (2, 3):
        body = json.dumps(
            {
                "id": str(uuid.uuid4()),
                "agent_id": "a",
                "seq": seq,
                "kind": "agent.started",
                "occurred_at": "2026-11-23T04:00:00+00:00",
                "clock_synced": True,
                "boot_id": "b",
                "mono_s": 1.0,
                "payload": {"version": "0.1.0"},
            }
        )
        conn.execute(
            "INSERT INTO events VALUES (?, ?, 'agent.started', '2026-11-23T04:00:00+00:00', ?)",
            [seq, str(uuid.uuid4()), body],
        )
    conn.commit()
    conn.close()
    box = Outbox(path, "a")
    assert (box.last_seq, box.acked_seq) == (3, 1)
    assert re.fullmatch(r"[0-9a-f]{32}", box.epoch)
    assert [p.seq for p in box.pending(1, 10, 10**6)] == [2, 3]
    assert box.append("climate.record", record(), STAMP) == 4


async def test_concurrent_flushes_write_each_held_event_once(tmp_path: Path) -> None:
    box = AsyncOutbox(tmp_path / "o.db", "a", max_bytes=64 * 1024, compaction=[COMPACTION])
    await box.open()
    fault = SensorFault(storeroom="no1", sensor="no1-a", error="x" * 400)
    stored: list[int] = []
    held = 0
    while held < 5:
        seq = await box.append("climate.sensor_fault", fault, STAMP)
        if seq is None:
            held += 1
        else:
            stored.append(seq)
    assert box.storage == "disk_full"
    await box.ack(stored[-1])  # room for far more than the few held
    results = await asyncio.gather(
        box.flush_held(),
        box.append("climate.sensor_fault", fault, STAMP),
        box.flush_held(),
    )
    assert results[0] is True, "room again: the first flush writes every held event"
    assert results[2] is True
    assert str(box.storage) == "ok"
    bodies = [json.loads(p.body) for p in await box.pending(stored[-1], 10_000, 10**9)]
    ids = [b["id"] for b in bodies]
    assert len(ids) == len(set(ids))
    seqs = [b["seq"] for b in bodies]
    assert seqs == list(range(stored[-1] + 1, stored[-1] + 1 + len(seqs)))
    await box.close()


def test_a_refused_event_is_replaced_by_a_stand_in_only_if_it_is_ours(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", "station-1")
    for _ in range(3):
        box.append("climate.record", record(), STAMP)
    second = json.loads(box.pending(1, 1, 10**6)[0].body)
    assert not box.replace_refused(2, uuid.uuid4(), "someone else's event", STAMP)
    assert box.replace_refused(2, uuid.UUID(second["id"]), "humidity_pct: too high", STAMP)
    events = [parse_event(json.loads(p.body)) for p in box.pending(0, 100, 10**6)]
    assert [(e.seq, e.kind) for e in events] == [
        (1, "climate.record"),
        (2, "agent.event_refused"),
        (3, "climate.record"),
    ]
    stand_in = events[1].payload
    assert stand_in.refused_id == uuid.UUID(second["id"])  # type: ignore[union-attr]
    assert stand_in.refused_kind == "climate.record"  # type: ignore[union-attr]
    assert box.last_seq == 3
    assert not box.replace_refused(2, uuid.UUID(second["id"]), "again", STAMP)


def test_a_rotten_byte_in_one_event_is_set_aside_and_the_stream_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "a")
    for i in range(5):
        box.append("climate.record", record(20.0 + i), STAMP)
    box.close()
    raw = path.read_bytes()
    needle = b'"temperature_c":22.0'
    where = raw.find(needle)
    assert where > 0, "the third event's body is in the main file after close"
    data = bytearray(raw)
    data[where + len(needle) - 3] ^= 0x01  # 22.0 -> 23.0: still valid JSON, wrong value
    path.write_bytes(bytes(data))
    box = Outbox(path, "a")
    assert box.reset is None
    events = [parse_event(json.loads(p.body)) for p in box.pending(0, 100, 10**6)]
    assert [(e.seq, e.kind) for e in events] == [
        (1, "climate.record"),
        (2, "climate.record"),
        (3, "agent.event_unreadable"),
        (4, "climate.record"),
        (5, "climate.record"),
    ]
    assert events[2].payload.stored_kind == "climate.record"  # type: ignore[union-attr]
    kept = sqlite3.connect(path).execute("SELECT seq, body FROM unreadable").fetchall()
    assert [k[0] for k in kept] == [3]
    assert b"23.0" in kept[0][1], "the damaged original is kept for inspection"
    assert box.stats().unreadable == 1
    assert box.ack(5) == 5


def test_garbage_that_is_not_utf8_is_set_aside_too(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path, "a")
    for _ in range(3):
        box.append("climate.record", record(), STAMP)
    box.db.execute("UPDATE events SET body = CAST(X'7B22FF' AS TEXT), crc = NULL WHERE seq = 2")
    assert [p.seq for p in box.pending(0, 10, 10**6)] == [1, 2, 3]
    assert parse_event(json.loads(box.pending(1, 1, 10**6)[0].body)).kind == (
        "agent.event_unreadable"
    )


@pytest.mark.parametrize("damage", ["emptied", "missing"])
def test_an_emptied_or_deleted_outbox_is_reported_with_what_was_lost(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, "a")
    for _ in range(7):
        box.append("climate.record", record(), STAMP)
    box.ack(2)
    old_epoch = box.epoch
    box.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    if damage == "emptied":
        path.write_bytes(b"")
    else:
        path.unlink()
    box = Outbox(path, "a")
    assert box.reset is not None
    assert box.reset.cause == damage
    assert box.reset.previous_epoch == old_epoch
    assert box.reset.lost_events == 5
    assert box.epoch != old_epoch
    box.close()
    assert Outbox(path, "a").reset is None, "reported once"


def test_a_fresh_outbox_is_not_a_reset(tmp_path: Path) -> None:
    assert Outbox(tmp_path / "outbox.db", "a").reset is None


def test_folded_count_counts_only_what_was_folded(tmp_path: Path) -> None:
    """A full disk makes compaction fail; the count must not rise with the failed attempts."""
    box = Outbox(tmp_path / "o.db", "a", max_bytes=64 * 1024, compaction=[COMPACTION])
    fault = SensorFault(storeroom="no1", sensor="no1-a", error="x" * 400)

    def fill() -> None:
        for minute in range(10_000):
            box.append("climate.record", *climate_at(minute))
            box.append("climate.sensor_fault", fault, STAMP)  # breaks every run: nothing folds

    with pytest.raises(OutboxFull):
        fill()
    for _ in range(5):
        with pytest.raises(OutboxFull):
            box.append("climate.sensor_fault", fault, STAMP)
    stored = (
        sqlite3.connect(tmp_path / "o.db")
        .execute("SELECT value FROM meta WHERE key = 'compacted_total'")
        .fetchone()[0]
    )
    assert box.compacted_total == int(stored) == 0


def test_acknowledgement_and_sending_use_the_primary_key(tmp_path: Path) -> None:
    """Draining must not scan the whole outbox per batch: linear, not quadratic."""
    box = Outbox(tmp_path / "o.db", "a")
    plans = []
    for sql in (
        "DELETE FROM events WHERE seq <= 5 AND seq + span - 1 <= 5",
        "SELECT seq FROM events WHERE seq >= coalesce((SELECT seq FROM events WHERE seq <= 5 "
        "ORDER BY seq DESC LIMIT 1), 0) AND seq + span - 1 > 5 ORDER BY seq LIMIT 10",
    ):
        plans += [row[3] for row in box.db.execute("EXPLAIN QUERY PLAN " + sql).fetchall()]
    assert plans
    assert not [p for p in plans if p.startswith("SCAN")], plans


def test_a_domain_commits_its_state_and_its_event_together(tmp_path: Path) -> None:
    from edge_agent.outbox import DomainSchema, Unit

    def slots_v1(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE slots (slot TEXT PRIMARY KEY, count INTEGER NOT NULL)")
        db.execute("INSERT INTO slots VALUES ('a1', 3)")

    schema = DomainSchema("test-box", [slots_v1])
    box = Outbox(tmp_path / "o.db", "a", schemas=[schema])

    def take(unit: Unit) -> int:
        unit.execute("UPDATE slots SET count = count - 1 WHERE slot = 'a1'")
        return unit.append("climate.record", record(), STAMP)

    def take_then_fail(unit: Unit) -> int:
        take(unit)
        raise RuntimeError("the vend did not happen")

    assert box.transact(take) == 1
    with pytest.raises(RuntimeError):
        box.transact(take_then_fail)
    count = box.db.execute("SELECT count FROM slots").fetchone()[0]
    assert (count, box.last_seq, box.backlog) == (2, 1, 1)
    box.close()
    assert (
        Outbox(tmp_path / "o.db", "a", schemas=[schema])
        .db.execute("SELECT count FROM slots")
        .fetchone()[0]
        == 2
    ), "migrated once"


@pytest.mark.parametrize("emptied", [False, True])
def test_a_new_outbox_is_readable_by_another_process_at_once(tmp_path: Path, emptied: bool) -> None:
    path = tmp_path / "outbox.db"
    if emptied:
        path.write_bytes(b"")
    box = Outbox(path, "a")
    peek = (
        "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
        "\"SELECT count(*) FROM sqlite_master WHERE name = 'meta'\").fetchone()[0])"
    )
    # Another process, as edge-sim inject or sqlite3 in a technician's hands opens it.
    other = subprocess.run([sys.executable, "-c", peek, str(path)], capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert other.stdout.strip() == "1"
    box.append("agent.started", AgentStarted(version="t"), STAMP)
    box.close()
