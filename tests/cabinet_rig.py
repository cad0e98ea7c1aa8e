"""A dispensing box on a bench: the agent's box service, a real outbox file, and the simulated
board and card reader on real pseudo-terminals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from edge_agent.cabinet import records, store
from edge_agent.cabinet.config import BoxConfig, CabinetSection
from edge_agent.cabinet.service import BoxService
from edge_agent.clock import Clock
from edge_agent.drivers.serial_line import SerialLine
from edge_agent.outbox import AsyncOutbox, Unit
from edge_agent.pseudonym import CardKey, of_uid
from edge_agent.wire import CardEntry, CardsSyncCommand, parse_event
from simulators.cabinet import BoardSettings, BoardSim, ReaderSettings, ReaderSim, SlotSim
from tests.support import eventually

KEY = CardKey(bytes(range(32)))
VILLAGER = "04A1B2C3"
NEIGHBOUR = "04A1B2C4"
LOST = "04DEAD01"
STRANGER = "04BEEF02"
TECHNICIAN = "0A0B0C0D"
EXPIRY = date(2029, 6, 30)


def card(uid: str) -> str:
    return of_uid(KEY, uid)


def registry(version: int = 1) -> CardsSyncCommand:
    return CardsSyncCommand(
        version_from=0,
        version=version,
        full=True,
        cards=[
            CardEntry(card=card(VILLAGER)),
            CardEntry(card=card(NEIGHBOUR)),
            CardEntry(card=card(LOST), status="lost"),
            CardEntry(card=card(TECHNICIAN), role="technician"),
        ],
    )


@dataclass
class Rig:
    root: Path
    box: BoxConfig
    cabinet: CabinetSection
    board: BoardSim
    reader: ReaderSim | None
    outbox: AsyncOutbox
    service: BoxService
    task: asyncio.Task[None]
    clock: Clock = field(default_factory=lambda: Clock(lambda: True))
    #: Added to the monotonic clock the service sees: a test "waits" out a repeat window.
    skipped_s: float = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped_s

    def later(self, seconds: float = 1.0) -> None:
        self.skipped_s += seconds

    async def events(self, kind: str | None = None) -> list[Any]:
        pending = await self.outbox.pending(0, 100_000, 10**9)
        parsed = [parse_event(json.loads(p.body)) for p in pending]
        return [e for e in parsed if kind is None or e.kind == kind]

    async def wait_event(self, kind: str, count: int = 1, within_s: float = 15) -> list[Any]:
        found: list[Any] = []

        async def enough() -> bool:
            found[:] = await self.events(kind)
            return len(found) >= count

        await eventually(enough, within_s=within_s, what=f"{count} {kind} event(s)")
        return found

    async def restart_agent(self) -> None:
        """The agent's process dies and starts again (the board keeps its power)."""
        await stop(self.task)
        await self.service_line_close()
        self.service = make_service(self)
        self.task = asyncio.create_task(self.service.run())
        await eventually(self.service.ready.is_set, within_s=15, what="box ready again")

    async def service_line_close(self) -> None:
        await self.service._board_line.close()
        if self.service._reader_line is not None:
            await self.service._reader_line.close()

    async def restock(self, slot: int, quantity: int, batch: str = "B1") -> None:
        def work(books: records.Books, unit: Unit, stamp: Any, today: date) -> Any:
            return records.restocked(books, unit, slot, batch, EXPIRY, quantity, stamp, today)

        await self.service.manual(work)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def make_service(rig: Rig) -> BoxService:
    reader_line = SerialLine(str(rig.root / "reader")) if rig.reader is not None else None
    return BoxService(
        rig.box,
        rig.cabinet,
        site="village",
        board_line=SerialLine(str(rig.root / "board")),
        reader_line=reader_line,
        key=KEY,
        outbox=rig.outbox,
        clock=rig.clock,
        monotonic=rig.monotonic,
    )


@contextlib.asynccontextmanager
async def box_rig(
    root: Path,
    *,
    slots: list[tuple[str, int]] = (("condom", 5),),  # type: ignore[assignment]
    products: list[str] | None = None,
    mode: str = "card",
    stock: bool = True,
    turn_s: float = 0.05,
    reader_format: str = "hex-line",
    **box: Any,
) -> AsyncIterator[Rig]:
    """A box with ``slots`` (product, units) loaded; card mode reads hex lines."""
    key_file = root / "card.key"
    key_file.write_text(KEY.secret.hex())
    board = BoardSim(
        BoardSettings(
            link=root / "board",
            turn_s=turn_s,
            event_retry_s=0.1,
            state_file=root / "board-memory.json",
            slots=[SlotSim(label=p, capacity=20, count=n) for p, n in slots],
        )
    )
    board.start()
    reader = (
        ReaderSim(ReaderSettings(link=root / "reader", format=reader_format))
        if mode == "card"
        else None
    )
    if reader is not None:
        reader.start()
    names = {"condom": "避孕套", "pill": "避孕药"}
    groups = {"condom": "condoms", "pill": "pills"}
    products = products or sorted({p for p, _ in slots})
    config = BoxConfig.model_validate(
        {
            "id": "box-1",
            "mode": mode,
            "board": "board",
            "reader": (
                {"bus": "reader", "repeat_window_s": 0.5, "format": reader_format}
                if mode == "card"
                else None
            ),
            "products": products,
            "slots": [
                {"number": i, "product": p, "capacity": 20} for i, (p, _) in enumerate(slots, 1)
            ],
            **box,
        }
    )
    cabinet = CabinetSection.model_validate(
        {
            "card_key_file": str(key_file),
            "products": [{"id": p, "name": names[p], "group": groups[p]} for p in products],
            "boxes": [config.model_dump()],
        }
    )
    outbox = AsyncOutbox(root / "outbox.db", "agent-1", schemas=[store.SCHEMA])
    await outbox.open()
    await outbox.transact(lambda unit: store.apply_sync(unit, registry()))
    rig = Rig(root, config, cabinet, board, reader, outbox, None, None)  # type: ignore[arg-type]
    rig.service = make_service(rig)
    rig.task = asyncio.create_task(rig.service.run())
    try:
        await eventually(rig.service.ready.is_set, within_s=15, what="box ready")
        if stock:
            for number, (_, units) in enumerate(slots, 1):
                if units:
                    await rig.restock(number, units)
        yield rig
    finally:
        await stop(rig.task)
        await rig.service_line_close()
        await board.stop()
        if reader is not None:
            await reader.stop()
        await outbox.close()


def transaction_ids(events: list[Any]) -> list[uuid.UUID]:
    return [e.payload.transaction for e in events]
