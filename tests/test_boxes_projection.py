"""The cabinet projection through the real ingest path, on SQLite and PostgreSQL: slots, box
states, faults opened and cleared, card usage kept once; a replay (also across two outbox
epochs) gives the same tables; ``edge-server boxes`` shows it in Chinese or English."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.cabinet.queries import TailCursor, events_since
from server.cabinet.text import describe_event
from server.ingest.core import Ingestor, IngestResult
from server.projections import default_projections, replay
from server.store.db import make_engine, migrate, utc
from server.store.schema import (
    cabinet_box_log,
    cabinet_faults,
    cabinet_slot_log,
    cabinet_slots,
    cabinet_usage,
)
from tests.test_ingest import EPOCH, NOW, opener
from tests.test_server_cli import cli
from tests.test_wire import climate_event

CARD = "ab" * 32
OTHER_CARD = "cd" * 32
TECHNICIAN = "ef" * 32
EXPIRY = "2028-06-30"
CABINET_TABLES = (cabinet_slot_log, cabinet_slots, cabinet_box_log, cabinet_faults, cabinet_usage)


def ev(seq: int, kind: str, payload: dict[str, Any], **over: Any) -> dict[str, Any]:
    agent = over.pop("agent", "station-1")
    return climate_event(seq, kind=kind, payload=payload, agent_id=agent, **over)


def send(
    ingest: Ingestor,
    events: list[dict[str, Any]],
    agent: str = "station-1",
    epoch: str = EPOCH,
    now: datetime = NOW,
) -> IngestResult:
    body = {"v": 1, "agent_id": agent, "epoch": epoch, "sent_at": NOW.isoformat(),
            "events": events}  # fmt: skip
    return ingest.handle(f"fp/v1/county/{agent}/events", json.dumps(body).encode(), now)


def restock(slot: int, quantity: int, batch: str = "B1", box: str = "box-1") -> dict[str, Any]:
    return {"box": box, "slot": slot, "product": "condom-a", "batch": batch, "expiry": EXPIRY,
            "quantity": quantity, "source": "door"}  # fmt: skip


def slot_state(slot: int, state: str, previous: str, count: int, batch: str) -> dict[str, Any]:
    return {"box": "box-1", "slot": slot, "product": "condom-a", "state": state,
            "previous": previous, "count": count, "batch": batch, "expiry": EXPIRY}  # fmt: skip


def dispense(
    slot: int, remaining: int, card: str | None = CARD, transaction: str | None = None,
    box: str = "box-1",
) -> dict[str, Any]:  # fmt: skip
    return {"box": box, "transaction": transaction or str(uuid.uuid4()), "slot": slot,
            "product": "condom-a", "product_group": "condoms", "batch": "B1",
            "expiry": EXPIRY, "quantity": 1, "card": card,
            "mode": "card" if card else "open", "remaining": remaining}  # fmt: skip


def box_day(**over: Any) -> list[dict[str, Any]]:
    """A day at box-1: loaded, two takes, a refusal, a jam, a forced door, the board lost."""
    return [
        ev(1, "cabinet.board", {"box": "box-1", "state": "power_up", "firmware": 3}, **over),
        ev(2, "cabinet.restock", restock(1, 10), **over),
        ev(3, "cabinet.slot", slot_state(1, "ok", "empty", 10, "B1"), **over),
        ev(4, "cabinet.restock", restock(2, 5, "B2"), **over),
        ev(5, "cabinet.dispense", dispense(1, 9), **over),
        ev(6, "cabinet.dispense", dispense(1, 8, OTHER_CARD), **over),
        ev(
            7,
            "cabinet.refused",
            {"box": "box-1", "reason": "quota", "card": CARD, "product_group": "condoms"},
            **over,
        ),
        ev(
            8,
            "cabinet.vend_failed",
            {
                "box": "box-1",
                "transaction": str(uuid.uuid4()),
                "slot": 2,
                "product": "condom-a",
                "batch": "B2",
                "reason": "jammed",
            },
            **over,
        ),
        ev(9, "cabinet.slot", slot_state(2, "faulty", "ok", 5, "B2"), **over),
        ev(10, "cabinet.door", {"box": "box-1", "state": "opened"}, **over),
        ev(
            11,
            "cabinet.tamper",
            {"box": "box-1", "reason": "door_without_card", "open_s": 0},
            **over,
        ),
        ev(12, "cabinet.door", {"box": "box-1", "state": "closed"}, **over),
        ev(13, "cabinet.board", {"box": "box-1", "state": "offline"}, **over),
    ]


def repairs(first: int = 14) -> list[dict[str, Any]]:
    """A technician comes: opens with a card, counts slot 2, the board answers again."""
    lines = [{"batch": "B2", "expiry": EXPIRY, "quantity": 5}]
    return [
        ev(first, "cabinet.door", {"box": "box-1", "state": "opened", "technician": TECHNICIAN}),
        ev(
            first + 1,
            "cabinet.count",
            {
                "box": "box-1",
                "slot": 2,
                "product": "condom-a",
                "expected": 5,
                "counted": 5,
                "lines": lines,
                "technician": TECHNICIAN,
                "source": "door",
            },
        ),
        ev(first + 2, "cabinet.board", {"box": "box-1", "state": "online", "firmware": 3}),
    ]


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The cabinet tables without the surrogate ids and usage rounds a replay renumbers."""
    out = {}
    with engine.connect() as conn:
        for table in CABINET_TABLES:
            columns = [c for c in table.c if c.name not in ("id", "sync_round")]
            rows = conn.execute(sa.select(*columns)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def slots(engine: sa.Engine) -> dict[int, tuple[Any, ...]]:
    s = cabinet_slots
    query = sa.select(s.c.slot, s.c.state, s.c.count, s.c.batch).order_by(s.c.slot)
    with engine.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(query)}


def open_faults(engine: sa.Engine) -> list[tuple[Any, ...]]:
    f = cabinet_faults
    query = sa.select(f.c.kind, f.c.slot, f.c.reason).where(f.c.cleared_at.is_(None))
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(query))


def test_a_day_at_a_box(engine: sa.Engine) -> None:
    result = send(Ingestor(engine, "fp"), box_day())
    assert result.acked_seq == 13
    assert slots(engine) == {1: ("ok", 8, "B1"), 2: ("faulty", 5, "B2")}
    assert open_faults(engine) == [
        ("board_offline", None, "offline"),
        ("tamper", None, "door_without_card"),
        ("vend_failed", 2, "jammed"),
    ]
    with engine.connect() as conn:
        usage = conn.execute(sa.select(cabinet_usage.c.card, cabinet_usage.c.box)).all()
    assert sorted(usage) == [(CARD, "box-1"), (OTHER_CARD, "box-1")]


def test_later_events_clear_the_faults_they_answer(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    send(ingest, box_day())
    send(ingest, repairs())
    assert open_faults(engine) == []
    assert slots(engine)[2] == ("faulty", 5, "B2"), "the state is the agent's to change"


def test_replay_rebuilds_the_same_cabinet(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    send(ingest, box_day())
    send(ingest, repairs())
    live = snapshot(engine)
    assert all(live.values())
    replay(engine, default_projections())
    assert snapshot(engine) == live
    replay(engine, default_projections(), agent_id="station-1")
    assert snapshot(engine) == live, "replay is idempotent"


def test_a_new_outbox_epoch_continues_the_slots_and_replay_agrees(engine: sa.Engine) -> None:
    """The count after a restock depends on the count before it, which the older epoch left:
    replaying either epoch alone must not lose it."""
    ingest = Ingestor(engine, "fp")
    send(ingest, box_day()[:5])  # slot 1: 10 loaded, one taken
    newer = "f1f1f1f1"
    send(ingest, [opener(1), ev(2, "cabinet.restock", restock(1, 5))], epoch=newer)
    ingest.settle_epochs(NOW + timedelta(seconds=121))
    assert slots(engine)[1] == ("ok", 14, "B1")
    live = snapshot(engine)
    replay(engine, default_projections())
    assert slots(engine)[1] == ("ok", 14, "B1")
    assert snapshot(engine) == live


def test_a_take_is_used_once_whatever_repeats_it(engine: sa.Engine) -> None:
    taken = str(uuid.uuid4())
    again = {**dispense(1, 9, transaction=taken), "recovered": True}
    send(Ingestor(engine, "fp"), [
        ev(1, "cabinet.dispense", dispense(1, 9, transaction=taken)),
        ev(2, "cabinet.dispense", again),
        ev(3, "cabinet.dispense", dispense(1, 8, card=None)),
    ])  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(sa.select(cabinet_usage.c.transaction_id)).scalars().all()
    assert rows == [taken], "an open box's take has no card, so no usage"


def test_a_take_before_the_clock_was_set_is_redated(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    early = {"clock_synced": False, "occurred_at": "1970-01-01T00:02:00+00:00",
             "boot_id": "b2", "mono_s": 100.0}  # fmt: skip
    send(ingest, [ev(1, "cabinet.dispense", dispense(1, 9), **early)])
    send(ingest, [ev(2, "cabinet.board", {"box": "box-1", "state": "online"},
                     boot_id="b2", mono_s=400.0)])  # fmt: skip
    with engine.connect() as conn:
        row = conn.execute(sa.select(cabinet_usage.c.occurred_at, cabinet_usage.c.time_corrected))
        at, corrected = row.one()
    assert corrected
    assert utc(at) == datetime(2026, 11, 23, 4, 0, tzinfo=UTC) - timedelta(seconds=300)


@pytest.fixture
def box_store(tmp_path: Path) -> Path:
    """A server.toml whose SQLite store holds one box's recent day, dated from now."""
    db = tmp_path / "data" / "server.db"
    config = tmp_path / "server.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    send(Ingestor(engine, "fp"), box_day(occurred_at=recent))
    engine.dispose()
    return config


def test_boxes_shows_slots_and_open_faults_in_chinese(box_store: Path) -> None:
    out = cli(box_store, "boxes")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "county / station-1 / 药具箱 box-1" in text
    assert "主板：离线" in text
    assert "货道 2 出货失败：卡货" in text
    assert "箱门报警：未刷技术员卡开门" in text
    [slot1] = [line for line in text.splitlines() if line.strip().startswith("1 ")]
    assert slot1.split()[:6] == ["1", "condom-a", "8", "正常", "B1", EXPIRY]
    assert "发放 2  拒绝 1  故障 1" in text


def test_boxes_in_english_and_for_one_site(box_store: Path) -> None:
    out = cli(box_store, "boxes", "--lang", "en")
    assert "slot 2 vend failed: jammed" in out.stdout
    assert "2 dispensed  1 refused  1 failed" in out.stdout
    assert cli(box_store, "boxes", "--site", "elsewhere").stdout.strip() == "暂无药具箱数据。"


def test_a_board_not_ready_to_vend_faults_no_slot(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    send(ingest, box_day())
    before = slots(engine)
    busy = {"box": "box-1", "transaction": str(uuid.uuid4()), "slot": 1, "product": "condom-a",
            "batch": "B1", "reason": "door_open"}  # fmt: skip
    send(ingest, [ev(14, "cabinet.vend_failed", busy)])
    assert slots(engine) == before
    assert ("vend_failed", 1, "door_open") not in open_faults(engine)
    [event] = [e for e in events_since(engine, TailCursor())[0] if e.kind == "not_ready"]
    assert describe_event(event, "zh") == "✗ 货道 1 未出货：柜门未关（货道正常，不计入领取次数）"
