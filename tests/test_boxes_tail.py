"""``edge-server boxes tail``: box events as the server stores them, in the order they
happened, in Chinese or English, each take or failure on one line with the state it left its
slot in, and never a card."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from server.cabinet.queries import TailCursor, events_since, tail_cursor
from server.cabinet.text import tail_line
from server.ingest.core import Ingestor
from server.store.db import make_engine, migrate
from tests.support import BIN, wait_for
from tests.test_boxes_projection import CARD, EXPIRY, TECHNICIAN, dispense, ev, restock, send

ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)


def state(slot: int, now: str, before: str, count: int) -> dict[str, Any]:
    return {"box": "box-1", "slot": slot, "product": "condom-a", "state": now,
            "previous": before, "count": count, "batch": "B1", "expiry": EXPIRY}  # fmt: skip


class Agent:
    """Events numbered and stamped as the agent writes them: the events of one transaction
    (a slot's new state just before the event that changed it) share one time."""

    def __init__(self, first: int = 1, start: datetime = START) -> None:
        self.seq = first - 1
        self.at = start

    def transaction(self, *events: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        self.at += timedelta(seconds=7)
        out = []
        for kind, payload in events:
            self.seq += 1
            out.append(ev(self.seq, kind, payload, occurred_at=self.at.isoformat()))
        return out


def a_morning(agent: Agent) -> list[dict[str, Any]]:
    """Loading, a take, a refusal, a jam and the take from the next slot that left it low, a
    forced door, a technician, the lost card."""
    box = {"box": "box-1"}
    jam = {**box, "transaction": str(uuid.uuid4()), "slot": 1, "product": "condom-a",
           "batch": "B1", "reason": "jammed", "next_slot": 2}  # fmt: skip
    quota = {**box, "reason": "quota", "card": CARD, "product_group": "condoms"}
    forced = {**box, "reason": "door_without_card", "open_s": 0}
    technician = {**box, "state": "opened", "technician": TECHNICIAN}
    open_take = dispense(2, 0, None)
    t = agent.transaction
    return [
        *t(("cabinet.board", {**box, "state": "online", "firmware": 3})),
        *t(("cabinet.slot", state(1, "ok", "empty", 10)), ("cabinet.restock", restock(1, 10))),
        *t(("cabinet.slot", state(2, "low", "empty", 2)), ("cabinet.restock", restock(2, 2))),
        *t(("cabinet.dispense", dispense(1, 9))),
        *t(("cabinet.refused", quota)),
        *t(("cabinet.slot", state(1, "faulty", "ok", 9)), ("cabinet.vend_failed", jam)),
        *t(("cabinet.dispense", dispense(2, 1))),
        *t(("cabinet.door", {**box, "state": "opened"}), ("cabinet.tamper", forced)),
        *t(("cabinet.door", {**box, "state": "closed"})),
        *t(("cabinet.door", technician)),
        *t(("cabinet.slot", state(2, "empty", "low", 0)), ("cabinet.dispense", open_take)),
        *t(("cabinet.refused", {**box, "reason": "lost", "card": CARD})),
    ]


EXPECTED_ZH = [
    "主板：在线",
    "货道 1 装入 condom-a 10 件，批号 B1，有效期至 2028-06-30，现有 10（正常）",
    "货道 2 装入 condom-a 2 件，批号 B1，有效期至 2028-06-30，现有 2（库存偏少）",
    "✓ 发放 condom-a 1 件：货道 1，批号 B1，剩 9",
    "拒绝（condoms）：本期已领完",
    "✗ 货道 1 出货失败：卡货，货道已标为故障（不计入领取次数）",
    "✓ 发放 condom-a 1 件：货道 2，批号 B1，剩 1",
    "箱门：开",
    "⚠ 箱门报警：未刷技术员卡开门",
    "箱门：关",
    "箱门：开（技术员刷卡）",
    "✓ 发放 condom-a 1 件：货道 2，批号 B1，剩 0（缺货）",
    "拒绝：此卡已挂失",
]


def lines(engine: sa.Engine, cursor: TailCursor, lang: str) -> tuple[list[str], TailCursor]:
    found, cursor = events_since(engine, cursor)
    return [tail_line(e, "en" if lang == "en" else "zh", ZONE) for e in found], cursor


def test_a_morning_at_a_box_line_by_line(engine: sa.Engine) -> None:
    start = tail_cursor(engine)
    assert start == TailCursor(0, 0)
    send(Ingestor(engine, "fp"), a_morning(Agent()))
    shown, cursor = lines(engine, start, "zh")
    assert [line.split("药具箱 box-1", 1)[1].strip() for line in shown] == EXPECTED_ZH
    assert shown[0].startswith("2026-11-23 12:00:07  county  药具箱 box-1 ")
    assert lines(engine, cursor, "zh")[0] == [], "each event is shown once"
    assert tail_cursor(engine) == cursor


def test_in_english_and_only_what_is_new(engine: sa.Engine) -> None:
    agent = Agent()
    ingest = Ingestor(engine, "fp")
    send(ingest, a_morning(agent))
    cursor = tail_cursor(engine)
    more = agent.transaction(("cabinet.refused", {"box": "box-1", "reason": "unregistered"}),
                             ("cabinet.board", {"box": "box-1", "state": "offline"}))  # fmt: skip
    send(ingest, more)
    shown, _ = lines(engine, cursor, "en")
    assert [line.split("box box-1", 1)[1].strip() for line in shown] == [
        "refused: card not registered",
        "board: offline",
    ]
    everything, _ = lines(engine, TailCursor(), "en")
    assert any(
        "✗ slot 1 vend failed: jammed; the slot is marked faulty (not counted)" in line
        for line in everything
    )
    assert any("✓ dispensed condom-a x1: slot 2, batch B1, 0 left (empty)" in line
               for line in everything)  # fmt: skip
    assert any("⚠ tamper: door opened without a card" in line for line in everything)


def test_never_a_card(engine: sa.Engine) -> None:
    send(Ingestor(engine, "fp"), a_morning(Agent()))
    shown = "\n".join(lines(engine, TailCursor(), "zh")[0] + lines(engine, TailCursor(), "en")[0])
    for card in (CARD, TECHNICIAN):
        assert card[:6] not in shown


def test_the_command_prints_what_arrives_after_it_started(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    config = tmp_path / "server.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    ingest = Ingestor(engine, "fp")
    agent = Agent(start=datetime.now(UTC) - timedelta(minutes=10))
    send(ingest, agent.transaction(("cabinet.refused", {"box": "box-1", "reason": "misread"})))
    out = tmp_path / "tail.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [str(BIN / "edge-server"), "--config", str(config), "boxes", "tail",
             "--lang", "en", "--interval", "0.1"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # The tail starts after what is stored: send one event after another until one shows.
        def started() -> bool:
            if "board: online" in out.read_text():
                return True
            online = {"box": "box-1", "state": "online", "firmware": 3}
            send(ingest, agent.transaction(("cabinet.board", online)))
            return False

        wait_for(started, 30, interval=0.3, what="the tail to show a new event")
        send(ingest, a_morning(agent))
        wait_for(lambda: "refused: card reported lost" in out.read_text(), 30,
                 what="the morning's last event")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)
    text = out.read_text()
    assert "card not read" not in text, "what was stored before the tail started"
    assert "✗ slot 1 vend failed: jammed" in text
    assert "Traceback" not in text
    engine.dispose()
