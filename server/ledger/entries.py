"""What the county enters into the ledger: master data and stock movements, as journal entries.

Each is the payload of an event of the county's own stream (``server.entries``), journaled and
hash-chained like an agent's events, so that one replay of the journal rebuilds the ledger. An
entry is complete in itself: a stocktake carries the variance computed when it was entered, so
applying it again, on any copy of the journal, gives the same books.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from edge_agent.wire import Batch, Ident

#: The storerooms' colour-coded zones (三色五区).
Zone = Literal["awaiting", "qualified", "dispatch", "unqualified", "returned"]
ZONES: tuple[Zone, ...] = ("awaiting", "qualified", "dispatch", "unqualified", "returned")
Storeroom = Literal["no1", "no2", "no3"]
Level = Literal["city", "county", "township", "village"]
AdjustReason = Literal["expired", "damaged", "lost", "found", "correction"]
#: Where stock is kept at a site: a storeroom, ``transit`` (on its way, with a technician), or
#: a box's id (then ``slot`` is set).
Place = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Text = Annotated[str, StringConstraints(max_length=200)]
Person = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Quantity = Annotated[int, Field(ge=1, le=10_000_000)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProductEntry(_Entry):
    """A product the county hands out: its storeroom, and the group a box quota counts it in."""

    product: Ident
    name_zh: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name_en: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    unit_zh: Annotated[str, StringConstraints(min_length=1, max_length=16)] = "盒"
    unit_en: Annotated[str, StringConstraints(min_length=1, max_length=16)] = "box"
    storeroom: Storeroom
    group: Ident
    by: Person


class BatchEntry(_Entry):
    product: Ident
    batch: Batch
    expiry: date
    manufacturer: Text | None = None
    by: Person


class SiteEntry(_Entry):
    """A place in the service's four levels: stock and statistics roll up along ``parent``."""

    site: Ident
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    level: Level
    parent: Ident | None = None
    by: Person

    @model_validator(mode="after")
    def _parent(self) -> SiteEntry:
        if (self.level == "city") != (self.parent is None):
            raise ValueError("a city has no parent; every other level has one")
        if self.parent == self.site:
            raise ValueError("a site is not its own parent")
        return self


class Receipt(_Entry):
    """Stock received into a storeroom (the annual allocation): awaiting inspection."""

    site: Ident
    storeroom: Storeroom
    product: Ident
    batch: Batch
    quantity: Quantity
    supplier: Text | None = None
    by: Person


class Inspection(_Entry):
    """A quality check of stock awaiting inspection (or returned): qualified or not."""

    site: Ident
    storeroom: Storeroom
    product: Ident
    batch: Batch
    quantity: Quantity
    zone: Literal["awaiting", "returned"] = "awaiting"
    result: Literal["qualified", "unqualified"]
    note: Text | None = None
    by: Person


class Transfer(_Entry):
    """Qualified stock moved from one place to another (station → township → transit)."""

    from_site: Ident
    from_place: Place
    to_site: Ident
    to_place: Place
    product: Ident
    batch: Batch
    quantity: Quantity
    #: ``dispatch``: set aside in the dispatch zone first (only within a storeroom's zones).
    from_zone: Literal["qualified", "dispatch"] = "qualified"
    to_zone: Literal["qualified", "dispatch"] = "qualified"
    note: Text | None = None
    by: Person


class Return(_Entry):
    """Stock coming back into a storeroom's returned zone (yellow), where it waits for an
    inspection: what a technician took out of a box (in transit, returned) or what a station
    below sends back. Never from a box slot: the box's own removal does that."""

    from_site: Ident
    from_place: Place
    from_zone: Literal["qualified", "returned"] = "returned"
    to_site: Ident
    to_storeroom: Storeroom
    product: Ident
    batch: Batch
    quantity: Quantity
    reason: Text | None = None
    by: Person


class Adjustment(_Entry):
    """A correction of what a place holds, with its reason: never an edit of a movement."""

    site: Ident
    place: Place
    slot: int = Field(default=0, ge=0, le=255)
    zone: Zone = "qualified"
    product: Ident
    batch: Batch
    #: Added (found) when positive, taken off when negative.
    quantity: Annotated[int, Field(ge=-10_000_000, le=10_000_000)]
    reason: AdjustReason
    note: Text | None = None
    by: Person

    @model_validator(mode="after")
    def _not_zero(self) -> Adjustment:
        if self.quantity == 0:
            raise ValueError("an adjustment changes something")
        return self


class Disposal(_Entry):
    """Unqualified stock destroyed or sent back: it leaves the books."""

    site: Ident
    storeroom: Storeroom
    product: Ident
    batch: Batch
    quantity: Quantity
    reason: Text
    by: Person


class CountLine(_Entry):
    zone: Zone = "qualified"
    product: Ident
    batch: Batch
    counted: Annotated[int, Field(ge=0, le=10_000_000)]
    #: What the books said when the count was entered: the variance is ``counted - expected``.
    expected: Annotated[int, Field(ge=-10_000_000, le=10_000_000)]


class Stocktake(_Entry):
    """A physical count of one place; every line of the books there is in ``lines``."""

    site: Ident
    place: Place
    slot: int = Field(default=0, ge=0, le=255)
    lines: list[CountLine] = Field(max_length=10_000)
    note: Text | None = None
    by: Person


#: What moves stock (the rest is master data).
MovementEntry = Receipt | Inspection | Transfer | Return | Adjustment | Disposal | Stocktake
LedgerEntry = ProductEntry | BatchEntry | SiteEntry | MovementEntry

#: Entry kinds, as journaled.
KINDS: dict[str, type[_Entry]] = {
    "ledger.product": ProductEntry,
    "ledger.batch": BatchEntry,
    "ledger.site": SiteEntry,
    "ledger.receipt": Receipt,
    "ledger.inspection": Inspection,
    "ledger.transfer": Transfer,
    "ledger.return": Return,
    "ledger.adjustment": Adjustment,
    "ledger.disposal": Disposal,
    "ledger.stocktake": Stocktake,
}


def kind_of(entry: _Entry) -> str:
    return next(kind for kind, model in KINDS.items() if isinstance(entry, model))
