"""What the ledger answers: master data, stock by place, product, batch and zone (rolled up
along the sites' levels), what is near its expiry, movements, discrepancies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.ledger import entries as en
from server.ledger.rules import OUTSIDE, Catalog
from server.store.db import utc
from server.store.schema import (
    ledger_batches,
    ledger_discrepancies,
    ledger_movements,
    ledger_products,
    ledger_sites,
    ledger_stock,
)

#: Near-expiry warnings, in days before the expiry date.
EXPIRY_WARNINGS = (180, 90, 30)


def catalog(conn: sa.Connection) -> Catalog:
    products = {
        r.product: en.ProductEntry(
            product=r.product, name_zh=r.name_zh, name_en=r.name_en, unit_zh=r.unit_zh,
            unit_en=r.unit_en, storeroom=r.storeroom, group=r.product_group, by="-",
        )
        for r in conn.execute(sa.select(ledger_products))
    }  # fmt: skip
    batches = {
        (r.product, r.batch): en.BatchEntry(
            product=r.product, batch=r.batch, expiry=r.expiry, manufacturer=r.manufacturer,
            by="-",
        )
        for r in conn.execute(sa.select(ledger_batches))
    }  # fmt: skip
    sites = {
        r.site: en.SiteEntry.model_construct(
            site=r.site, name=r.name, level=r.level, parent=r.parent, by="-"
        )
        for r in conn.execute(sa.select(ledger_sites))
    }
    return Catalog(products, batches, sites)


def within(conn: sa.Connection, site: str) -> list[str]:
    """``site`` and every site below it (township → its villages), for roll-ups."""
    tree = sa.select(ledger_sites.c.site).where(ledger_sites.c.site == site).cte(recursive=True)
    below = sa.select(ledger_sites.c.site).join(tree, ledger_sites.c.parent == tree.c.site)
    tree = tree.union(below)
    found = list(conn.execute(sa.select(tree.c.site)).scalars())
    return found or [site]


@dataclass(frozen=True)
class StockLine:
    site: str
    place: str
    slot: int
    zone: str
    product: str
    batch: str
    expiry: date | None
    quantity: int


def stock(
    conn: sa.Connection,
    *,
    site: str | None = None,
    place: str | None = None,
    product: str | None = None,
    batch: str | None = None,
    zone: str | None = None,
    expiring_before: date | None = None,
) -> list[StockLine]:
    """Stock on hand, one line per bucket and batch (nothing held is left out, nothing empty
    is listed; a negative line is a discrepancy shown as it is). ``site`` includes its sites
    below."""
    s, b = ledger_stock, ledger_batches
    query = (
        sa.select(s, b.c.expiry)
        .select_from(s.outerjoin(b, sa.and_(b.c.product == s.c.product, b.c.batch == s.c.batch)))
        .where(s.c.site != OUTSIDE, s.c.quantity != 0)
    )
    if site is not None:
        query = query.where(s.c.site.in_(within(conn, site)))
    if place is not None:
        query = query.where(s.c.place == place)
    if product is not None:
        query = query.where(s.c.product == product)
    if batch is not None:
        query = query.where(s.c.batch == batch)
    if zone is not None:
        query = query.where(s.c.zone == zone)
    if expiring_before is not None:
        query = query.where(b.c.expiry < expiring_before)
    query = query.order_by(s.c.site, s.c.place, s.c.slot, s.c.product, b.c.expiry, s.c.batch)
    return [
        StockLine(r.site, r.place, r.slot, r.zone, r.product, r.batch, r.expiry, int(r.quantity))
        for r in conn.execute(query)
    ]


@dataclass(frozen=True)
class BatchTotal:
    product: str
    batch: str
    expiry: date | None
    quantity: int
    #: Places (storerooms, transit, box slots) holding some of it.
    places: int
    #: Some place's books are below zero (a discrepancy to settle).
    negative: bool


def by_batch(lines: Sequence[StockLine]) -> list[BatchTotal]:
    """Each batch's stock over ``lines`` together, soonest expiry first (unknown expiry last)."""
    totals: dict[tuple[str, str], list[StockLine]] = {}
    for line in lines:
        totals.setdefault((line.product, line.batch), []).append(line)
    out = [
        BatchTotal(
            product,
            batch,
            held[0].expiry,
            sum(x.quantity for x in held),
            len({(x.site, x.place, x.slot) for x in held}),
            any(x.quantity < 0 for x in held),
        )
        for (product, batch), held in totals.items()
    ]
    return sorted(out, key=lambda t: (t.expiry is None, t.expiry or date.min, t.product, t.batch))


def unplaced_sites(conn: sa.Connection) -> list[str]:
    """Sites holding stock that the county has not placed in its levels (``site add``): a box
    whose agent's site was never entered. Their stock rolls up nowhere."""
    s, known = ledger_stock, sa.select(ledger_sites.c.site)
    query = (
        sa.select(s.c.site)
        .where(s.c.site != OUTSIDE, s.c.quantity != 0, s.c.site.not_in(known))
        .distinct()
        .order_by(s.c.site)
    )
    return list(conn.execute(query).scalars())


def expiry_band(expiry: date | None, today: date) -> int | None:
    """0 when expired, else the tightest warning (180/90/30 days) the batch is within."""
    if expiry is None:
        return None
    if expiry < today:
        return 0
    left = (expiry - today).days
    bands = [days for days in EXPIRY_WARNINGS if left <= days]
    return min(bands) if bands else None


@dataclass(frozen=True)
class MovementRow:
    id: int
    occurred_at: datetime
    kind: str
    product: str
    batch: str
    quantity: int
    source: str
    target: str
    reason: str | None
    entered_by: str | None
    agent_id: str


def _where(site: str, place: str, slot: int, zone: str) -> str:
    if site == OUTSIDE:
        return place
    return f"{site}:{place}" + (f"#{slot}" if slot else "") + ("" if zone == "qualified" else
                                                                f"/{zone}")  # fmt: skip


def movements(
    conn: sa.Connection,
    *,
    site: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_id: int = 0,
    limit: int = 10_000,
) -> list[MovementRow]:
    m = ledger_movements
    query = sa.select(m).where(m.c.id > after_id)
    if site is not None:
        sites = within(conn, site)
        query = query.where(sa.or_(m.c.from_site.in_(sites), m.c.to_site.in_(sites)))
    if since is not None:
        query = query.where(m.c.occurred_at >= since)
    if until is not None:
        query = query.where(m.c.occurred_at < until)
    rows = conn.execute(query.order_by(m.c.id).limit(limit))
    return [
        MovementRow(
            int(r.id), utc(r.occurred_at), r.kind, r.product, r.batch, int(r.quantity),
            _where(r.from_site, r.from_place, r.from_slot, r.from_zone),
            _where(r.to_site, r.to_place, r.to_slot, r.to_zone), r.reason, r.entered_by,
            r.agent_id,
        )
        for r in rows
    ]  # fmt: skip


def discrepancies(conn: sa.Connection, since: datetime | None = None) -> list[Any]:
    d = ledger_discrepancies
    query = sa.select(d).order_by(d.c.occurred_at)
    if since is not None:
        query = query.where(d.c.occurred_at >= since)
    return list(conn.execute(query))


@dataclass(frozen=True)
class BoxSlot:
    """A box's slot as the ledger sees it: what it holds and how fast it empties."""

    site: str
    box: str
    slot: int
    product: str
    on_hand: int
    per_day: float

    @property
    def days_left(self) -> float | None:
        """Days until empty at the recent rate; None when nothing was taken."""
        if self.per_day <= 0:
            return None
        return max(self.on_hand, 0) / self.per_day


def box_slots(conn: sa.Connection, now: datetime, days: int = 30) -> list[BoxSlot]:
    """Every box slot the ledger knows, with its stock (now) and its dispensing rate over the
    ``days`` before ``now``."""
    s, m = ledger_stock, ledger_movements
    held = conn.execute(
        sa.select(s.c.site, s.c.place, s.c.slot, s.c.product, sa.func.sum(s.c.quantity))
        .where(s.c.slot > 0)
        .group_by(s.c.site, s.c.place, s.c.slot, s.c.product)
    ).all()
    since = now - timedelta(days=days)
    taken = {
        (r[0], r[1], r[2], r[3]): int(r[4])
        for r in conn.execute(
            sa.select(m.c.from_site, m.c.from_place, m.c.from_slot, m.c.product,
                      sa.func.sum(m.c.quantity))
            .where(m.c.kind == "dispense", m.c.occurred_at >= since, m.c.occurred_at < now)
            .group_by(m.c.from_site, m.c.from_place, m.c.from_slot, m.c.product)
        )
    }  # fmt: skip
    return [
        BoxSlot(site, box, slot, product, int(n), taken.get((site, box, slot, product), 0) / days)
        for site, box, slot, product, n in held
    ]


def parent_of(conn: sa.Connection, site: str) -> str | None:
    return conn.execute(
        sa.select(ledger_sites.c.parent).where(ledger_sites.c.site == site)
    ).scalar_one_or_none()
