"""Restocking the boxes: what to load where, from the dispensing rate, and an approval that
becomes a transfer into transit and an order to the box's agent.

Shared by ``edge-server restock`` and the dashboard, so that both propose and approve alike.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from pydantic import ValidationError

from edge_agent.wire import RestockOrderCommand
from server.commands import CommandError, queue_in
from server.ledger import entries as en
from server.ledger import queries, rules
from server.ledger.rules import STOREROOMS, TRANSIT, LedgerError
from server.store.schema import cabinet_slots, commands, ledger_movements

log = logging.getLogger(__name__)

#: The most one order may load (what the wire's order carries).
MOST = 10_000


@dataclass(frozen=True)
class Proposal:
    """A box slot that empties within the horizon, how much to load, and the batches of its
    source's qualified stock that would serve it, first expiry first out."""

    site: str
    box: str
    slot: int
    product: str
    on_hand: int
    #: Ordered for the slot lately and not loaded yet: counted as on hand, so an approval is not
    #: proposed again.
    ordered: int
    per_day: float
    days_left: float | None
    quantity: int
    #: Where the technician takes it from: the box's site's parent (its township), its storeroom.
    source: str
    storeroom: str
    #: (batch, quantity) in the order to take them.
    picks: tuple[tuple[str, int], ...]
    #: What the source cannot cover.
    missing: int


def proposals(conn: sa.Connection, now: datetime, today: date, *, within: set[str] | None = None,
              days: int = 30, below: int = 14, cover: int = 30) -> list[Proposal]:  # fmt: skip
    """Every slot (at a site of ``within``, when given) that runs out within ``below`` days at
    its rate over ``days``, with enough to load for ``cover`` days."""
    catalog = queries.catalog(conn)
    pending = ordered(conn, now, days)
    out = []
    for slot in queries.box_slots(conn, now, days):
        if within is not None and slot.site not in within:
            continue
        coming = pending.get((slot.site, slot.box, slot.slot), 0)
        quantity = rules.restock_quantity(slot.on_hand + coming, slot.per_day, below, cover)
        if not quantity:
            continue
        source = queries.parent_of(conn, slot.site) or slot.site
        product = catalog.products.get(slot.product)
        room = product.storeroom if product else "-"
        lines = queries.stock(conn, product=slot.product, place=room, zone="qualified")
        held = {(x.batch, x.expiry): x.quantity for x in lines if x.site == source}
        picks, missing = rules.fefo(held, quantity, today)
        out.append(
            Proposal(
                site=slot.site, box=slot.box, slot=slot.slot, product=slot.product,
                on_hand=slot.on_hand, ordered=coming, per_day=slot.per_day,
                days_left=slot.days_left, quantity=quantity, source=source, storeroom=room,
                picks=tuple(picks), missing=missing,
            )
        )  # fmt: skip
    return out


def ordered(conn: sa.Connection, now: datetime, days: int) -> dict[tuple[str, str, int], int]:
    """Per (site, box, slot): units of the restock orders of the last ``days`` days that no load
    has answered yet (a load names its order) and that the agent did not refuse."""
    c, m = commands, ledger_movements
    since = now - timedelta(days=days)
    orders = conn.execute(
        sa.select(c.c.site_id, c.c.message).where(
            c.c.kind == "restock.order",
            c.c.created_at >= since,
            c.c.created_at <= now,
            c.c.result_ok.is_not(False),
        )
    ).all()
    if not orders:
        return {}
    loaded = set(
        conn.execute(
            sa.select(m.c.reason).where(m.c.kind == "restock", m.c.occurred_at >= since)
        ).scalars()
    )
    out: dict[tuple[str, str, int], int] = defaultdict(int)
    for site, message in orders:
        body = json.loads(message)["body"]
        if body["order_id"] not in loaded:
            out[(site, body["box"], int(body["slot"]))] += int(body["quantity"])
    return dict(out)


@dataclass(frozen=True)
class Approval:
    """Load ``quantity`` of ``batch`` into a box's slot, taken from a storeroom."""

    site: str
    box: str
    slot: int
    batch: str
    quantity: int
    from_site: str
    from_storeroom: str
    by: str


def approve(conn: sa.Connection, catalog: rules.Catalog, prefix: str, approval: Approval,
            now: datetime) -> list[en.LedgerEntry]:  # fmt: skip
    """The entries of an approval (stock from the storeroom to the box's site, in transit), with
    the order queued for the box's agent in the same transaction: a refused transfer queues no
    order. ``LedgerError`` for an unknown slot or batch, a place that is no storeroom, or a box
    whose agent cannot be sent commands."""
    a = approval
    if a.from_storeroom not in STOREROOMS:
        raise LedgerError("restock.from", value=f"{a.from_site}:{a.from_storeroom}")
    s = cabinet_slots
    found = conn.execute(
        sa.select(s.c.agent_id, s.c.product).where(
            s.c.site_id == a.site, s.c.box == a.box, s.c.slot == a.slot
        )
    ).first()
    if found is None:
        raise LedgerError("restock.no_slot", where=f"{a.site}:{a.box}#{a.slot}")
    batch = catalog.batches.get((found.product, a.batch))
    if batch is None:
        raise LedgerError("batch.unknown", product=found.product, batch=a.batch)
    try:
        order = RestockOrderCommand(
            order_id=uuid.uuid4().hex[:16], box=a.box, slot=a.slot, product=found.product,
            batch=a.batch, expiry=batch.expiry, quantity=a.quantity,
        )  # fmt: skip
    except ValidationError:
        raise LedgerError("restock.too_many", most=MOST) from None
    try:
        queue_in(conn, prefix, found.agent_id, order, now)
    except CommandError as exc:
        log.error("ledger: restock order to %s not queued: %s", found.agent_id, exc)
        raise LedgerError("restock.no_agent", agent=found.agent_id) from exc
    return [
        en.Transfer(from_site=a.from_site, from_place=a.from_storeroom, to_site=a.site,
                    to_place=TRANSIT, product=found.product, batch=a.batch, quantity=a.quantity,
                    note=f"restock.order {order.order_id}", by=a.by)
    ]  # fmt: skip
