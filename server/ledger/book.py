"""Entering into the ledger: each call checks its entries against the master data and the books
as they stand under the county stream's lock (``Ingestor.enter``), and journals them, or
nothing and a ``LedgerError``. Several entries of one call are checked in order, each seeing
what the ones before it did (a batch registered with its receipt, say)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime

import sqlalchemy as sa

from server.ingest.core import Ingestor
from server.ledger import entries as en
from server.ledger import queries, rules
from server.ledger.projection import held, lots
from server.ledger.rules import Books, Bucket, Catalog, LedgerError

Build = Callable[[sa.Connection, Catalog], Sequence[en.LedgerEntry]]


def enter(ingestor: Ingestor, build: Build, now: datetime, today: date) -> list[int]:
    """Journal what ``build`` makes of the books now; return the entries' numbers."""

    def make(conn: sa.Connection) -> list[tuple[str, en.LedgerEntry]]:
        catalog = queries.catalog(conn)
        overlay = Books()

        def now_held(bucket: Bucket, product: str, batch: str) -> int:
            return held(conn, bucket, product, batch) + overlay.held(bucket, product, batch)

        out = []
        for entry in build(conn, catalog):
            if isinstance(entry, en.ProductEntry | en.BatchEntry | en.SiteEntry):
                rules.check_master(entry, catalog)
                catalog = _with(catalog, entry)
            else:
                overlay.apply(rules.plan(entry, catalog, now_held, today))
            out.append((en.kind_of(entry), entry))
        return out

    return ingestor.enter(make, now)


def _with(catalog: Catalog, entry: en.ProductEntry | en.BatchEntry | en.SiteEntry) -> Catalog:
    if isinstance(entry, en.ProductEntry):
        return replace(catalog, products={**catalog.products, entry.product: entry})
    if isinstance(entry, en.BatchEntry):
        key = (entry.product, entry.batch)
        return replace(catalog, batches={**catalog.batches, key: entry})
    return replace(catalog, sites={**catalog.sites, entry.site: entry})


def one(entry: en.LedgerEntry) -> Build:
    return lambda conn, catalog: [entry]


def stocktake(
    site: str,
    place: str,
    slot: int,
    counted: Sequence[en.CountLine],
    by: str,
    *,
    partial: bool = False,
    note: str | None = None,
) -> Build:
    """A count of one place: each line's ``expected`` is taken from the books under the lock.
    Unless ``partial``, what the books hold there and the count does not list was counted 0."""

    def build(conn: sa.Connection, catalog: Catalog) -> list[en.LedgerEntry]:
        zones = en.ZONES if place in rules.STOREROOMS else ("qualified",)
        books: dict[tuple[str, str, str], int] = {}
        for zone in zones:
            for (product, batch), n in lots(conn, Bucket(site, place, slot, zone)).items():
                books[(zone, product, batch)] = n
        found: dict[tuple[str, str, str], int] = {}
        for line in counted:
            key = (line.zone, line.product, line.batch)
            if key in found:
                raise LedgerError("count.twice", product=line.product, batch=line.batch)
            found[key] = line.counted
        keys = set(found) | (set() if partial else set(books))
        lines = [
            en.CountLine(zone=z, product=p, batch=b, counted=found.get((z, p, b), 0),
                         expected=books.get((z, p, b), 0))
            for z, p, b in sorted(keys)
        ]  # fmt: skip
        return [en.Stocktake(site=site, place=place, slot=slot, lines=lines, note=note, by=by)]

    return build
