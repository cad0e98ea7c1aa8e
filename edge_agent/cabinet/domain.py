"""The cabinet as the agent sees it: the site's boxes, the commands it applies (the card
registry, usage on other boxes, restock orders) and what a technician types on site."""

from __future__ import annotations

import asyncio
import logging
import shlex
from datetime import date, timedelta
from typing import Any

from edge_agent.buses import Buses
from edge_agent.cabinet import records, stock, store
from edge_agent.cabinet.config import CabinetSection
from edge_agent.cabinet.service import BoxService
from edge_agent.clock import Clock, Stamp
from edge_agent.commands import Applier
from edge_agent.outbox import AsyncOutbox, OutboxError, Unit
from edge_agent.pseudonym import CardKey, load_key
from edge_agent.wire import (
    CardsSyncCommand,
    CardsUsageCommand,
    CommandBody,
    RestockOrderCommand,
)

log = logging.getLogger(__name__)

REMOVAL_REASONS = ("expired", "damaged", "recalled", "other")


class Cabinet:
    """Every box of the site; ``cards_version`` is what the agent's status reports."""

    def __init__(
        self,
        section: CabinetSection,
        *,
        site: str,
        buses: Buses,
        outbox: AsyncOutbox,
        clock: Clock,
    ) -> None:
        self.section = section
        self._outbox = outbox
        self._clock = clock
        key: CardKey | None = None
        if any(box.mode == "card" for box in section.boxes):
            assert section.card_key_file is not None  # the configuration insists
            key = load_key(section.card_key_file)
            log.info("card key %s loaded", key.key_id)
        self.boxes = {
            box.id: BoxService(
                box,
                section,
                site=site,
                board_line=buses.line(box.board),
                reader_line=buses.line(box.reader.bus) if box.reader else None,
                key=key,
                outbox=outbox,
                clock=clock,
            )
            for box in section.boxes
        }
        self.cards_version: int | None = None

    async def run(self) -> None:
        if not self.boxes:
            return
        self.cards_version = await self._outbox.transact(store.version, what="cabinet")
        async with asyncio.TaskGroup() as group:
            for box_id, service in self.boxes.items():
                group.create_task(service.run(), name=f"box-{box_id}")

    # --- commands from the server ---------------------------------------------------------

    def appliers(self) -> dict[str, Applier]:
        if not self.boxes:
            return {}
        return {
            "cards.sync": self._sync,
            "cards.usage": self._usage,
            "restock.order": self._order,
        }

    def _sync(self, unit: Unit, body: CommandBody) -> tuple[bool, str]:
        assert isinstance(body, CardsSyncCommand)
        return store.apply_sync(unit, body)

    def applied(self, body: CommandBody) -> None:
        """After the commit: the version the status reports is the one the file holds."""
        if isinstance(body, CardsSyncCommand):
            self.cards_version = max(self.cards_version or 0, body.version)

    def _usage(self, unit: Unit, body: CommandBody) -> tuple[bool, str]:
        assert isinstance(body, CardsUsageCommand)
        # Takes older than any period count for nothing: the table stays bounded.
        store.forget_usage_before(unit, self._clock.stamp().occurred_at - timedelta(days=367))
        return store.apply_usage(unit, body)

    def _order(self, unit: Unit, body: CommandBody) -> tuple[bool, str]:
        assert isinstance(body, RestockOrderCommand)
        service = self.boxes.get(body.box)
        if service is None:
            return False, f"no box {body.box!r} at this agent"
        slot = next((s for s in service.box.slots if s.number == body.slot), None)
        if slot is None:
            return False, f"box {body.box} has no slot {body.slot}"
        if slot.product != body.product:
            return False, f"slot {body.slot} of {body.box} holds {slot.product}, not {body.product}"
        if body.quantity > slot.capacity:
            return False, f"slot {body.slot} of {body.box} holds at most {slot.capacity}"
        store.store_order(unit, body, self._clock.stamp().occurred_at)
        return True, f"restock order {body.order_id} kept for box {body.box} slot {body.slot}"

    # --- what a technician types on site (edge-agent cabinet …) ---------------------------

    async def answer(self, line: str) -> str:
        """``restock BOX SLOT BATCH EXPIRY QUANTITY``, ``remove BOX SLOT QUANTITY REASON``,
        ``count BOX SLOT [BATCH:EXPIRY:QUANTITY …]`` or ``status``; one line back."""
        try:
            words = shlex.split(line)
        except ValueError:
            return "error cannot read the request"
        if words == ["status"]:
            return "ok " + self.describe()
        if len(words) < 3:
            return "error expected: restock|remove|count BOX SLOT …"
        verb, box_id, slot_text, *rest = words
        service = self.boxes.get(box_id)
        if service is None:
            return f"error unknown box {box_id!r} (known: {', '.join(self.boxes) or 'none'})"
        try:
            number = _whole(slot_text, "SLOT")
            work = _manual(verb, number, rest)
            if number not in service.books_slots():
                return f"error box {box_id} has no slot {number}"
            slot = await service.manual(work)
        except (ValueError, stock.StockError) as exc:
            return f"error {exc}"
        except OutboxError as exc:
            log.error("manual %s on %s not recorded: %s", verb, box_id, exc)
            return "error not recorded: the outbox refused it (see the agent's log)"
        return f"ok slot {number} of {box_id} now holds {slot.count}"

    def describe(self) -> str:
        parts = []
        for box_id, service in self.boxes.items():
            slots = ", ".join(
                f"{n}:{s.product}={s.count}{'!' + s.fault if s.fault else ''}"
                for n, s in sorted(service.books_slots().items())
            )
            state = "online" if service.online else "offline"
            parts.append(f"{box_id} ({state}) {slots}")
        return "; ".join(parts) or "no boxes"


def _manual(verb: str, number: int, rest: list[str]) -> Any:
    if verb == "restock":
        if len(rest) != 3:
            raise ValueError("restock BOX SLOT BATCH EXPIRY(YYYY-MM-DD) QUANTITY")
        batch, expiry, quantity = rest[0], _date(rest[1], "EXPIRY"), _whole(rest[2], "QUANTITY")

        def restock(books: records.Books, unit: Unit, stamp: Stamp, today: date) -> stock.Slot:
            return records.restocked(books, unit, number, batch, expiry, quantity, stamp, today)

        return restock
    if verb == "remove":
        if len(rest) != 2 or rest[1] not in REMOVAL_REASONS:
            raise ValueError(f"remove BOX SLOT QUANTITY {'|'.join(REMOVAL_REASONS)}")
        quantity, reason = _whole(rest[0], "QUANTITY"), rest[1]

        def take_out(books: records.Books, unit: Unit, stamp: Stamp, today: date) -> stock.Slot:
            return records.removed(books, unit, number, quantity, reason, stamp, today)

        return take_out
    if verb == "count":
        lots = [_lot(text) for text in rest]

        def count(books: records.Books, unit: Unit, stamp: Stamp, today: date) -> stock.Slot:
            return records.counted(books, unit, number, lots, stamp, today)

        return count
    raise ValueError(f"unknown request {verb!r}: restock, remove, count or status")


def _lot(text: str) -> stock.Lot:
    parts = text.rsplit(":", 2)
    if len(parts) != 3:
        raise ValueError(f"a counted lot is BATCH:YYYY-MM-DD:QUANTITY, not {text!r}")
    batch, expiry, quantity = parts
    return stock.Lot(batch, _date(expiry, "a lot's expiry"), _whole(quantity, "a lot's quantity"))


def _whole(text: str, what: str) -> int:
    """A number typed by a technician, or our own words for why it is not one (Python's own
    text is not for people)."""
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise ValueError(f"{what} is a whole number (0 to 999999), not {text!r}")
    return int(text)


def _date(text: str, what: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} is a date written YYYY-MM-DD, not {text!r}") from None
