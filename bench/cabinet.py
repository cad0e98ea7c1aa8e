"""Cabinet benchmark: from a card swiped to the vend frame on the board's line.

Run from the repository root with the project installed::

    python bench/cabinet.py

Real parts: the agent's box service with its outbox file (SQLite, ``synchronous=FULL``), the
simulated board and card reader on pseudo-terminals (no wire delay, so the figures are software
time on this machine), a card registry of 100,000 cards and a year of their usage (12 takes
each, 1.2 million rows). The box holds one product, so a swipe vends at once.

Figures (``figure: NAME VALUE UNIT``):

- ``swipe_to_vend_p50_ms``, ``swipe_to_vend_p99_ms``: the card reader's line written → the VEND
  frame received by the board, over 400 swipes of different registered cards: decoding, the
  pseudonym, the registry and usage look-up, the quota, the intent committed (fsync) and the
  frame sent. The motor's time is not in it.
- ``swipe_to_vend_max_ms``: the slowest of them.
- ``registry_sync_100k_s``: applying a full registry of 100,000 cards (one ``cards.sync``).
- ``usage_rows``: the usage rows in the outbox file while measuring.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from edge_agent.cabinet import records, store
from edge_agent.cabinet.config import BoxConfig, CabinetSection
from edge_agent.cabinet.service import BoxService
from edge_agent.clock import Clock
from edge_agent.drivers.serial_line import SerialLine
from edge_agent.outbox import AsyncOutbox, Unit
from edge_agent.pseudonym import CardKey, of_uid
from edge_agent.wire import CardEntry, CardsSyncCommand
from simulators.cabinet import BoardSettings, BoardSim, ReaderSettings, ReaderSim, SlotSim

CARDS = 100_000
TAKES_PER_CARD = 12
SWIPES = 400
KEY = CardKey(bytes(range(32)))


def uid(i: int) -> str:
    return f"{0x04000000 + i:08X}"


def fill_usage(unit: Unit, cards: list[str], now: datetime) -> None:
    """A year of takes, the latest 31 days ago, so every card may take again now."""
    rows = (
        (str(uuid.uuid4()), c, "condoms", 1, (now - timedelta(days=31 + 30 * k)).isoformat(), "b")
        for c in cards
        for k in range(TAKES_PER_CARD)
    )
    for row in rows:
        unit.execute(
            "INSERT INTO cabinet_usage (txn, card, product_group, quantity, at, box) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-cabinet-"))
    (root / "card.key").write_text(KEY.secret.hex())
    outbox = AsyncOutbox(root / "outbox.db", "bench", schemas=[store.SCHEMA])
    await outbox.open()
    cards = [of_uid(KEY, uid(i)) for i in range(CARDS)]
    sync = CardsSyncCommand(
        version_from=0, version=1, full=True, cards=[CardEntry(card=c) for c in cards]
    )
    started = time.perf_counter()
    await outbox.transact(lambda unit: store.apply_sync(unit, sync))
    print(f"figure: registry_sync_100k_s {time.perf_counter() - started:.2f} s", flush=True)
    now = datetime.now(UTC)
    await outbox.transact(lambda unit: fill_usage(unit, cards, now))
    rows = await outbox.transact(
        lambda unit: unit.execute("SELECT count(*) FROM cabinet_usage").fetchone()[0]
    )

    board = BoardSim(
        BoardSettings(
            link=root / "board",
            turn_s=0.01,
            event_retry_s=0.1,
            slots=[SlotSim(label="condom", capacity=999, count=999)],
        )
    )
    board.start()
    reader = ReaderSim(ReaderSettings(link=root / "reader"))
    reader.start()
    box = BoxConfig.model_validate(
        {
            "id": "box-1",
            "board": "board",
            "reader": {"bus": "reader"},
            "products": ["condom"],
            "slots": [{"number": 1, "product": "condom", "capacity": 999}],
        }
    )
    cabinet = CabinetSection.model_validate(
        {
            "card_key_file": str(root / "card.key"),
            "products": [{"id": "condom", "name": "避孕套", "group": "condoms"}],
            "boxes": [box.model_dump()],
        }
    )
    service = BoxService(
        box,
        cabinet,
        site="bench",
        board_line=SerialLine(str(root / "board")),
        reader_line=SerialLine(str(root / "reader")),
        key=KEY,
        outbox=outbox,
        clock=Clock(lambda: True),
    )
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 30)

    def load(books: records.Books, unit: Unit, stamp: object, today: date) -> object:
        return records.restocked(books, unit, 1, "B1", date(2030, 1, 1), 999, stamp, today)  # type: ignore[arg-type]

    await service.manual(load)

    vend_seen = asyncio.Event()
    start_vend = board._start_vend

    def hooked(seq: int, slot: int, detect: bool) -> None:
        start_vend(seq, slot, detect)
        vend_seen.set()

    board._start_vend = hooked  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    for i in range(SWIPES):
        vend_seen.clear()
        t0 = loop.time()
        reader.swipe(uid(i * 97 % CARDS))
        await asyncio.wait_for(vend_seen.wait(), 10)
        latencies.append((board.truth.vends[-1].started - t0) * 1000)
        while service.take.busy or service._vend is not None:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.002)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"figure: swipe_to_vend_p50_ms {statistics.median(latencies):.1f} ms")
    print(f"figure: swipe_to_vend_p99_ms {p99:.1f} ms")
    print(f"figure: swipe_to_vend_max_ms {latencies[-1]:.1f} ms")
    print(f"figure: usage_rows {rows} rows")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await board.stop()
    await reader.stop()
    await outbox.close()


if __name__ == "__main__":
    asyncio.run(main())
