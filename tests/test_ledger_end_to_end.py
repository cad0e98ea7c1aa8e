"""A month at one village's box, end to end, on SQLite and on PostgreSQL: the county receives,
inspects and sends stock to a township; a restock is approved, reaches the box's agent over a
real Mosquitto, and a technician loads it through the door of a simulated board (a real
pseudo-terminal); villagers take, a slot jams, a unit is removed as damaged and another
disappears unrecorded until a count finds it; the township counts its storeroom short. Then the
books equal the shelves, place by place, and a replay of the journal rebuilds the same books.

The month is compressed: the events carry the real times they happen at."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.ledger.projection import LedgerProjection
from server.projections import replay
from server.store.schema import commands, ledger_discrepancies, ledger_stock
from simulators.cabinet import BoardSettings, BoardSim, ReaderSettings, ReaderSim, SlotSim
from tests.support import BIN, Broker, Processes, eventually
from tests.test_cabinet_end_to_end import agent_toml

VILLAGERS = [f"04A1B2{n:02X}" for n in range(0xC3, 0xC9)]
TECHNICIAN = "0A0B0C0D"
AGENT = "village-1"
BOX = f"box-{AGENT}"
BY = ("--by", "王会计")
EXPIRY = "2029-06-30"


@dataclass
class Month:
    root: Path
    engine: sa.Engine
    broker: Broker
    processes: Processes
    board: BoardSim
    reader: ReaderSim
    entered: list[tuple[str, ...]] = field(default_factory=list)

    async def server(self, *args: str) -> str:
        return await _run("edge-server", self.root / "server.toml", *args)

    async def agent(self, *args: str) -> str:
        return await _run("edge-agent", self.root / f"{AGENT}.toml", *args)

    async def enter(self, *args: str) -> str:
        """A county entry, as staff type it; refused entries fail the test."""
        said = await self.server(*args, *BY)
        assert "已记账" in said, said
        return said

    def scalar(self, query: sa.Executable) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def held(self, site: str, place: str, slot: int = 0, zone: str | None = None) -> int:
        s = ledger_stock
        where = [s.c.site == site, s.c.place == place, s.c.slot == slot]
        if zone is not None:
            where.append(s.c.zone == zone)
        found = self.scalar(sa.select(sa.func.sum(s.c.quantity)).where(*where))
        return int(found or 0)

    def books(self) -> dict[tuple[str, str, int, str, str, str], int]:
        s = ledger_stock
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(s).where(s.c.quantity != 0)).all()
        return {(r.site, r.place, r.slot, r.zone, r.product, r.batch): r.quantity for r in rows}

    async def until_slot(self, slot: int, quantity: int, what: str) -> None:
        await eventually(lambda: self.held(AGENT, BOX, slot) == quantity, within_s=30, what=what)


async def _run(program: str, config: Path, *args: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / program), "--config", str(config), *args],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
async def month(
    tmp_path: Path, blank_engine: sa.Engine, broker: Broker, processes: Processes
) -> AsyncIterator[Month]:
    url = blank_engine.url.render_as_string(hide_password=False)
    (tmp_path / "server.toml").write_text(
        f"""
[database]
url = "{url}"
[mqtt]
port = {broker.port}
[cards]
key_file = "{tmp_path / "county.key"}"
sync_interval_s = 1
"""
    )
    (tmp_path / f"{AGENT}.toml").write_text(agent_toml(tmp_path, AGENT, broker))
    board = BoardSim(
        BoardSettings(
            link=tmp_path / f"{AGENT}-board",
            turn_s=0.1,
            event_retry_s=0.1,
            state_file=tmp_path / f"{AGENT}-board.json",
            slots=[SlotSim(label="condom-10", capacity=20, count=0)] * 2,
        )
    )
    board.start()
    reader = ReaderSim(ReaderSettings(link=tmp_path / f"{AGENT}-reader"))
    reader.start()
    try:
        yield Month(tmp_path, blank_engine, broker, processes, board, reader)
    finally:
        processes.stop_all()
        await board.stop()
        await reader.stop()


async def county_and_cards(m: Month) -> None:
    await m.server("db", "upgrade")
    await m.server("cards", "make-key", "--out", str(m.root / "county.key"))
    (m.root / "county.key").chmod(0o600)
    for uid in VILLAGERS:
        await m.server("cards", "issue", "--uid", uid)
    await m.server("cards", "issue", "--uid", TECHNICIAN, "--role", "technician")
    for entry in (
        ("product", "add", "condom-10", "--name-zh", "避孕套10只", "--name-en", "Condoms, 10",
         "--storeroom", "no1", "--group", "condoms"),
        ("site", "add", "city", "--name", "市", "--level", "city"),
        ("site", "add", "county", "--name", "县站", "--level", "county", "--parent", "city"),
        ("site", "add", "town", "--name", "镇站", "--level", "township", "--parent", "county"),
        ("site", "add", AGENT, "--name", "一村", "--level", "village", "--parent", "town"),
    ):  # fmt: skip
        await m.enter(*entry)


async def approve(m: Month, slot: int, quantity: int, orders: int) -> None:
    """A restock approved at the county, until the box's agent has taken the order."""
    await m.enter(
        "restock", "approve", f"{AGENT}:{BOX}#{slot}", "B-A", str(quantity), "--from", "town:no1"
    )
    c = commands
    taken = (
        sa.select(sa.func.count())
        .select_from(c)
        .where(c.c.agent_id == AGENT, c.c.kind == "restock.order", c.c.result_ok.is_(True))
    )
    await eventually(
        lambda: m.scalar(taken) == orders, within_s=30, what=f"order {orders} at the agent"
    )


async def take(m: Month, uid: str, fallen: int) -> None:
    """A villager swipes and a unit falls (the box has one product: no button)."""
    m.reader.swipe(uid)
    await eventually(
        lambda: m.board.truth.total_dropped() == fallen, within_s=15, what=f"unit {fallen} fell"
    )
    await eventually(lambda: not m.board.vending, what="the motor stopped")
    # The agent ignores a swipe while its vend is unsettled; once the take is in the books, the
    # agent has recorded the vend's result and the next villager can swipe.
    await eventually(
        lambda: m.held("", "dispensed") == fallen, within_s=30, what=f"take {fallen} booked"
    )


async def test_a_month_at_one_box_leaves_the_books_equal_to_the_shelves(month: Month) -> None:
    m = month
    await county_and_cards(m)
    m.processes.start("server", "edge-server", "--config", str(m.root / "server.toml"), "run")
    m.processes.start("agent", "edge-agent", "--config", str(m.root / f"{AGENT}.toml"), "run")

    # Day 1: the annual allocation arrives at the county station; its inspection finds ten
    # damaged, which are destroyed.
    await m.enter("receive", "county", "no1", "condom-10", "B-A", "200", "--expiry", EXPIRY)
    await m.enter("inspect", "county", "no1", "condom-10", "B-A", "190", "--result", "qualified")
    await m.enter("inspect", "county", "no1", "condom-10", "B-A", "10", "--result", "unqualified")
    await m.enter("dispose", "county", "no1", "condom-10", "B-A", "10", "--reason", "包装破损")
    # Day 2: the township's share.
    await m.enter("transfer", "county:no1", "town:no1", "condom-10", "B-A", "100")

    # Day 3: once the box's agent has reported its slots, two restocks are approved; each goes
    # to the village in transit with the technician, and reaches the agent as an order.
    slots = sa.text("SELECT count(*) FROM cabinet_slots WHERE agent_id = :a").bindparams(a=AGENT)
    await eventually(lambda: m.scalar(slots) == 2, within_s=60, what="the box's slots reported")
    await approve(m, 1, 12, orders=1)
    await approve(m, 2, 8, orders=2)
    assert (m.held("town", "no1"), m.held(AGENT, "transit")) == (80, 20)

    # The technician opens the box with the card, loads what the orders say, and confirms.
    m.reader.swipe(TECHNICIAN)
    await eventually(lambda: m.board.unlocked, what="the door unlocked")
    assert m.board.door_open()
    assert (m.board.refill(1, 12), m.board.refill(2, 8)) == (12, 8)
    assert m.board.door_close()
    await eventually(lambda: m.board.display[0] == "补货已完成?", what="the confirmation asked")
    assert m.board.press("ok")
    await m.until_slot(1, 12, "slot 1 loaded in the books")
    await m.until_slot(2, 8, "slot 2 loaded in the books")
    assert m.held(AGENT, "transit") == 0

    # Days 4 to 20: villagers take; one take jams slot 1 and its unit comes from slot 2.
    for n, uid in enumerate(VILLAGERS, start=1):
        if n == 4:
            m.board.jam(1)
        await take(m, uid, n)

    # Day 21: the technician takes the jammed unit out as damaged; a unit leaves slot 2 by
    # hand, unrecorded, and the technician's count of slot 2 finds it missing.
    assert m.board.take_out(1, 1) == 1
    await m.agent("cabinet", "remove", BOX, "1", "1", "damaged")
    assert m.board.take_out(2, 1) == 1
    await m.agent("cabinet", "count", BOX, "2", f"B-A:{EXPIRY}:{m.board.slots[1].count}")
    await m.until_slot(2, m.board.slots[1].count, "slot 2's count in the books")
    await eventually(
        lambda: m.held(AGENT, "transit", zone="returned") == 1, within_s=30, what="the removal"
    )

    # Day 22: the damaged unit goes back to the township, is found unqualified and destroyed.
    await m.enter("return", f"{AGENT}:transit", "town:no1", "condom-10", "B-A", "1",
                  "--reason", "卡货损坏")  # fmt: skip
    await m.enter("inspect", "town", "no1", "condom-10", "B-A", "1", "--returned",
                  "--result", "unqualified")  # fmt: skip
    await m.enter("dispose", "town", "no1", "condom-10", "B-A", "1", "--reason", "损坏")

    # Day 28: the township's quarterly stocktake counts two fewer than its books.
    counted = await m.enter("stocktake", "town:no1", "--line", "condom-10:B-A:78")
    assert "1 个批号有差异" in counted

    # Day 30: the books are the shelves.
    for slot in (1, 2):
        assert m.held(AGENT, BOX, slot) == m.board.slots[slot - 1].count, f"slot {slot}"
    assert m.held("town", "no1") == 78
    assert m.held("county", "no1", zone="qualified") == 90
    assert m.held("county", "no1", zone="unqualified") == 0
    assert m.held("", "disposed") == 11
    assert m.held(AGENT, "transit") == 0
    assert m.held("", "dispensed") == m.board.truth.total_dropped() == len(VILLAGERS)
    assert m.held("", "variance") == 3, "one unit lost at the box, two at the township"
    assert sum(m.books().values()) == 0, "every unit came from somewhere"
    assert m.scalar(sa.select(sa.func.count()).select_from(ledger_discrepancies)) == 0
    assert "78" in await m.server("stock", "--site", "town")

    # The journal rebuilds the same books, and its chains hold.
    m.processes.stop_all()
    kept = m.books()
    replay(m.engine, [LedgerProjection()])
    assert m.books() == kept
    await m.server("verify")
