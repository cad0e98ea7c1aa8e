"""The outbox on a real SQLite file: numbering, durability across reopen, limits, acks."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.clock import Stamp
from edge_agent.outbox import MIGRATIONS, Outbox, OutboxError
from edge_agent.wire import AgentStarted, ClimateRecord, parse_event

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


def test_ack_beyond_last_seq_moves_numbering_on(tmp_path: Path) -> None:
    """An outbox started afresh must not reuse numbers the server already holds."""
    box = Outbox(tmp_path / "o.db", "a")
    box.append("climate.record", record(), STAMP)
    box.ack(40)
    assert box.append("climate.record", record(), STAMP) == 41


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
    with pytest.raises(OutboxError, match="cannot open"):
        Outbox(tmp_path / "file" / "outbox.db", "a")
