"""Stock in a box's slots, pure: each slot is the physical queue it is.

A spiral delivers the unit at its front, so a slot holds lots (batch, expiry, count) in the
order they were loaded, and the next unit out is always from the oldest-loaded lot. Among the
slots of one product the box vends from the one whose front unit expires first (FEFO). A slot
whose front unit has expired is blocked: the units behind it cannot come out before it does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal

SlotHealth = Literal["ok", "low", "empty", "faulty", "expired", "count_needed"]


class StockError(ValueError):
    """A stock change that cannot be true of the slot (more removed than it holds, say)."""


@dataclass(frozen=True)
class Lot:
    batch: str
    expiry: date
    count: int


@dataclass(frozen=True)
class Slot:
    box: str
    number: int
    product: str
    capacity: int
    lots: tuple[Lot, ...] = ()
    #: Why the last vend failed (``jammed``…): no vend from here until a restock or a count.
    fault: str | None = None
    #: A vend's outcome is unknown: the books may be one off until the slot is counted.
    count_needed: bool = False
    #: The state last reported, so that each change is reported once; ``None``: never reported
    #: (a slot the configuration just added), so the county learns of it.
    reported: SlotHealth | None = field(default="ok", compare=False)

    @property
    def count(self) -> int:
        return sum(lot.count for lot in self.lots)

    @property
    def head(self) -> Lot | None:
        return self.lots[0] if self.lots else None


def expired(lot: Lot, today: date) -> bool:
    """A lot may be used up to and including its expiry date (有效期至)."""
    return today > lot.expiry


def health(slot: Slot, today: date, low_level: int) -> SlotHealth:
    if slot.fault is not None:
        return "faulty"
    if slot.head is None:
        return "empty"
    if expired(slot.head, today):
        return "expired"
    if slot.count_needed:
        return "count_needed"
    if slot.count <= low_level:
        return "low"
    return "ok"


def sellable(slot: Slot, today: date) -> bool:
    """Whether a vend may be tried: a unit at the front, in date, and no fault. A slot that
    needs a count still vends (its front unit is real; only the total is in doubt)."""
    return slot.fault is None and slot.head is not None and not expired(slot.head, today)


def choose(
    slots: Iterable[Slot], product: str, today: date, skip: Sequence[int] = ()
) -> Slot | None:
    """The slot to vend ``product`` from: the earliest-expiring front unit, then the lowest
    number; ``skip`` holds slots already tried for this take."""
    candidates = [
        s for s in slots if s.product == product and s.number not in skip and sellable(s, today)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda s: (s.head.expiry if s.head else date.max, s.number))


def take_one(slot: Slot) -> tuple[Slot, Lot]:
    """The slot after its front unit has been delivered, and the lot that unit came from."""
    head = slot.head
    if head is None:
        raise StockError(f"slot {slot.number} of {slot.box} is empty by the books")
    rest = (
        slot.lots[1:] if head.count == 1 else (replace(head, count=head.count - 1), *slot.lots[1:])
    )
    return replace(slot, lots=rest), head


def load(slot: Slot, batch: str, expiry: date, quantity: int) -> Slot:
    """Units loaded behind what is in the slot; a load clears a fault (the technician was there)."""
    if quantity < 1:
        raise StockError("a restock loads at least one unit")
    if slot.count + quantity > slot.capacity:
        raise StockError(
            f"slot {slot.number} holds {slot.capacity}; {slot.count} + {quantity} do not fit"
        )
    lots = slot.lots
    if lots and lots[-1].batch == batch and lots[-1].expiry == expiry:
        lots = (*lots[:-1], replace(lots[-1], count=lots[-1].count + quantity))
    else:
        lots = (*lots, Lot(batch, expiry, quantity))
    return replace(slot, lots=lots, fault=None)


def remove(slot: Slot, quantity: int) -> tuple[Slot, list[Lot]]:
    """Units taken out by hand from the front (expired or damaged ones come out first); returns
    the slot and what was taken, per lot."""
    if quantity < 1 or quantity > slot.count:
        raise StockError(f"slot {slot.number} holds {slot.count}; cannot remove {quantity}")
    taken: list[Lot] = []
    lots = list(slot.lots)
    left = quantity
    while left:
        head = lots[0]
        n = min(left, head.count)
        taken.append(replace(head, count=n))
        left -= n
        if n == head.count:
            lots.pop(0)
        else:
            lots[0] = replace(head, count=head.count - n)
    return replace(slot, lots=tuple(lots)), taken


def counted(slot: Slot, lots: Sequence[Lot]) -> Slot:
    """The slot as a physical count found it, front first; clears the fault and the doubt."""
    kept = tuple(lot for lot in lots if lot.count > 0)
    if sum(lot.count for lot in kept) > slot.capacity:
        raise StockError(f"slot {slot.number} holds at most {slot.capacity}")
    return replace(slot, lots=kept, fault=None, count_needed=False)
