"""The ledger's monthly reports, as the station's registers keep them: the stock report per
station (opening, received, transferred in and out, dispensed, adjusted, closing, per product
and batch) and the dispensing statistics per point, with the points used far less or far more
than the county's median flagged, and each box's own count beside the books'."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from server.ledger.rules import OUTSIDE
from server.store.db import utc
from server.store.schema import ledger_movements

#: A point dispensing less than this share of the median is under-used, more than ``OVER``
#: times it over-used (a box nobody knows of, or one everybody goes to).
UNDER = 0.5
OVER = 2.0
#: Movements that change what the site holds without a transfer: corrections of the books.
ADJUSTING = ("adjustment", "stocktake", "disposal")


@dataclass(frozen=True)
class StockReportLine:
    product: str
    batch: str
    opening: int
    received: int
    transferred_in: int
    transferred_out: int
    dispensed: int
    #: Net: found and counted more (+), lost, damaged, disposed of or counted fewer (−).
    adjusted: int
    closing: int


def stock_report(conn: sa.Connection, site: str, start: datetime,
                 end: datetime) -> list[StockReportLine]:  # fmt: skip
    """What moved through the site's own places (storerooms, transit, boxes at it) over
    ``[start, end)``. Moves between its own places (a storeroom to its box, an inspection) are
    not counted in or out. Closing is always opening plus the columns."""
    m = ledger_movements
    into = sa.and_(m.c.to_site == site, m.c.from_site != site)
    out_of = sa.and_(m.c.from_site == site, m.c.to_site != site)
    before = m.c.occurred_at < utc(start)
    signed = sa.case((into, m.c.quantity), else_=-m.c.quantity)

    def within(condition: sa.ColumnElement[bool], value: sa.ColumnElement[int]) -> sa.Label[int]:
        chosen = sa.case((sa.and_(sa.not_(before), condition), value), else_=0)
        return sa.func.sum(chosen)  # type: ignore[return-value]

    outside = m.c.from_site == OUTSIDE
    kind = m.c.kind
    query = (
        sa.select(
            m.c.product,
            m.c.batch,
            sa.func.sum(sa.case((before, signed), else_=0)).label("opening"),
            within(sa.and_(into, kind == "receipt"), m.c.quantity).label("received"),
            within(sa.and_(into, kind.not_in(["receipt", *ADJUSTING]), sa.not_(outside)),
                   m.c.quantity).label("transferred_in"),
            within(sa.and_(out_of, kind.not_in(["dispense", *ADJUSTING]),
                           m.c.to_site != OUTSIDE), m.c.quantity).label("transferred_out"),
            within(sa.and_(out_of, kind == "dispense"), m.c.quantity).label("dispensed"),
            within(kind.in_(ADJUSTING), signed).label("adjusted"),
            sa.func.sum(signed).label("closing"),
        )
        .where(sa.or_(into, out_of), m.c.occurred_at < utc(end))
        .group_by(m.c.product, m.c.batch)
        .order_by(m.c.product, m.c.batch)
    )  # fmt: skip
    lines = []
    for r in conn.execute(query):
        line = StockReportLine(
            r.product, r.batch, int(r.opening or 0), int(r.received or 0),
            int(r.transferred_in or 0), int(r.transferred_out or 0), int(r.dispensed or 0),
            int(r.adjusted or 0), int(r.closing or 0),
        )  # fmt: skip
        if any((line.opening, line.received, line.transferred_in, line.transferred_out,
                line.dispensed, line.adjusted, line.closing)):  # fmt: skip
            lines.append(line)
    return lines


def balanced(line: StockReportLine) -> bool:
    """Opening plus every column is the closing: the report adds up."""
    moved = line.received + line.transferred_in - line.transferred_out - line.dispensed
    return line.opening + moved + line.adjusted == line.closing


Flag = Literal["under", "over"]


@dataclass(frozen=True)
class PointMonth:
    """One dispensing point (a box at a site) over the month."""

    site: str
    box: str
    #: What the books say was dispensed (the ledger's dispense movements).
    books: int
    #: What the box itself recorded dispensing (its slot log): should equal the books.
    box_records: int
    flag: Flag | None
    #: The point's dispensing over the median of all points (None when the median is 0).
    of_median: float | None

    @property
    def differs(self) -> bool:
        return self.books != self.box_records


def dispensed_in_books(
    conn: sa.Connection, start: datetime, end: datetime
) -> dict[tuple[str, str], int]:
    """Per (site, box), the quantity the books show dispensed over ``[start, end)``."""
    m = ledger_movements
    query = (
        sa.select(m.c.from_site, m.c.from_place, sa.func.sum(m.c.quantity))
        .where(m.c.kind == "dispense", m.c.occurred_at >= utc(start), m.c.occurred_at < utc(end))
        .group_by(m.c.from_site, m.c.from_place)
    )
    return {(str(s), str(p)): int(n) for s, p, n in conn.execute(query)}


def points(books: dict[tuple[str, str], int], box_records: dict[tuple[str, str], int],
           known: Sequence[tuple[str, str]] = ()) -> list[PointMonth]:  # fmt: skip
    """Every point that dispensed or is ``known`` (a box that gave nothing is the most
    under-used of all), flagged against the median of them all."""
    keys = sorted(set(books) | set(box_records) | set(known))
    if not keys:
        return []
    median = statistics.median(books.get(k, box_records.get(k, 0)) for k in keys)
    out = []
    for key in keys:
        n = books.get(key, 0)
        ratio = None if median == 0 else n / median
        flag: Flag | None = None
        if ratio is not None and ratio < UNDER:
            flag = "under"
        elif ratio is not None and ratio > OVER:
            flag = "over"
        out.append(PointMonth(key[0], key[1], n, box_records.get(key, 0), flag, ratio))
    return out
