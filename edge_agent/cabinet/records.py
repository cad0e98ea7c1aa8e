"""What the cabinet writes, each in one outbox transaction: the slot's new stock, the usage row
and the vend's end together with the event that tells the server. A failure anywhere rolls all
of it back, so the books on the box and the events sent never disagree."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

from edge_agent.cabinet import stock, store
from edge_agent.cabinet.config import BoxConfig, CabinetSection
from edge_agent.clock import Stamp
from edge_agent.outbox import Unit
from edge_agent.wire import (
    BOARD_NOT_READY,
    Counted,
    Dispense,
    RefusalReason,
    Removed,
    Restocked,
    RestockOrderCommand,
    SlotState,
    StockLine,
    TakeRefused,
    VendFailed,
    VendFailure,
    VendUnknown,
)

log = logging.getLogger(__name__)


class Books:
    """One box's slots as the books have them, kept in memory and written through.

    Each record appends its own event first and then saves the slot, whose state change (if
    any) follows as ``cabinet.slot`` with the slot's count after it: a reader of the stream
    applies a change and then sees the absolute count, never a count and then the change again."""

    def __init__(
        self, box: BoxConfig, cabinet: CabinetSection, slots: Sequence[stock.Slot]
    ) -> None:
        self.box = box
        self.cabinet = cabinet
        self.slots = {s.number: s for s in slots}

    def group(self, product: str) -> str:
        return self.cabinet.product(product).group

    def save(self, unit: Unit, slot: stock.Slot, today: date, stamp: Stamp) -> stock.Slot:
        """Write the slot, and report its state if it changed; the caller keeps the result in
        ``slots`` only after its transaction committed (see ``commit``)."""
        state = stock.health(slot, today, self.box.low_level)
        if state != slot.reported:
            head = slot.head
            unit.append(
                "cabinet.slot",
                SlotState(
                    box=slot.box,
                    slot=slot.number,
                    product=slot.product,
                    state=state,
                    previous=slot.reported,
                    count=slot.count,
                    batch=head.batch if head else None,
                    expiry=head.expiry if head else None,
                ),
                stamp,
            )
            slot = replace(slot, reported=state)
        store.save_slot(unit, slot)
        return slot

    def first_reports(self, unit: Unit, today: date, stamp: Stamp) -> None:
        """Report each slot never reported (new in the configuration) as it is, usually empty:
        the county learns of a box's slots before anything is loaded, so it can order them
        filled."""
        new = [s for s in self.slots.values() if s.reported is None]
        self.commit([self.save(unit, slot, today, stamp) for slot in new])

    def commit(self, slots: Sequence[stock.Slot]) -> None:
        for slot in slots:
            self.slots[slot.number] = slot


def delivered(
    books: Books,
    unit: Unit,
    vend: store.Intent,
    stamp: Stamp,
    today: date,
    *,
    recovered: bool = False,
) -> stock.Slot | None:
    """A unit fell: stock down, usage charged, the vend forgotten. ``None`` if this vend's
    outcome was recorded already (a repeated answer)."""
    if not store.end_vend(unit, vend.transaction):
        return None
    slot, lot = stock.take_one(books.slots[vend.slot])
    group = books.group(vend.product)
    if vend.card is not None:
        store.add_use(unit, vend.transaction, vend.card, group, 1, stamp.occurred_at, books.box.id)
    else:
        hour_ago = stamp.occurred_at - timedelta(hours=1)
        store.add_open_vend(unit, books.box.id, stamp.occurred_at, hour_ago)
    unit.append(
        "cabinet.dispense",
        Dispense(
            box=books.box.id,
            transaction=vend.transaction,
            slot=vend.slot,
            product=vend.product,
            product_group=group,
            batch=lot.batch,
            expiry=lot.expiry,
            card=vend.card,
            mode=books.box.mode,
            remaining=slot.count,
            recovered=recovered,
        ),
        stamp,
    )
    return books.save(unit, slot, today, stamp)


def failed(
    books: Books,
    unit: Unit,
    vend: store.Intent,
    reason: VendFailure,
    next_slot: int | None,
    stamp: Stamp,
    today: date,
    *,
    recovered: bool = False,
) -> stock.Slot | None:
    """Nothing fell: no quota charged; the slot is faulty until a technician sees to it, unless
    the board was only not ready (``BOARD_NOT_READY``)."""
    if not store.end_vend(unit, vend.transaction):
        return None
    before = books.slots[vend.slot]
    unit.append(
        "cabinet.vend_failed",
        VendFailed(
            box=books.box.id,
            transaction=vend.transaction,
            slot=vend.slot,
            product=vend.product,
            batch=before.head.batch if before.head else "-",
            reason=reason,
            next_slot=next_slot,
            recovered=recovered,
        ),
        stamp,
    )
    if reason in BOARD_NOT_READY:
        return None
    return books.save(unit, replace(before, fault=reason), today, stamp)


def unknown(
    books: Books,
    unit: Unit,
    vend: store.Intent,
    reason: str,
    stamp: Stamp,
    today: date,
    *,
    recovered: bool = False,
) -> stock.Slot | None:
    """Nobody knows whether a unit fell: no quota charged, the books unchanged, the slot
    flagged so that a count settles it."""
    if not store.end_vend(unit, vend.transaction):
        return None
    before = books.slots[vend.slot]
    unit.append(
        "cabinet.vend_unknown",
        VendUnknown.model_validate(
            {
                "box": books.box.id,
                "transaction": vend.transaction,
                "slot": vend.slot,
                "product": vend.product,
                "batch": before.head.batch if before.head else "-",
                "reason": reason,
                "recovered": recovered,
            }
        ),
        stamp,
    )
    return books.save(unit, replace(before, count_needed=True), today, stamp)


def refused(
    books: Books,
    unit: Unit,
    reason: RefusalReason,
    card: str | None,
    product: str | None,
    next_at: datetime | None,
    stamp: Stamp,
) -> None:
    unit.append(
        "cabinet.refused",
        TakeRefused(
            box=books.box.id,
            reason=reason,
            card=card,
            product_group=books.group(product) if product else None,
            next_at=next_at,
        ),
        stamp,
    )


def restocked(
    books: Books,
    unit: Unit,
    number: int,
    batch: str,
    expiry: date,
    quantity: int,
    stamp: Stamp,
    today: date,
    *,
    order_id: str | None = None,
    ordered: int | None = None,
    technician: str | None = None,
    source: str = "cli",
) -> stock.Slot:
    before = books.slots[number]
    loaded = stock.load(before, batch, expiry, quantity)
    unit.append(
        "cabinet.restock",
        Restocked.model_validate(
            {
                "box": books.box.id,
                "slot": number,
                "product": before.product,
                "batch": batch,
                "expiry": expiry,
                "quantity": quantity,
                "order_id": order_id,
                "ordered": ordered,
                "technician": technician,
                "source": source,
            }
        ),
        stamp,
    )
    return books.save(unit, loaded, today, stamp)


def removed(
    books: Books,
    unit: Unit,
    number: int,
    quantity: int,
    reason: str,
    stamp: Stamp,
    today: date,
    *,
    technician: str | None = None,
    source: str = "cli",
) -> stock.Slot:
    before = books.slots[number]
    after, taken = stock.remove(before, quantity)
    for lot in taken:
        unit.append(
            "cabinet.remove",
            Removed.model_validate(
                {
                    "box": books.box.id,
                    "slot": number,
                    "product": before.product,
                    "batch": lot.batch,
                    "expiry": lot.expiry,
                    "quantity": lot.count,
                    "reason": reason,
                    "technician": technician,
                    "source": source,
                }
            ),
            stamp,
        )
    return books.save(unit, after, today, stamp)


def counted(
    books: Books,
    unit: Unit,
    number: int,
    lots: Sequence[stock.Lot],
    stamp: Stamp,
    today: date,
    *,
    technician: str | None = None,
    source: str = "cli",
) -> stock.Slot:
    before = books.slots[number]
    found = stock.counted(before, lots)
    unit.append(
        "cabinet.count",
        Counted.model_validate(
            {
                "box": books.box.id,
                "slot": number,
                "product": before.product,
                "expected": before.count,
                "counted": found.count,
                "lines": [
                    StockLine(batch=lot.batch, expiry=lot.expiry, quantity=lot.count)
                    for lot in lots
                ],
                "technician": technician,
                "source": source,
            }
        ),
        stamp,
    )
    return books.save(unit, found, today, stamp)


def orders_answered(
    books: Books,
    unit: Unit,
    orders: Sequence[RestockOrderCommand],
    technician: str,
    confirmed: bool,
    stamp: Stamp,
    today: date,
) -> list[stock.Slot]:
    """A technician confirmed the pending orders as loaded, or reported a difference: then the
    slots they name are flagged for a count, which settles what is in them."""
    committed = dict(books.slots)
    try:
        for order in orders:
            slot = books.slots.get(order.slot)
            if slot is None:
                log.error("box %s: restock order %s names no slot", books.box.id, order.order_id)
                continue
            if confirmed:
                try:
                    slot = restocked(
                        books,
                        unit,
                        order.slot,
                        order.batch,
                        order.expiry,
                        order.quantity,
                        stamp,
                        today,
                        order_id=order.order_id,
                        technician=technician,
                        source="door",
                    )
                except stock.StockError as exc:
                    log.error("box %s: restock order %s: %s", books.box.id, order.order_id, exc)
                    confirmed_here = False
                else:
                    confirmed_here = True
            else:
                confirmed_here = False
            if not confirmed_here:
                slot = books.save(unit, replace(slot, count_needed=True), today, stamp)
            # A second order for the same slot loads behind the first.
            books.slots[order.slot] = slot
        changed = [books.slots[n] for n in {o.slot for o in orders} if n in books.slots]
    finally:
        # What is returned is kept by the caller once the transaction has committed.
        books.slots = committed
    store.close_orders(unit, [o.order_id for o in orders], "done" if confirmed else "disputed")
    return changed
