"""The ledger's rules, pure: what a county entry or a box's event moves, and what may be entered.

Stock lives in *buckets*: a place at a site (a storeroom, ``transit`` with a technician, or a
box's slot) in one of the storeroom's colour-coded zones; the world outside is four more
buckets (``supply`` the annual allocation comes from, ``dispensed`` to villagers, ``disposed``,
``variance`` where counts and adjustments land). Every movement takes a quantity of one batch
from one bucket to another, so the sum over all buckets is always zero and what a place holds
is the sum of what moved in and out of it.

County entries are checked before they are journaled (``LedgerError``: only qualified stock is
transferred or loaded, only unqualified stock is disposed of, nothing is taken that is not
there). A box's events are facts: they are never refused, and one that takes stock the books do
not show is recorded as it happened, with a ``Discrepancy``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

from edge_agent.wire import Counted, Dispense, Removed, Restocked
from server.ledger.entries import (
    Adjustment,
    BatchEntry,
    Disposal,
    Inspection,
    MovementEntry,
    ProductEntry,
    Receipt,
    Return,
    SiteEntry,
    Stocktake,
    Transfer,
)

STOREROOMS = ("no1", "no2", "no3")
TRANSIT = "transit"
OUTSIDE = ""


@dataclass(frozen=True, order=True)
class Bucket:
    site: str
    place: str
    slot: int = 0
    zone: str = "qualified"

    @property
    def outside(self) -> bool:
        return self.site == OUTSIDE

    @property
    def is_box(self) -> bool:
        return self.slot > 0


SUPPLY = Bucket(OUTSIDE, "supply")
DISPENSED = Bucket(OUTSIDE, "dispensed")
DISPOSED = Bucket(OUTSIDE, "disposed")
VARIANCE = Bucket(OUTSIDE, "variance")


@dataclass(frozen=True)
class Movement:
    kind: str
    product: str
    batch: str
    quantity: int
    source: Bucket
    target: Bucket
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError("a movement moves a positive quantity")
        if self.source == self.target:
            raise ValueError("a movement goes somewhere else")


@dataclass(frozen=True)
class Discrepancy:
    """A box's event the books cannot explain: recorded as it happened, for people to settle."""

    what: str
    bucket: Bucket
    product: str
    batch: str
    books: int
    needed: int


class LedgerError(Exception):
    """An entry the ledger refuses; ``key`` and ``fields`` make the text people read."""

    def __init__(self, key: str, **fields: object) -> None:
        super().__init__(f"{key}: {fields}")
        self.key = key
        self.fields = fields


@dataclass(frozen=True)
class Catalog:
    """The master data an entry is checked against."""

    products: Mapping[str, ProductEntry] = field(default_factory=dict)
    batches: Mapping[tuple[str, str], BatchEntry] = field(default_factory=dict)
    sites: Mapping[str, SiteEntry] = field(default_factory=dict)


#: What a bucket holds of one product's batch.
Held = Callable[[Bucket, str, str], int]


# --- county entries -----------------------------------------------------------------------------


def check_master(entry: ProductEntry | BatchEntry | SiteEntry, catalog: Catalog) -> None:
    if isinstance(entry, BatchEntry):
        _product(catalog, entry.product)
        known = catalog.batches.get((entry.product, entry.batch))
        if known is not None and known.expiry != entry.expiry:
            raise LedgerError(
                "batch.expiry_differs", batch=entry.batch, expiry=known.expiry.isoformat()
            )
    elif isinstance(entry, SiteEntry) and entry.parent is not None:
        parent = catalog.sites.get(entry.parent)
        if parent is None:
            raise LedgerError("site.unknown", site=entry.parent)
        order = ("city", "county", "township", "village")
        if order.index(parent.level) >= order.index(entry.level):
            raise LedgerError("site.level", site=entry.site, parent=entry.parent)


def plan(
    entry: MovementEntry,
    catalog: Catalog,
    held: Held,
    today: date,
) -> list[Movement]:
    """The movements of a county entry, or ``LedgerError`` if the books forbid it."""
    check(entry, catalog, held, today)
    return movements(entry)


def check(
    entry: MovementEntry,
    catalog: Catalog,
    held: Held,
    today: date,
) -> None:
    """Whether the county may enter this, given the master data and the books now."""
    if isinstance(entry, Receipt):
        _storeroom_product(catalog, entry.site, entry.storeroom, entry.product)
        _in_date(catalog, entry.product, entry.batch, today)
    elif isinstance(entry, Inspection):
        _storeroom_product(catalog, entry.site, entry.storeroom, entry.product)
        _take(held, Bucket(entry.site, entry.storeroom, 0, entry.zone), entry.product,
              entry.batch, entry.quantity)  # fmt: skip
    elif isinstance(entry, Transfer):
        _place(catalog, entry.from_site, entry.from_place, 0, entry.product)
        _place(catalog, entry.to_site, entry.to_place, 0, entry.product)
        if TRANSIT in (entry.from_place, entry.to_place) and "dispatch" in (
            entry.from_zone,
            entry.to_zone,
        ):
            raise LedgerError("zone.storerooms_only", place=TRANSIT, zone="dispatch")
        (move,) = movements(entry)
        if move.source == move.target:
            raise LedgerError("transfer.same_place")
        _in_date(catalog, entry.product, entry.batch, today)
        _take(held, move.source, entry.product, entry.batch, entry.quantity)
    elif isinstance(entry, Return):
        _place(catalog, entry.from_site, entry.from_place, 0, entry.product)
        _storeroom_product(catalog, entry.to_site, entry.to_storeroom, entry.product)
        moves = movements(entry)
        if not moves:
            raise LedgerError("transfer.same_place")
        _take(held, moves[0].source, entry.product, entry.batch, entry.quantity)
    elif isinstance(entry, Adjustment):
        _place(catalog, entry.site, entry.place, entry.slot, entry.product)
        _zone_at(entry.place, entry.zone)
        if entry.quantity < 0:
            (move,) = movements(entry)
            _take(held, move.source, entry.product, entry.batch, -entry.quantity)
    elif isinstance(entry, Disposal):
        _storeroom_product(catalog, entry.site, entry.storeroom, entry.product)
        _take(held, Bucket(entry.site, entry.storeroom, 0, "unqualified"), entry.product,
              entry.batch, entry.quantity)  # fmt: skip
    else:
        _place(catalog, entry.site, entry.place, entry.slot, None)
        for line in entry.lines:
            _zone_at(entry.place, line.zone)


def movements(
    entry: MovementEntry,
) -> list[Movement]:
    """What an entry moves: a function of the entry alone, so a replay moves the same."""
    if isinstance(entry, Receipt):
        target = Bucket(entry.site, entry.storeroom, 0, "awaiting")
        return [Movement("receipt", entry.product, entry.batch, entry.quantity, SUPPLY, target)]
    if isinstance(entry, Inspection):
        source = Bucket(entry.site, entry.storeroom, 0, entry.zone)
        target = Bucket(entry.site, entry.storeroom, 0, entry.result)
        return [Movement("inspection", entry.product, entry.batch, entry.quantity, source, target)]
    if isinstance(entry, Transfer):
        source = Bucket(entry.from_site, entry.from_place, 0, entry.from_zone)
        target = Bucket(entry.to_site, entry.to_place, 0, entry.to_zone)
        if source == target:
            return []
        return [Movement("transfer", entry.product, entry.batch, entry.quantity, source, target)]
    if isinstance(entry, Return):
        source = Bucket(entry.from_site, entry.from_place, 0, entry.from_zone)
        target = Bucket(entry.to_site, entry.to_storeroom, 0, "returned")
        if (source.site, source.place) == (target.site, target.place):
            return []  # a storeroom's own stock is set aside by an inspection, not a return
        return [Movement("return", entry.product, entry.batch, entry.quantity, source, target,
                         entry.reason)]  # fmt: skip
    if isinstance(entry, Adjustment):
        bucket = Bucket(entry.site, entry.place, entry.slot, entry.zone)
        ends = (VARIANCE, bucket) if entry.quantity > 0 else (bucket, VARIANCE)
        return [
            Movement("adjustment", entry.product, entry.batch, abs(entry.quantity), *ends,
                     entry.reason)
        ]  # fmt: skip
    if isinstance(entry, Disposal):
        source = Bucket(entry.site, entry.storeroom, 0, "unqualified")
        return [
            Movement("disposal", entry.product, entry.batch, entry.quantity, source, DISPOSED,
                     entry.reason)
        ]  # fmt: skip
    return counted(entry)


def counted(entry: Stocktake) -> list[Movement]:
    """A stocktake's variances, from what the entry says the books held when it was made."""
    out = []
    for line in entry.lines:
        bucket = Bucket(entry.site, entry.place, entry.slot, line.zone)
        diff = line.counted - line.expected
        if diff > 0:
            out.append(Movement("stocktake", line.product, line.batch, diff, VARIANCE, bucket))
        elif diff < 0:
            out.append(Movement("stocktake", line.product, line.batch, -diff, bucket, VARIANCE))
    return out


def _in_date(catalog: Catalog, product: str, batch: str, today: date) -> None:
    expiry = _batch(catalog, product, batch).expiry
    if expiry < today:
        raise LedgerError("batch.expired", batch=batch, expiry=expiry.isoformat())


def _take(held: Held, bucket: Bucket, product: str, batch: str, quantity: int) -> None:
    have = held(bucket, product, batch)
    if have < quantity:
        raise LedgerError(
            "stock.short", place=_where(bucket), zone=bucket.zone, batch=batch, have=have,
            quantity=quantity,
        )  # fmt: skip


def _where(bucket: Bucket) -> str:
    slot = f"#{bucket.slot}" if bucket.slot else ""
    return f"{bucket.site}:{bucket.place}{slot}"


def _zone_at(place: str, zone: str) -> str:
    if place not in STOREROOMS and zone != "qualified":
        raise LedgerError("zone.storerooms_only", place=place, zone=zone)
    return zone


def _product(catalog: Catalog, product: str) -> ProductEntry:
    found = catalog.products.get(product)
    if found is None:
        raise LedgerError("product.unknown", product=product)
    return found


def _batch(catalog: Catalog, product: str, batch: str) -> BatchEntry:
    found = catalog.batches.get((product, batch))
    if found is None:
        raise LedgerError("batch.unknown", product=product, batch=batch)
    return found


def _site(catalog: Catalog, site: str) -> SiteEntry:
    found = catalog.sites.get(site)
    if found is None:
        raise LedgerError("site.unknown", site=site)
    return found


def _storeroom_product(catalog: Catalog, site: str, storeroom: str, product: str) -> None:
    _site(catalog, site)
    kept = _product(catalog, product).storeroom
    if kept != storeroom:
        raise LedgerError("product.storeroom", product=product, storeroom=kept)


def _place(catalog: Catalog, site: str, place: str, slot: int, product: str | None) -> None:
    if place in STOREROOMS:
        if slot:
            raise LedgerError("place.slot", place=place)
        if product is None:
            _site(catalog, site)
        else:
            _storeroom_product(catalog, site, place, product)
        return
    _site(catalog, site)
    if product is not None:
        _product(catalog, product)
    if place == TRANSIT and slot:
        raise LedgerError("place.slot", place=place)
    if place != TRANSIT and not slot:
        raise LedgerError("place.box_needs_slot", place=place)


# --- a box's events -------------------------------------------------------------------------


Lots = Callable[[Bucket], Mapping[tuple[str, str], int]]


def from_box(
    site: str,
    payload: Dispense | Restocked | Removed | Counted,
    held: Held,
    lots: Lots,
) -> tuple[list[Movement], list[Discrepancy]]:
    """What a box's event moved; never refused. ``lots`` is what a bucket held before it."""
    if isinstance(payload, Counted):
        return _box_count(site, payload, lots)
    slot = Bucket(site, payload.box, payload.slot)
    if isinstance(payload, Dispense):
        move = Movement("dispense", payload.product, payload.batch, payload.quantity, slot,
                        DISPENSED)  # fmt: skip
    elif isinstance(payload, Restocked):
        move = Movement("restock", payload.product, payload.batch, payload.quantity,
                        Bucket(site, TRANSIT), slot, payload.order_id)  # fmt: skip
    else:
        move = Movement("removal", payload.product, payload.batch, payload.quantity, slot,
                        Bucket(site, TRANSIT, 0, "returned"), payload.reason)  # fmt: skip
    books = held(move.source, move.product, move.batch)
    if books >= move.quantity:
        return [move], []
    short = Discrepancy(move.kind, move.source, move.product, move.batch, books, move.quantity)
    return [move], [short]


def _box_count(site: str, payload: Counted, lots: Lots) -> tuple[list[Movement], list[Discrepancy]]:
    bucket = Bucket(site, payload.box, payload.slot)
    books = {batch: n for (product, batch), n in lots(bucket).items() if product == payload.product}
    found: dict[str, int] = {}
    for line in payload.lines:
        found[line.batch] = found.get(line.batch, 0) + line.quantity
    out = []
    for batch in sorted(set(books) | set(found)):
        diff = found.get(batch, 0) - books.get(batch, 0)
        if diff > 0:
            out.append(Movement("stocktake", payload.product, batch, diff, VARIANCE, bucket))
        elif diff < 0:
            out.append(Movement("stocktake", payload.product, batch, -diff, bucket, VARIANCE))
    return out, []


# --- books in memory --------------------------------------------------------------------------


@dataclass
class Books:
    """Balances kept in memory: the reference the projection is tested against."""

    stock: dict[tuple[Bucket, str, str], int] = field(default_factory=dict)

    def held(self, bucket: Bucket, product: str, batch: str) -> int:
        return self.stock.get((bucket, product, batch), 0)

    def lots(self, bucket: Bucket) -> dict[tuple[str, str], int]:
        return {(p, b): n for (k, p, b), n in self.stock.items() if k == bucket and n}

    def apply(self, moves: list[Movement]) -> None:
        for m in moves:
            for bucket, sign in ((m.source, -1), (m.target, 1)):
                key = (bucket, m.product, m.batch)
                self.stock[key] = self.stock.get(key, 0) + sign * m.quantity


def fefo(
    held: Mapping[tuple[str, date | None], int], quantity: int, today: date
) -> tuple[list[tuple[str, int]], int]:
    """First expiry, first out: which batches (batch -> on hand, with its expiry) to take
    ``quantity`` from, never an expired one; and what is still missing."""
    picks = []
    left = quantity
    for (batch, expiry), have in sorted(held.items(), key=lambda kv: (kv[0][1] or date.max,
                                                                      kv[0][0])):  # fmt: skip
        if left <= 0:
            break
        if have <= 0 or (expiry is not None and expiry < today):
            continue
        take = min(have, left)
        picks.append((batch, take))
        left -= take
    return picks, left


def restock_quantity(on_hand: int, per_day: float, below_days: float, cover_days: float) -> int:
    """How much to load into a slot that will run out within ``below_days`` at its recent rate,
    so that it lasts ``cover_days``; 0 when it need not be restocked (nothing is taken from it,
    it lasts long enough, or it already holds its cover: a horizon longer than the cover)."""
    if per_day <= 0:
        return 0
    have = max(on_hand, 0)
    if have / per_day >= below_days or have >= cover_days * per_day:
        return 0
    return max(1, math.ceil(cover_days * per_day) - have)
