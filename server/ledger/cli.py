"""``edge-server stock|receive|inspect|transfer|adjust|dispose|stocktake`` and the master data
(``product``, ``batch``, ``site``): what county staff enter, each checked against the books and
journaled in the county's stream (``book.py``), or refused with one line in their language."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import click
import sqlalchemy as sa
from pydantic import ValidationError

from server.clisupport import (
    config_or_exit,
    csv_file,
    engine_or_exit,
    exit_with,
    failing,
    language,
    now_or_exit,
)
from server.entries import COUNTY_AGENT
from server.i18n import Language, table
from server.ingest.core import Ingestor
from server.ledger import book, queries, rules
from server.ledger import entries as en
from server.ledger import restock as restocking
from server.ledger.rules import STOREROOMS, TRANSIT, LedgerError
from server.ledger.text import TEXTS, say
from server.store.schema import ledger_movements

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

_PLACE = re.compile(
    r"^([a-z0-9][a-z0-9_.-]{0,63}):([a-z0-9][a-z0-9_.-]{0,63})(?:#(\d{1,3}))?"
    r"(?:/([a-z]+))?$"
)


class _Ctx:
    def __init__(self, ctx: click.Context) -> None:
        self.config = config_or_exit(ctx)
        self.lang: Language = language(self.config)
        self.engine = engine_or_exit(self.config)
        self.ingest = Ingestor(self.engine, self.config.mqtt.topic_prefix)
        self.today = datetime.now(self.config.server.zone).date()


def _fail(lang: Language, key: str, code: int = 2, /, **fields: object) -> NoReturn:
    exit_with(say(lang, key, **fields), code)


def _guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """A refusal of the books, or a database error, is one line for people; never a trace."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        lang = language(config_or_exit(click.get_current_context()))
        with failing("ledger", LedgerError, say=functools.partial(say, lang), log=log):
            try:
                return fn(*args, **kwargs)
            except ValidationError as exc:
                exit_with(_invalid(exc))

    return run


def _invalid(exc: ValidationError) -> str:
    """Which value was refused, named by its option; pydantic's own words are not shown."""
    names = sorted({str(e["loc"][-1]) for e in exc.errors() if e["loc"]})
    return "--" + ", --".join(n.replace("_", "-") for n in names) + ": ?"


def _enter(c: _Ctx, build: book.Build) -> None:
    numbers = book.enter(c.ingest, build, datetime.now(UTC), c.today)
    if len(numbers) == 1:
        click.echo(say(c.lang, "entered", first=numbers[0]))
    elif numbers:
        click.echo(say(c.lang, "entered_many", first=numbers[0], last=numbers[-1]))


def _place(lang: Language, value: str) -> tuple[str, str, int, str]:
    found = _PLACE.match(value)
    if found is None:
        _fail(lang, "place.bad", value=value)
    site, place, slot, zone = found.groups()
    if zone is not None and zone not in en.ZONES:
        _fail(lang, "place.bad", value=value)
    return site, place, int(slot or 0), zone or "qualified"


_by = click.option("--by", required=True, help="Who enters it (as on the paper record).")
_quantity = click.argument("quantity", type=click.IntRange(1, 10_000_000))


def _in_storeroom(fn: Callable[P, R]) -> Callable[P, R]:
    """SITE STOREROOM PRODUCT BATCH QUANTITY: so much of a batch in one storeroom."""
    for argument in reversed([
        click.argument("site_id"),
        click.argument("storeroom", type=click.Choice(STOREROOMS)),
        click.argument("product_id"),
        click.argument("batch_no"),
        _quantity,
    ]):  # fmt: skip
        fn = argument(fn)
    return fn


# --- master data ------------------------------------------------------------------------------


@click.group()
def product() -> None:
    """Products: their storeroom and the quota group boxes count them in."""


@product.command("add")
@click.argument("product_id")
@click.option("--name-zh", required=True)
@click.option("--name-en", required=True)
@click.option("--storeroom", type=click.Choice(STOREROOMS), required=True)
@click.option("--group", "group_", required=True, help="Quota group, e.g. condoms, pills.")
@click.option("--unit-zh", default="盒", show_default=True)
@click.option("--unit-en", default="box", show_default=True)
@_by
@click.pass_context
@_guarded
def product_add(
    ctx: click.Context,
    product_id: str,
    name_zh: str,
    name_en: str,
    storeroom: str,
    group_: str,
    unit_zh: str,
    unit_en: str,
    by: str,
) -> None:
    c = _Ctx(ctx)
    entry = en.ProductEntry(
        product=product_id,
        name_zh=name_zh,
        name_en=name_en,
        storeroom=storeroom,
        group=group_,
        unit_zh=unit_zh,
        unit_en=unit_en,
        by=by,
    )
    _enter(c, book.one(entry))


@click.group()
def site() -> None:
    """Sites in the service's four levels (city → county → township → village)."""


@site.command("add")
@click.argument("site_id")
@click.option("--name", required=True)
@click.option(
    "--level", type=click.Choice(["city", "county", "township", "village"]), required=True
)
@click.option("--parent", default=None)
@_by
@click.pass_context
@_guarded
def site_add(
    ctx: click.Context, site_id: str, name: str, level: str, parent: str | None, by: str
) -> None:
    c = _Ctx(ctx)
    entry = en.SiteEntry(site=site_id, name=name, level=level, parent=parent, by=by)
    _enter(c, book.one(entry))


@click.group()
def batch() -> None:
    """Batches of a product, with their expiry."""


@batch.command("add")
@click.argument("product_id")
@click.argument("batch_no")
@click.option("--expiry", type=click.DateTime(["%Y-%m-%d"]), required=True)
@click.option("--manufacturer", default=None)
@_by
@click.pass_context
@_guarded
def batch_add(
    ctx: click.Context,
    product_id: str,
    batch_no: str,
    expiry: datetime,
    manufacturer: str | None,
    by: str,
) -> None:
    c = _Ctx(ctx)
    entry = en.BatchEntry(
        product=product_id, batch=batch_no, expiry=expiry.date(), manufacturer=manufacturer, by=by
    )
    _enter(c, book.one(entry))


# --- movements ------------------------------------------------------------------------------


@click.command()
@_in_storeroom
@click.option(
    "--expiry",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Registers the batch in the same entry.",
)
@click.option("--manufacturer", default=None)
@click.option("--supplier", default=None)
@_by
@click.pass_context
@_guarded
def receive(
    ctx: click.Context,
    site_id: str,
    storeroom: str,
    product_id: str,
    batch_no: str,
    quantity: int,
    expiry: datetime | None,
    manufacturer: str | None,
    supplier: str | None,
    by: str,
) -> None:
    """Stock received into a storeroom: it waits in the yellow zone for inspection."""
    c = _Ctx(ctx)
    entries: list[en.LedgerEntry] = []
    if expiry is not None:
        entries.append(
            en.BatchEntry(
                product=product_id,
                batch=batch_no,
                expiry=expiry.date(),
                manufacturer=manufacturer,
                by=by,
            )
        )
    entries.append(
        en.Receipt(
            site=site_id,
            storeroom=storeroom,
            product=product_id,
            batch=batch_no,
            quantity=quantity,
            supplier=supplier,
            by=by,
        )
    )
    _enter(c, lambda conn, catalog: entries)


@click.command()
@_in_storeroom
@click.option("--result", type=click.Choice(["qualified", "unqualified"]), required=True)
@click.option("--returned", is_flag=True, help="Inspect returned stock, not a receipt.")
@click.option("--note", default=None)
@_by
@click.pass_context
@_guarded
def inspect(
    ctx: click.Context,
    site_id: str,
    storeroom: str,
    product_id: str,
    batch_no: str,
    quantity: int,
    result: str,
    returned: bool,
    note: str | None,
    by: str,
) -> None:
    """The quality check of stock awaiting inspection (or returned): green or red zone."""
    c = _Ctx(ctx)
    entry = en.Inspection(
        site=site_id,
        storeroom=storeroom,
        product=product_id,
        batch=batch_no,
        quantity=quantity,
        result=result,
        zone="returned" if returned else "awaiting",
        note=note,
        by=by,
    )
    _enter(c, book.one(entry))


@click.command()
@click.argument("source", metavar="FROM")
@click.argument("target", metavar="TO")
@click.argument("product_id")
@click.argument("batch_no")
@_quantity
@click.option("--note", default=None)
@_by
@click.pass_context
@_guarded
def transfer(
    ctx: click.Context,
    source: str,
    target: str,
    product_id: str,
    batch_no: str,
    quantity: int,
    note: str | None,
    by: str,
) -> None:
    """Qualified stock from one place to another: SITE:no1 (a storeroom; SITE:no1/dispatch for
    its dispatch zone) or SITE:transit (with a technician, on the way to the boxes)."""
    c = _Ctx(ctx)
    fs, fp, _, fz = _place(c.lang, source)
    ts, tp, _, tz = _place(c.lang, target)
    entry = en.Transfer(
        from_site=fs,
        from_place=fp,
        to_site=ts,
        to_place=tp,
        product=product_id,
        batch=batch_no,
        quantity=quantity,
        from_zone=fz,
        to_zone=tz,
        note=note,
        by=by,
    )
    _enter(c, book.one(entry))


@click.command()
@click.argument("where", metavar="PLACE")
@click.argument("product_id")
@click.argument("batch_no")
@click.argument("quantity", type=click.IntRange(-10_000_000, 10_000_000))
@click.option(
    "--reason",
    type=click.Choice(["expired", "damaged", "lost", "found", "correction"]),
    required=True,
)
@click.option("--note", default=None)
@_by
@click.pass_context
@_guarded
def adjust(
    ctx: click.Context,
    where: str,
    product_id: str,
    batch_no: str,
    quantity: int,
    reason: str,
    note: str | None,
    by: str,
) -> None:
    """Correct what PLACE holds (SITE:no1[/ZONE], SITE:transit, SITE:BOX#SLOT) by QUANTITY
    (negative to take off), with the reason: a new movement, never an edit."""
    c = _Ctx(ctx)
    s, p, slot, zone = _place(c.lang, where)
    entry = en.Adjustment(
        site=s,
        place=p,
        slot=slot,
        zone=zone,
        product=product_id,
        batch=batch_no,
        quantity=quantity,
        reason=reason,
        note=note,
        by=by,
    )
    _enter(c, book.one(entry))


@click.command()
@_in_storeroom
@click.option("--reason", required=True, help="How it was destroyed or sent back.")
@_by
@click.pass_context
@_guarded
def dispose(
    ctx: click.Context,
    site_id: str,
    storeroom: str,
    product_id: str,
    batch_no: str,
    quantity: int,
    reason: str,
    by: str,
) -> None:
    """Unqualified stock (red zone) destroyed or sent back: it leaves the books."""
    c = _Ctx(ctx)
    entry = en.Disposal(
        site=site_id,
        storeroom=storeroom,
        product=product_id,
        batch=batch_no,
        quantity=quantity,
        reason=reason,
        by=by,
    )
    _enter(c, book.one(entry))


@click.command("return")
@click.argument("source", metavar="FROM")
@click.argument("target", metavar="SITE:STOREROOM")
@click.argument("product_id")
@click.argument("batch_no")
@_quantity
@click.option("--reason", default=None, help="Why it comes back (damaged, recalled, unused).")
@_by
@click.pass_context
@_guarded
def return_(ctx: click.Context, source: str, target: str, product_id: str, batch_no: str,
            quantity: int, reason: str | None, by: str) -> None:  # fmt: skip
    """Stock coming back into a storeroom's returned zone (yellow) to wait for an inspection
    (inspect --returned): FROM is SITE:transit (what a technician took out of a box; its
    returned zone unless FROM ends in /qualified) or a storeroom, SITE:no1[/ZONE]."""
    c = _Ctx(ctx)
    fs, fp, slot, fz = _place(c.lang, source)
    if "/" not in source:
        fz = "returned" if fp == TRANSIT else "qualified"
    if slot or fp not in (*STOREROOMS, TRANSIT) or fz not in ("qualified", "returned"):
        _fail(c.lang, "return.from", value=source)
    ts, tp, tslot, _ = _place(c.lang, target)
    if tp not in STOREROOMS or tslot or "/" in target:
        _fail(c.lang, "return.to", value=target)
    entry = en.Return(
        from_site=fs, from_place=fp, from_zone=fz, to_site=ts, to_storeroom=tp,
        product=product_id, batch=batch_no, quantity=quantity, reason=reason, by=by,
    )  # fmt: skip
    _enter(c, book.one(entry))


@click.command()
@click.argument("where", metavar="PLACE")
@click.option(
    "--line",
    "lines",
    multiple=True,
    metavar="PRODUCT:BATCH:QUANTITY[:ZONE]",
    help="What was counted (repeatable).",
)
@click.option("--partial", is_flag=True, help="Count only the listed batches.")
@click.option("--note", default=None)
@_by
@click.pass_context
@_guarded
def stocktake(
    ctx: click.Context, where: str, lines: tuple[str, ...], partial: bool, note: str | None, by: str
) -> None:
    """A physical count of PLACE: the books are set to what was found and the difference is
    recorded. What the books hold there and no line lists was counted 0, unless --partial."""
    c = _Ctx(ctx)
    s, p, slot, _ = _place(c.lang, where)
    counted = []
    for text in lines:
        parts = text.split(":")
        if (
            len(parts) not in (3, 4)
            or not parts[2].isdigit()
            or (len(parts) == 4 and parts[3] not in en.ZONES)
        ):
            _fail(c.lang, "line.bad", value=text)
        zone = parts[3] if len(parts) == 4 else "qualified"
        counted.append(
            en.CountLine(
                zone=zone, product=parts[0], batch=parts[1], counted=int(parts[2]), expected=0
            )
        )
    seqs = book.enter(
        c.ingest,
        book.stocktake(s, p, slot, counted, by, partial=partial, note=note),
        datetime.now(UTC),
        c.today,
    )
    m = ledger_movements
    with c.engine.connect() as conn:
        differ = conn.execute(
            sa.select(sa.func.count(sa.distinct(m.c.batch))).where(
                m.c.agent_id == COUNTY_AGENT, m.c.seq == seqs[0]
            )
        ).scalar_one()
    click.echo(
        say(c.lang, "entered", first=seqs[0]) + " " + say(c.lang, "stocktake.done", n=differ)
    )
    if not partial:
        click.echo(say(c.lang, "stocktake.zeroed"))


# --- what is where ------------------------------------------------------------------------------


@click.command()
@click.option("--site", "site_id", default=None, help="A site and every site below it.")
@click.option("--place", default=None)
@click.option("--product", "product_id", default=None)
@click.option("--batch", "batch_no", default=None)
@click.option("--zone", type=click.Choice(en.ZONES), default=None)
@click.option(
    "--expiring",
    type=click.IntRange(0, 3650),
    default=None,
    metavar="DAYS",
    help="Only batches expiring within DAYS (0: expired).",
)
@click.option(
    "--by-batch",
    is_flag=True,
    help="One line per batch (all its places together), soonest expiry first: the expiry report.",
)
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.pass_context
@_guarded
def stock(
    ctx: click.Context,
    site_id: str | None,
    place: str | None,
    product_id: str | None,
    batch_no: str | None,
    zone: str | None,
    expiring: int | None,
    by_batch: bool,
    lang: str | None,
) -> None:
    """Stock on hand by place, zone, product and batch, with expiry warnings (180/90/30 days);
    with --by-batch, each batch's total, soonest expiry first."""
    c = _Ctx(ctx)
    shown = language(c.config, lang)
    before = None if expiring is None else c.today + timedelta(days=expiring or 0)
    if expiring == 0:
        before = c.today
    with c.engine.connect() as conn:
        lines = queries.stock(
            conn,
            site=site_id,
            place=place,
            product=product_id,
            batch=batch_no,
            zone=zone,
            expiring_before=before,
        )
        unplaced = queries.unplaced_sites(conn)
    if unplaced:
        click.echo(say(shown, "stock.unplaced", sites=", ".join(unplaced)), err=True)
    if not lines:
        click.echo(say(shown, "stock.none"))
        return
    keys: tuple[str, ...]
    if by_batch:
        keys = ("product", "batch", "expiry", "days_to_expiry", "quantity", "places", "warning")
        rows = [_batch_row(total, shown, c.today) for total in queries.by_batch(lines)]
    else:
        keys = ("site", "place", "zone", "product", "batch", "expiry", "quantity", "warning")
        rows = [_row(line, shown, c.today) for line in lines]
    click.echo(table([TEXTS[f"col.{k}"][shown] for k in keys], rows))


def _batch_row(total: queries.BatchTotal, lang: Language, today: date) -> list[str]:
    band = queries.expiry_band(total.expiry, today)
    notes = [TEXTS[f"expiry.{band}"][lang]] if band is not None else []
    if total.negative:
        notes.append(TEXTS["negative"][lang])
    return [
        total.product,
        total.batch,
        total.expiry.isoformat() if total.expiry else "-",
        str((total.expiry - today).days) if total.expiry else "-",
        str(total.quantity),
        str(total.places),
        " ".join(notes),
    ]


def _row(line: queries.StockLine, lang: Language, today: date) -> list[str]:
    where = line.place + (f"#{line.slot}" if line.slot else "")
    band = queries.expiry_band(line.expiry, today)
    notes = [TEXTS[f"expiry.{band}"][lang]] if band is not None else []
    if line.quantity < 0:
        notes.append(TEXTS["negative"][lang])
    zone = TEXTS[f"zone.{line.zone}"][lang] if line.place in STOREROOMS else "-"
    return [
        line.site,
        where if line.place != TRANSIT else TRANSIT,
        zone,
        line.product,
        line.batch,
        line.expiry.isoformat() if line.expiry else "-",
        str(line.quantity),
        " ".join(notes),
    ]


@click.command()
@click.argument("source", metavar="FROM")
@click.argument("product_id")
@_quantity
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.pass_context
@_guarded
def suggest(ctx: click.Context, source: str, product_id: str, quantity: int,
            lang: str | None) -> None:  # fmt: skip
    """Which batches to send QUANTITY of PRODUCT from (FROM: SITE:no1 or SITE:transit), first
    expiry first out, never an expired one: the ``transfer`` lines to enter."""
    c = _Ctx(ctx)
    shown = language(c.config, lang)
    s, p, slot, zone = _place(shown, source)
    with c.engine.connect() as conn:
        lines = queries.stock(conn, product=product_id, place=p, zone=zone)
    held = {(line.batch, line.expiry): line.quantity for line in lines
            if line.site == s and line.slot == slot}  # fmt: skip
    picks, missing = rules.fefo(held, quantity, c.today)
    expiry = {batch: when for batch, when in held}
    rows = []
    for batch, n in picks:
        when = expiry[batch]
        rows.append([batch, when.isoformat() if when else "-", str(n)])
    if rows:
        keys = ("batch", "expiry", "quantity")
        click.echo(table([TEXTS[f"col.{k}"][shown] for k in keys], rows))
    if missing:
        click.echo(say(shown, "suggest.short", missing=missing))


@click.group()
def restock() -> None:
    """Restocking the boxes: proposals from their dispensing rate, and approval as an order."""


@restock.command("propose")
@click.option("--site", "site_id", default=None, help="Only boxes at this site and below it.")
@click.option("--days", type=click.IntRange(1, 365), default=30, show_default=True,
              help="The dispensing rate is taken over this many days.")  # fmt: skip
@click.option("--below", type=click.IntRange(1, 365), default=14, show_default=True,
              help="Propose for slots that empty within this many days.")  # fmt: skip
@click.option("--cover", type=click.IntRange(1, 365), default=30, show_default=True,
              help="Load enough for this many days.")  # fmt: skip
@click.option("--now", "as_of", default=None, metavar="TIME",
              help="As of this time (2026-10-10 08:00 in server.timezone, or ISO 8601 with an "
              "offset), not the clock's: the rate, the orders and expiry then; the stock as it "
              "is now.")  # fmt: skip
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.pass_context
@_guarded
def restock_propose(ctx: click.Context, site_id: str | None, days: int, below: int, cover: int,
                    as_of: str | None, lang: str | None) -> None:  # fmt: skip
    """For each box slot that runs out soon at its recent rate: how much to load, and which
    batches of its township's qualified stock, first expiry first out."""
    c = _Ctx(ctx)
    shown = language(c.config, lang)
    zone = c.config.server.zone
    now = now_or_exit(as_of, zone, shown)
    with c.engine.connect() as conn:
        sites = set(queries.within(conn, site_id)) if site_id else None
        found = restocking.proposals(conn, now, now.astimezone(zone).date(), within=sites,
                                     days=days, below=below, cover=cover)  # fmt: skip
    rows = [
        [
            p.site, f"{p.box}#{p.slot}", p.product, str(p.on_hand), f"{p.per_day:.1f}",
            "-" if p.days_left is None else f"{p.days_left:.0f}", str(p.quantity),
            f"{p.source}:{p.storeroom}",
            " ".join(f"{b}×{n}" for b, n in p.picks) + (f" -{p.missing}" if p.missing else ""),
        ]
        for p in found
    ]  # fmt: skip
    if not rows:
        click.echo(say(shown, "restock.none", below=below))
        return
    keys = ("site", "slot", "product", "quantity", "per_day", "days_left", "propose", "from",
            "batches")  # fmt: skip
    click.echo(table([TEXTS[f"col.{k}"][shown] for k in keys], rows))


@restock.command("approve")
@click.argument("where", metavar="SITE:BOX#SLOT")
@click.argument("batch_no")
@_quantity
@click.option("--from", "source", required=True, metavar="SITE:no1",
              help="The storeroom the technician takes it from.")  # fmt: skip
@_by
@click.pass_context
@_guarded
def restock_approve(ctx: click.Context, where: str, batch_no: str, quantity: int, source: str,
                    by: str) -> None:  # fmt: skip
    """Approve loading QUANTITY of BATCH into a box's slot: the stock goes from the storeroom to
    the box's site in transit (with the technician), and the box's agent gets the order, which
    its display shows when the technician opens the door."""
    c = _Ctx(ctx)
    site_id, box, slot, _ = _place(c.lang, where)
    from_site, room, from_slot, _ = _place(c.lang, source)
    if not slot:
        _fail(c.lang, "place.box_needs_slot", place=box)
    if room not in STOREROOMS or from_slot or "/" in source:
        _fail(c.lang, "restock.from", value=source)
    approval = restocking.Approval(site=site_id, box=box, slot=slot, batch=batch_no,
                                   quantity=quantity, from_site=from_site, from_storeroom=room,
                                   by=by)  # fmt: skip

    def build(conn: sa.Connection, catalog: rules.Catalog) -> list[en.LedgerEntry]:
        return restocking.approve(conn, catalog, c.config.mqtt.topic_prefix, approval,
                                  datetime.now(UTC))  # fmt: skip

    _enter(c, build)


@click.command()
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--site", "site_id", default=None, help="A site and every site below it.")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Up to the start of this day.")  # fmt: skip
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.pass_context
@_guarded
def movements(ctx: click.Context, out: Path, site_id: str | None, start: datetime | None,
              end: datetime | None, lang: str | None) -> None:  # fmt: skip
    """Every movement (in order of entry) as CSV: UTF-8 with a byte-order mark, times in UTC
    and in the server's zone; days are the server's zone's."""
    c = _Ctx(ctx)
    shown = language(c.config, lang)
    zone = c.config.server.zone
    since = start.replace(tzinfo=zone) if start else None
    until = end.replace(tzinfo=zone) if end else None
    keys = ("id", "utc", "local", "kind", "product", "batch", "quantity", "from", "to",
            "reason", "by", "source")  # fmt: skip
    written = 0
    try:
        with csv_file(out) as writer:
            writer.writerow([TEXTS[f"csv.{k}"][shown] for k in keys])
            after = 0
            while True:
                with c.engine.connect() as conn:
                    rows = queries.movements(conn, site=site_id, since=since, until=until,
                                             after_id=after, limit=5000)  # fmt: skip
                if not rows:
                    break
                for m in rows:
                    writer.writerow([
                        m.id, m.occurred_at.isoformat(),
                        m.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
                        TEXTS[f"kind.{m.kind}"][shown], m.product, m.batch, m.quantity,
                        m.source, m.target, m.reason or "", m.entered_by or "", m.agent_id,
                    ])  # fmt: skip
                written += len(rows)
                after = rows[-1].id
    except OSError:
        _fail(shown, "csv.unwritable", path=out)
    click.echo(say(shown, "csv.written", n=written, path=out))


#: Registered at the top level of ``edge-server`` (the issue names them so).
COMMANDS = [product, site, batch, receive, inspect, transfer, return_, suggest, adjust, dispose,
            stocktake, stock, movements, restock]  # fmt: skip
