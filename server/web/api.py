"""The HTTP API (``/api/v1``): what every page shows, as JSON, for scripts and for the pages'
own live parts. An API token (``Authorization: Bearer``) or a browser session; the OpenAPI
description is at ``/api/openapi.json``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, Field

from edge_agent.wire import Batch, Ident, SlotNumber
from server.alerts import queries as alert_queries
from server.alerts.lifecycle import AlertError
from server.cards import queries as card_queries
from server.cards import registry
from server.cards.identify import card_key, of_typed_uid
from server.cards.registry import Issue, RegistryError
from server.climate import history
from server.climate import sheet as sheets
from server.ledger import book
from server.ledger import queries as ledger_queries
from server.ledger import restock as restocking
from server.ledger.entries import LedgerEntry, Zone
from server.ledger.rules import Catalog, LedgerError
from server.users import store
from server.users.roles import Permission
from server.web import views
from server.web.auth import WebError, Who, allowed, in_scope, signed_in, state

router = APIRouter(prefix="/api/v1", tags=["api"])
MONTH = re.compile(r"^(?P<y>\d{4})-(?P<m>\d{2})$")

Viewer = Annotated[Who, Depends(allowed(Permission.VIEW))]


class Me(BaseModel):
    name: str
    display: str
    role: str
    scope: str
    permissions: list[str]


@router.get("/me")
def me(who: Annotated[Who, Depends(signed_in)]) -> Me:
    """Who the caller is and what they may do."""
    return Me(
        name=who.user.name,
        display=who.user.display,
        role=str(who.user.role),
        scope=who.user.scope,
        permissions=sorted(str(p) for p in Permission if who.can(p)),
    )


@router.get("/overview")
def overview(request: Request, who: Viewer) -> views.Overview:
    """Every site in the caller's scope now: liveness, each storeroom's state and latest
    reading, each box's state."""
    web = state(request)
    config = web.config
    return views.overview(
        who, web.engine, config.alerts.range_for, web.now(),
        timedelta(seconds=config.ingest.offline_after_s), config.server.zone,
    )  # fmt: skip


def check_room(request: Request, who: Who, site: str, storeroom: str) -> None:
    in_scope(who, site)
    with state(request).engine.connect() as conn:
        if not history.room_known(conn, site, storeroom):
            raise WebError(404, "room.unknown", site=site, room=storeroom)


@router.get("/climate/{site}/{storeroom}")
def climate(request: Request, who: Viewer, site: str, storeroom: str,
            window: views.Window = "24h") -> views.Climate:  # fmt: skip
    """A storeroom's temperature and humidity over the window, downsampled on the server past
    two days, with its limits, excursions and MKT."""
    check_room(request, who, site, storeroom)
    web = state(request)
    config = web.config
    return views.climate(
        site, storeroom, window, web.engine, config.alerts.range_for(site, storeroom),
        web.now(), config.server.zone, config.climate.mkt_delta_h_over_r_k,
    )  # fmt: skip


@router.get("/alerts")
def alerts(
    request: Request, who: Viewer, everything: Annotated[bool, Query(alias="all")] = False
) -> list[views.AlertRow]:
    """Open alerts in the caller's scope (``all=true``: resolved ones too), the most severe
    and oldest first."""
    return views.alerts(who, state(request).engine, everything)


def _alert_in_scope(request: Request, who: Who, alert_id: int) -> None:
    site = views.alert_site(state(request).engine, alert_id)
    if site is None or not who.sees(site):
        raise WebError(404, "alert.unknown", alert=alert_id)


@router.get("/alerts/{alert_id}/told")
def told(request: Request, who: Viewer, alert_id: int) -> list[views.Told]:
    """Who was told of the alert, over which channel, and whether it was delivered."""
    _alert_in_scope(request, who, alert_id)
    return views.told(state(request).engine, alert_id)


class AckBody(BaseModel):
    #: The regulating action taken (开启除湿机); it goes on the monthly record sheet.
    action: str | None = Field(default=None, max_length=200)


class Acked(BaseModel):
    key: str
    entry: int
    by: str


@router.post("/alerts/{alert_id}/ack")
def acknowledge(request: Request, alert_id: int,
                who: Annotated[Who, Depends(allowed(Permission.ALERTS_ACK))],
                body: Annotated[AckBody | None, Body()] = None) -> Acked:  # fmt: skip
    """Acknowledge an open alert with the action taken: escalation stops, and the entry (who,
    when, what) is journaled."""
    _alert_in_scope(request, who, alert_id)
    return ack(request, who, alert_id, body.action if body else None)


def ack(request: Request, who: Who, alert_id: int, action: str | None) -> Acked:
    web = state(request)
    try:
        key, entry = alert_queries.acknowledge(
            web.ingestor, str(alert_id), who.name, (action or "").strip() or None, web.now()
        )
    except AlertError as exc:
        raise WebError(409, exc.key, **exc.fields) from None
    except ValueError:
        raise WebError(422, "ack.invalid") from None
    return Acked(key=key, entry=entry, by=who.name)


@router.get("/stock")
def stock(request: Request, who: Viewer, site: str | None = None, place: str | None = None,
          product: str | None = None, batch: str | None = None,
          zone: Zone | None = None,
          expiring_days: Annotated[int | None, Query(ge=0, le=3650)] = None,
          ) -> list[views.StockRow]:  # fmt: skip
    """Stock on hand by place, product, batch and zone in the caller's scope, with each
    batch's expiry band."""
    web = state(request)
    if site is not None:
        in_scope(who, site)
    today = web.now().astimezone(web.config.server.zone).date()
    return views.stock(
        who, web.engine, today, site=site, place=place, product=product, batch=batch,
        zone=zone, expiring_days=expiring_days,
    )  # fmt: skip


@router.get("/restock")
def restock_proposals(
    request: Request, who: Viewer, site: str | None = None,
    below: Annotated[int, Query(ge=1, le=365)] = 14,
    cover: Annotated[int, Query(ge=1, le=365)] = 30,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> list[restocking.Proposal]:  # fmt: skip
    """Box slots that empty within ``below`` days at their rate over ``days``: how much to load
    for ``cover`` days, and the batches of the source's qualified stock to take, first expiry
    first out."""
    web = state(request)
    if site is not None:
        in_scope(who, site)
    now = web.now()
    today = now.astimezone(web.config.server.zone).date()
    with web.engine.connect() as conn:
        sites = set(ledger_queries.within(conn, site)) if site else None
        if who.sites is not None:
            sites = set(who.sites) if sites is None else sites & who.sites
        found = restocking.proposals(conn, now, today, within=sites, days=days, below=below,
                                     cover=cover)  # fmt: skip
    # What a storeroom outside one's scope holds is not shown, as ``/stock`` would not.
    return [
        p if who.sees(p.source) else replace(p, picks=(), missing=0)
        for p in found
        if who.sees(p.site)
    ]


class RestockBody(BaseModel):
    site: Ident
    box: Ident
    slot: SlotNumber
    batch: Batch
    quantity: int = Field(ge=1, le=restocking.MOST)
    from_site: Ident
    from_storeroom: Literal["no1", "no2", "no3"]


class RestockApproved(BaseModel):
    #: The county's entries journaled (their sequence numbers).
    entries: list[int]
    by: str


@router.post("/restock")
def approve_restock(request: Request, body: RestockBody,
                    who: Annotated[Who, Depends(allowed(Permission.RESTOCK_APPROVE))],
                    ) -> RestockApproved:  # fmt: skip
    """Approve loading a box's slot: the stock leaves the storeroom for the box's site, in
    transit with the technician, and the box's agent gets the order."""
    web = state(request)
    in_scope(who, body.site)
    in_scope(who, body.from_site)
    approval = restocking.Approval(
        site=body.site, box=body.box, slot=body.slot, batch=body.batch, quantity=body.quantity,
        from_site=body.from_site, from_storeroom=body.from_storeroom, by=who.name,
    )  # fmt: skip
    now = web.now()

    def build(conn: sa.Connection, catalog: Catalog) -> list[LedgerEntry]:
        return restocking.approve(conn, catalog, web.config.mqtt.topic_prefix, approval, now)

    try:
        numbers = book.enter(
            web.ingestor, build, now, now.astimezone(web.config.server.zone).date()
        )
    except LedgerError as exc:
        raise WebError(409, exc.key, **exc.fields) from None
    return RestockApproved(entries=numbers, by=who.name)


def month_of(value: str) -> tuple[int, int]:
    found = MONTH.match(value.strip())
    if found is None or not 1 <= int(found["m"]) <= 12:
        raise WebError(422, "bad.month")
    return int(found["y"]), int(found["m"])


def record_sheet(request: Request, who: Who, site: str, storeroom: str,
                 month: str) -> sheets.Sheet:  # fmt: skip
    check_room(request, who, site, storeroom)
    year, number = month_of(month)
    web = state(request)
    config = web.config
    with web.engine.connect() as conn:
        return sheets.load(
            conn, site, storeroom, year, number, config.server.zone,
            config.alerts.range_for(site, storeroom), config.climate.check_times,
            now=web.now(),
            delta_h_over_r_k=config.climate.mkt_delta_h_over_r_k,
        )  # fmt: skip


@router.get("/reports/sheet/{site}/{storeroom}")
def sheet(request: Request, who: Viewer, site: str, storeroom: str,
          month: str) -> sheets.Sheet:  # fmt: skip
    """The month's temperature and humidity record sheet of a storeroom (YYYY-MM)."""
    return record_sheet(request, who, site, storeroom, month)


def month_span(request: Request, month: str) -> tuple[str, datetime, datetime]:
    year, number = month_of(month)
    start, end = sheets.month_span(year, number, state(request).config.server.zone)
    return f"{year}-{number:02d}", start, end


@router.get("/boxes")
def boxes(request: Request, who: Viewer) -> list[views.BoxRow]:
    """Every box in the caller's scope: slots, stock, open faults, last contact, 7 days."""
    web = state(request)
    return views.boxes(who, web.engine, web.config.server.zone, web.now())


@router.get("/reports/stock/{site}")
def stock_report(request: Request, who: Viewer, site: str, month: str) -> views.StockReport:
    """The station's monthly stock report (YYYY-MM): per product and batch, opening, received,
    transferred in and out, dispensed, adjusted, closing."""
    in_scope(who, site)
    shown, start, end = month_span(request, month)
    return views.stock_report(state(request).engine, site, shown, start, end)


@router.get("/reports/dispensing")
def dispensing(request: Request, who: Viewer, month: str) -> views.Dispensing:
    """Each dispensing point's month (YYYY-MM): the books beside the box's own records, and
    the points used far less or more than the median flagged."""
    shown, start, end = month_span(request, month)
    return views.dispensing(who, state(request).engine, shown, start, end)


CardsAdmin = Annotated[Who, Depends(allowed(Permission.CARDS_ADMIN))]


@router.get("/cards")
def cards(
    request: Request, who: CardsAdmin, status: Literal["active", "lost", "revoked"] | None = None
) -> list[views.CardRow]:
    """The card registry (pseudonyms only: no card number and no holder ever leaves it)."""
    return views.cards(state(request).engine, status)


class CardIssue(BaseModel):
    #: The card's UID as its reader shows it (hex); pseudonymised here with the county key and
    #: never stored.
    uid: str = Field(min_length=4, max_length=40)
    role: Literal["villager", "technician"] | None = None
    group: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")


class CardDone(BaseModel):
    card: str
    change: str
    status: str
    version: int


def _registry(request: Request, who: Who, action: str, make: Callable[[], CardDone]) -> CardDone:
    web = state(request)
    try:
        done = make()
    except RegistryError as exc:
        raise WebError(409 if exc.key.startswith("key.") else 422, exc.key, **exc.fields) from None
    with web.engine.begin() as conn:
        store.record(conn, who.name, action, done.card, done.change, web.now())
    return done


@router.post("/cards")
def issue_card(request: Request, who: CardsAdmin, body: CardIssue) -> CardDone:
    """Register a card (or make a lost or revoked one active again)."""
    web = state(request)

    def make() -> CardDone:
        pseudonym = of_typed_uid(card_key(web.config.cards.key_file), body.uid)
        wanted = Issue(pseudonym, body.role, body.group, None)
        [done] = registry.issue(web.engine, [wanted], web.now())
        return CardDone(card=pseudonym[:12], change=done.change, status="active",
                        version=done.version)  # fmt: skip

    return _registry(request, who, "card.issue", make)


@router.post("/cards/{card}/{status}")
def card_status(request: Request, who: CardsAdmin, card: str,
                status: Literal["lost", "revoked"]) -> CardDone:  # fmt: skip
    """Report a card lost, or revoke it: every box refuses it from its next sync."""
    web = state(request)

    def make() -> CardDone:
        pseudonym = card_queries.find_card(web.engine, card)
        done = registry.set_status(web.engine, pseudonym, status, web.now())
        return CardDone(card=pseudonym[:12], change=done.change, status=status,
                        version=done.version)  # fmt: skip

    return _registry(request, who, f"card.{status}", make)
