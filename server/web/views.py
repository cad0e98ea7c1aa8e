"""What each page shows, as the pydantic models the API returns and the pages render: built
from the domains' own queries, cut to the sites the person sees."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from datetime import date, datetime, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import BaseModel

from server.alerts import queries as alert_queries
from server.alerts.signals import Range
from server.cabinet import queries as box_queries
from server.cards import queries as card_queries
from server.climate import history
from server.climate import queries as climate_queries
from server.ledger import entries as ledger_entries
from server.ledger import queries as ledger_queries
from server.ledger import reports
from server.link import agent_links
from server.web.auth import Who

#: A storeroom with no record for this long is shown as silent.
STALE_AFTER = timedelta(minutes=15)
#: What a climate chart may show, and how far back.
WINDOWS: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "1y": timedelta(days=365),
}
Window = Literal["24h", "7d", "30d", "1y"]
ROOM_RULES = ("climate.range", "climate.room", "climate.sensor", "climate.exposure")
ZONES: tuple[str, ...] = ledger_entries.ZONES
#: The server's limits of a site's storeroom (``AlertsSection.range_for``).
LimitsOf = Callable[[str, str], Range]


class Limits(BaseModel):
    temperature_c: tuple[float, float]
    humidity_pct: tuple[float, float]

    @classmethod
    def of(cls, limits: Range) -> Limits:
        return cls(temperature_c=limits.temperature_c, humidity_pct=limits.humidity_pct)


class RoomNow(BaseModel):
    storeroom: str
    state: Literal["ok", "alarm", "stale", "fault"]
    temperature_c: float | None
    humidity_pct: float | None
    at: datetime | None
    sensors: int
    limits: Limits
    open_alerts: int


class BoxNow(BaseModel):
    agent_id: str
    box: str
    state: Literal["ok", "fault", "empty", "offline"]
    slots: int
    empty_slots: int
    open_faults: int
    door: str | None
    board: str | None
    last_contact: datetime | None
    dispensed_7d: int


class SiteNow(BaseModel):
    site: str
    name: str
    level: str | None
    agent_online: bool | None
    last_heard_at: datetime | None
    open_alerts: int
    storerooms: list[RoomNow]
    boxes: list[BoxNow]


class Overview(BaseModel):
    at: datetime
    sites: list[SiteNow]


def _room_state(readings: list[climate_queries.Reading], limits: Range, alerts: int,
                fault: bool, now: datetime) -> str:  # fmt: skip
    if not readings or max(r.occurred_at for r in readings) < now - STALE_AFTER:
        return "stale"
    if fault:
        return "fault"
    mean_t = sum(r.temperature_c for r in readings) / len(readings)
    mean_h = sum(r.humidity_pct for r in readings) / len(readings)
    if limits.outside(mean_t, mean_h) or alerts:
        return "alarm"
    return "ok"


def overview(who: Who, engine: sa.Engine, limits_of: LimitsOf, now: datetime,
             offline_after: timedelta, zone: ZoneInfo) -> Overview:  # fmt: skip
    """Every site the person sees: its agent's liveness, each storeroom's latest reading and
    state, each box's state."""
    links = [
        link
        for link in agent_links(engine, now, offline_after, field_only=True)
        if who.sees(link.site_id)
    ]
    boxes = [b for b in box_queries.boxes(engine, zone, now) if who.sees(b.site_id)]
    with engine.connect() as conn:
        catalog = ledger_queries.catalog(conn)
        open_alerts = [a for a in alert_queries.listed(conn, limit=10_000) if who.sees(a.site)]
        site_ids = sorted({link.site_id for link in links} | {b.site_id for b in boxes})
        sites: list[SiteNow] = []
        for site in site_ids:
            rooms: list[RoomNow] = []
            for room in climate_queries.storerooms(conn, site):
                readings = climate_queries.room_now(conn, site, room, now - STALE_AFTER)
                mine = [
                    a for a in open_alerts
                    if a.site == site and a.rule in ROOM_RULES and a.subject.startswith(room)
                ]  # fmt: skip
                fault = any(a.rule == "climate.sensor" for a in mine)
                limits = limits_of(site, room)
                n = len(readings)
                rooms.append(
                    RoomNow(
                        storeroom=room,
                        state=_room_state(readings, limits, len(mine), fault, now),
                        temperature_c=round(sum(r.temperature_c for r in readings) / n, 1)
                        if n else None,
                        humidity_pct=round(sum(r.humidity_pct for r in readings) / n, 1)
                        if n else None,
                        at=max(r.occurred_at for r in readings) if n else None,
                        sensors=n,
                        limits=Limits.of(limits),
                        open_alerts=len(mine),
                    )
                )  # fmt: skip
            here = [link for link in links if link.site_id == site]
            known = catalog.sites.get(site)
            sites.append(
                SiteNow(
                    site=site,
                    name=known.name if known else site,
                    level=known.level if known else None,
                    agent_online=_all_online([link.online for link in here]),
                    last_heard_at=max((link.last_heard_at for link in here), default=None),
                    open_alerts=sum(1 for a in open_alerts if a.site == site),
                    storerooms=rooms,
                    boxes=[_box_now(b) for b in boxes if b.site_id == site],
                )
            )
    return Overview(at=now, sites=sites)


def _all_online(states: list[bool | None]) -> bool | None:
    if not states:
        return None
    if any(s is False for s in states):
        return False
    return True if all(s for s in states) else None


def _box_now(box: box_queries.Box) -> BoxNow:
    empty = sum(1 for s in box.slots if s.state == "empty" or s.count == 0)
    if box.board is not None and box.board.value == "offline":
        state = "offline"
    elif box.faults:
        state = "fault"
    elif empty:
        state = "empty"
    else:
        state = "ok"
    contacts = [x.at for x in (box.board, box.door) if x is not None]
    contacts += [s.changed_at for s in box.slots]
    return BoxNow(
        agent_id=box.agent_id,
        box=box.box,
        state=state,
        slots=len(box.slots),
        empty_slots=empty,
        open_faults=len(box.faults),
        door=box.door.value if box.door else None,
        board=box.board.value if box.board else None,
        last_contact=max(contacts, default=None),
        dispensed_7d=sum(d.dispensed for d in box.days),
    )


# --- climate ---------------------------------------------------------------------------------


class ChartPoint(BaseModel):
    at: datetime
    t_min: float
    t_mean: float
    t_max: float
    h_min: float
    h_mean: float
    h_max: float


class Excursion(BaseModel):
    start: datetime
    end: datetime | None
    duration_s: float
    temperature_max_c: float
    temperature_min_c: float
    humidity_max_pct: float
    humidity_min_pct: float


class Climate(BaseModel):
    site: str
    storeroom: str
    window: str
    start: datetime
    end: datetime
    #: Seconds per point when downsampled on the server; None: every record.
    bucket_s: int | None
    limits: Limits
    points: list[ChartPoint]
    excursions: list[Excursion]
    mkt_c: float | None
    records: int


def climate(site: str, room: str, window: str, engine: sa.Engine, limits: Range, now: datetime,
            zone: tzinfo, delta_h_over_r_k: float) -> Climate:  # fmt: skip
    """The storeroom's chart over the window: every record up to 2 days, buckets beyond (so a
    year is a few hundred points, not half a million), the limits, the stretches out of them,
    and the window's MKT."""
    start, end = now - WINDOWS[window], now
    with engine.connect() as conn:
        series = history.series(conn, site, room, start, end, zone=zone)
        kinetic = history.mkt(conn, site, room, start, end, delta_h_over_r_k=delta_h_over_r_k)
    points = [
        ChartPoint(
            at=p.at, t_min=p.temperature_min_c, t_mean=p.temperature_mean_c,
            t_max=p.temperature_max_c, h_min=p.humidity_min_pct, h_mean=p.humidity_mean_pct,
            h_max=p.humidity_max_pct,
        )
        for p in series.points
    ]  # fmt: skip
    return Climate(
        site=site,
        storeroom=room,
        window=window,
        start=start,
        end=end,
        bucket_s=series.bucket_s,
        limits=Limits.of(limits),
        points=points,
        excursions=_excursions(points, limits, series.bucket_s),
        mkt_c=round(kinetic.mkt_c, 2) if kinetic else None,
        records=series.records,
    )


def _excursions(points: list[ChartPoint], limits: Range, bucket_s: int | None) -> list[Excursion]:
    """Runs of points beyond the limits (a bucket counts when its extremes are beyond)."""
    out: list[Excursion] = []
    run: list[ChartPoint] = []
    step = timedelta(seconds=bucket_s or 0)

    def close(next_at: datetime | None) -> None:
        if not run:
            return
        end = next_at if next_at is not None else run[-1].at + step
        out.append(
            Excursion(
                start=run[0].at, end=end if next_at is not None else None,
                duration_s=(end - run[0].at).total_seconds(),
                temperature_max_c=max(p.t_max for p in run),
                temperature_min_c=min(p.t_min for p in run),
                humidity_max_pct=max(p.h_max for p in run),
                humidity_min_pct=min(p.h_min for p in run),
            )
        )  # fmt: skip
        run.clear()

    for p in points:
        beyond = limits.outside(p.t_max, p.h_max) or limits.outside(p.t_min, p.h_min)
        if beyond:
            run.append(p)
        else:
            close(p.at)
    close(None)
    return out


# --- alerts ----------------------------------------------------------------------------------


class AlertRow(BaseModel):
    id: int
    key: str
    rule: str
    site: str
    subject: str
    severity: str
    state: str
    since: datetime
    fired_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None
    action: str | None
    resolved_at: datetime | None
    detail: dict[str, object]


def alerts(who: Who, engine: sa.Engine, everything: bool) -> list[AlertRow]:
    with engine.connect() as conn:
        rows = alert_queries.listed(conn, everything, limit=500)
    return [
        AlertRow(
            id=r.id, key=r.key, rule=r.rule, site=r.site, subject=r.subject,
            severity=r.severity, state=r.state, since=r.since, fired_at=r.fired_at,
            acked_at=r.acked_at, acked_by=r.acked_by, action=r.action,
            resolved_at=r.resolved_at, detail=json.loads(r.detail),
        )
        for r in rows
        if who.sees(r.site)
    ]  # fmt: skip


class Told(BaseModel):
    told_at: datetime
    level: int
    reason: str
    channel: str
    recipient: str
    status: str
    sent_at: datetime | None


def told(engine: sa.Engine, alert_id: int) -> list[Told]:
    with engine.connect() as conn:
        rows = alert_queries.told(conn, alert_id)
    return [
        Told(
            told_at=r.told_at, level=r.level, reason=r.reason, channel=r.channel,
            recipient=r.recipient, status=r.status, sent_at=r.sent_at,
        )
        for r in rows
    ]  # fmt: skip


def alert_site(engine: sa.Engine, alert_id: int) -> str | None:
    with engine.connect() as conn:
        return alert_queries.site_of(conn, alert_id)


# --- stock -----------------------------------------------------------------------------------


class StockRow(BaseModel):
    site: str
    place: str
    slot: int
    zone: str
    product: str
    batch: str
    expiry: date | None
    quantity: int
    #: 0 when expired, else the tightest warning (180/90/30 days) it is within; None: neither.
    expiry_band: int | None


def stock(who: Who, engine: sa.Engine, today: date, *, site: str | None, place: str | None,
          product: str | None, batch: str | None, zone: str | None,
          expiring_days: int | None) -> list[StockRow]:  # fmt: skip
    before = today + timedelta(days=expiring_days) if expiring_days is not None else None
    with engine.connect() as conn:
        lines = ledger_queries.stock(
            conn, site=site, place=place, product=product, batch=batch, zone=zone,
            expiring_before=before,
        )  # fmt: skip
    return [
        StockRow(
            site=s.site, place=s.place, slot=s.slot, zone=s.zone, product=s.product,
            batch=s.batch, expiry=s.expiry, quantity=s.quantity,
            expiry_band=ledger_queries.expiry_band(s.expiry, today),
        )
        for s in lines
        if who.sees(s.site)
    ]  # fmt: skip


# --- boxes -------------------------------------------------------------------------------------


class BoxRow(BaseModel):
    site: str
    agent_id: str
    box: str
    state: Literal["ok", "fault", "empty", "offline"]
    board: str | None
    door: str | None
    last_contact: datetime | None
    #: The domains' own records, served as they are (pydantic reads dataclasses).
    slots: list[box_queries.Slot]
    faults: list[box_queries.Fault]
    days: list[box_queries.Day]


def boxes(who: Who, engine: sa.Engine, zone: ZoneInfo, now: datetime) -> list[BoxRow]:
    """Every box in the person's scope: its slots, open faults, last contact, last 7 days."""
    out = []
    for b in box_queries.boxes(engine, zone, now):
        if not who.sees(b.site_id):
            continue
        summary = _box_now(b)
        out.append(
            BoxRow(
                site=b.site_id, agent_id=b.agent_id, box=b.box, state=summary.state,
                board=summary.board, door=summary.door, last_contact=summary.last_contact,
                slots=b.slots, faults=b.faults, days=b.days,
            )
        )  # fmt: skip
    return out


# --- the monthly reports -------------------------------------------------------------------------


class StockReport(BaseModel):
    site: str
    name: str
    month: str
    lines: list[reports.StockReportLine]
    #: Every line's opening plus its columns is its closing.
    balanced: bool


def stock_report(engine: sa.Engine, site: str, month: str, start: datetime,
                 end: datetime) -> StockReport:  # fmt: skip
    with engine.connect() as conn:
        lines = reports.stock_report(conn, site, start, end)
        known = ledger_queries.catalog(conn).sites.get(site)
    return StockReport(
        site=site,
        name=known.name if known else site,
        month=month,
        lines=lines,
        balanced=all(reports.balanced(line) for line in lines),
    )


class PointRow(BaseModel):
    site: str
    box: str
    books: int
    box_records: int
    differs: bool
    flag: Literal["under", "over"] | None
    of_median: float | None


class Dispensing(BaseModel):
    month: str
    median: float
    under_below: float = reports.UNDER
    over_above: float = reports.OVER
    points: list[PointRow]


def dispensing(who: Who, engine: sa.Engine, month: str, start: datetime,
               end: datetime) -> Dispensing:  # fmt: skip
    """Every dispensing point's month: the books and the box's own records side by side,
    flagged against the median of all the points (of the county: all points the person sees)."""
    with engine.connect() as conn:
        books = reports.dispensed_in_books(conn, start, end)
        recorded = box_queries.dispensed(conn, start, end)
        known = box_queries.known_boxes(conn)
    mine = {k: v for k, v in books.items() if who.sees(k[0])}
    theirs = {k: v for k, v in recorded.items() if who.sees(k[0])}
    found = reports.points(mine, theirs, [k for k in known if who.sees(k[0])])
    values = [p.books for p in found]
    return Dispensing(
        month=month,
        median=float(statistics.median(values)) if values else 0.0,
        points=[
            PointRow(site=p.site, box=p.box, books=p.books, box_records=p.box_records,
                     differs=p.differs, flag=p.flag,
                     of_median=None if p.of_median is None else round(p.of_median, 2))
            for p in found
        ],
    )  # fmt: skip


# --- the card registry ---------------------------------------------------------------------------


class CardRow(BaseModel):
    #: The pseudonym's first digits, as people are shown it: never a card's number.
    card: str
    status: str
    role: str
    group: str
    version: int
    issued_at: datetime
    updated_at: datetime


def cards(engine: sa.Engine, status: str | None) -> list[CardRow]:
    return [
        CardRow(card=c.pseudonym[:12], status=c.status, role=c.role, group=c.group,
                version=c.version, issued_at=c.issued_at, updated_at=c.updated_at)
        for c in card_queries.list_cards(engine, status=status)
    ]  # fmt: skip
