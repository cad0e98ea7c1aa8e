"""The dashboard's pages: server-rendered, each over the same views the API returns, with htmx
for the live parts and uPlot for the charts (both shipped in ``static/vendor``)."""

from __future__ import annotations

import csv
import hmac
import io
import secrets
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from server.climate import sheet as sheets
from server.users import store
from server.users.roles import Permission
from server.web import api, views
from server.web.app import language
from server.web.auth import (
    SESSION_COOKIE,
    WebError,
    Who,
    allowed,
    client_address,
    state,
)
from server.web.html import render, say
from server.web.pdf import render_pdf

router = APIRouter(include_in_schema=False)
LOGIN_COOKIE = "fp_login"

Viewer = Annotated[Who, Depends(allowed(Permission.VIEW))]


def setup_templates(templates: Jinja2Templates) -> None:
    templates.env.autoescape = True


# --- logging in and out ----------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    page = render(request, None, "login.html", login_csrf=token, next=_local_path(next))
    page.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                    secure=state(request).config.web.cookies_secure, max_age=3600)  # fmt: skip
    return page


def _local_path(target: str) -> str:
    """Only a path of this site to go back to after login (never another site)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.post("/login", response_model=None)
def login(request: Request, name: Annotated[str, Form(max_length=64)],
          password: Annotated[str, Form(max_length=256)],
          csrf: Annotated[str, Form(max_length=64)] = "",
          next: Annotated[str, Form(max_length=300)] = "/") -> Response:  # fmt: skip
    web = state(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf):
        raise WebError(403, "csrf.missing")
    lang = language(request)
    try:
        user = store.authenticate(web.engine, name, password, client_address(request), web.now())
    except store.UserError as exc:
        status = 429 if isinstance(exc, store.TooManyAttempts) else 401
        page = render(request, None, "login.html", status, login_csrf=expected,
                      next=_local_path(next), problem=say(lang, exc.key, **exc.fields))  # fmt: skip
        return page
    with web.engine.begin() as conn:
        token, _session = store.open_session(conn, user, web.now())
    done = RedirectResponse(_local_path(next), status_code=303)
    done.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                    secure=web.config.web.cookies_secure,
                    max_age=int(store.SESSION_LONGEST.total_seconds()))  # fmt: skip
    done.delete_cookie(LOGIN_COOKIE)
    return done


@router.post("/logout")
def logout(request: Request, who: Viewer) -> RedirectResponse:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with state(request).engine.begin() as conn:
            store.close_session(conn, cookie)
    done = RedirectResponse("/login", status_code=303)
    done.delete_cookie(SESSION_COOKIE)
    return done


# --- pages -------------------------------------------------------------------------------------


def _overview(request: Request, who: Who) -> views.Overview:
    return api.overview(request, who)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, who: Viewer) -> HTMLResponse:
    return render(request, who, "overview.html", data=_overview(request, who))


@router.get("/partials/overview", response_class=HTMLResponse)
def overview_part(request: Request, who: Viewer) -> HTMLResponse:
    return render(request, who, "_overview.html", data=_overview(request, who))


@router.get("/climate/{site}/{storeroom}", response_class=HTMLResponse)
def climate(request: Request, who: Viewer, site: str, storeroom: str,
            window: views.Window = "24h") -> HTMLResponse:  # fmt: skip
    data = api.climate(request, who, site, storeroom, window)
    lang = language(request)
    web = state(request)
    labels = {
        "at": say(lang, "col.at"), "t": say(lang, "col.temperature"), "tmin": "min",
        "tmax": "max",
        "h": say(lang, "col.humidity"), "tlo": "°C ↓", "thi": "°C ↑", "hlo": "%RH ↓",
        "hhi": "%RH ↑",
    }  # fmt: skip
    month = web.now().astimezone(web.config.server.zone).strftime("%Y-%m")
    return render(request, who, "climate.html", data=data, site=site, room=storeroom,
                  windows=list(views.WINDOWS), labels=labels, month=month)  # fmt: skip


@router.get("/alerts", response_class=HTMLResponse)
def alerts(request: Request, who: Viewer, all: str | None = None,
           site: str | None = None) -> HTMLResponse:  # fmt: skip
    rows = api.alerts(request, who, bool(all))
    if site is not None:
        rows = [r for r in rows if r.site == site]
    return render(request, who, "alerts.html", rows=rows, everything=bool(all),
                  may_ack=who.can(Permission.ALERTS_ACK))  # fmt: skip


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert(request: Request, who: Viewer, alert_id: int) -> HTMLResponse:
    told = api.told(request, who, alert_id)
    found = [r for r in views.alerts(who, state(request).engine, True) if r.id == alert_id]
    if not found:
        raise WebError(404, "alert.unknown", alert=alert_id)
    return render(request, who, "alert.html", alert=found[0], told=told,
                  may_ack=who.can(Permission.ALERTS_ACK))  # fmt: skip


@router.post("/alerts/{alert_id}/ack")
def acknowledge(request: Request, alert_id: int,
                who: Annotated[Who, Depends(allowed(Permission.ALERTS_ACK))],
                action: Annotated[str, Form(max_length=200)] = "") -> RedirectResponse:  # fmt: skip
    api.acknowledge(request, alert_id, who, api.AckBody(action=action or None))
    return RedirectResponse(f"/alerts/{alert_id}?done=alerts.acked&id={alert_id}", status_code=303)


@router.get("/stock", response_class=HTMLResponse)
def stock(request: Request, who: Viewer, site: str | None = None, product: str | None = None,
          batch: str | None = None, zone: str | None = None,
          expiring_days: str | None = None, below: str | None = None) -> HTMLResponse:  # fmt: skip
    days = int(expiring_days) if expiring_days and expiring_days.isdigit() else None
    chosen_zone = zone if zone in views.ZONES else None
    rows = api.stock(request, who, site or None, None, product or None, batch or None,
                     chosen_zone, days)  # type: ignore[arg-type]  # fmt: skip
    return render(request, who, "stock.html", rows=rows, site=site or "", product=product or "",
                  batch=batch or "", zone=chosen_zone or "", expiring_days=days,
                  zones=views.ZONES, **_restocking(request, who, site, below))  # fmt: skip


#: How far ahead the stock page looks for slots running out (days); the first is the default.
HORIZONS = (14, 7, 30, 60)


def _restocking(request: Request, who: Who, site: str | None,
                below: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The restock proposals beside the stock, and whether this person may approve them."""
    horizon = int(below) if below and below.isdigit() and int(below) in HORIZONS else HORIZONS[0]
    proposals = api.restock_proposals(request, who, site or None, below=horizon,
                                      cover=max(30, horizon), days=30)  # fmt: skip
    return {"proposals": proposals, "may_restock": who.can(Permission.RESTOCK_APPROVE),
            "below": horizon, "horizons": sorted(HORIZONS)}  # fmt: skip


@router.post("/stock/restock", response_model=None)
def approve_restock(request: Request,
                    who: Annotated[Who, Depends(allowed(Permission.RESTOCK_APPROVE))],
                    site: Annotated[str, Form(max_length=64)],
                    box: Annotated[str, Form(max_length=64)],
                    slot: Annotated[int, Form()], batch: Annotated[str, Form(max_length=64)],
                    quantity: Annotated[str, Form(max_length=12)],
                    from_site: Annotated[str, Form(max_length=64)],
                    from_storeroom: Annotated[str, Form(max_length=8)]) -> Response:  # fmt: skip
    lang = language(request)
    try:
        body = api.RestockBody.model_validate({
            "site": site, "box": box, "slot": slot, "batch": batch,
            "quantity": quantity.strip(), "from_site": from_site,
            "from_storeroom": from_storeroom,
        })  # fmt: skip
        api.approve_restock(request, body, who)
    except ValidationError:
        problem, status = say(lang, "restock.bad_input"), 422
    except WebError as exc:
        problem, status = say(lang, exc.key, **exc.fields), exc.status
    else:
        shown = urlencode({"done": "restock.approved", "box": f"{box}#{slot}", "batch": batch,
                           "quantity": body.quantity})  # fmt: skip
        return RedirectResponse(f"/stock?{shown}", status_code=303)
    rows = api.stock(request, who, None, None, None, None, None, None)
    return render(request, who, "stock.html", status, rows=rows, site="", product="", batch="",
                  zone="", expiring_days=None, zones=views.ZONES, problem=problem,
                  **_restocking(request, who, None))  # fmt: skip


@router.get("/reports/sheet/{site}/{storeroom}", response_model=None)
def sheet(request: Request, who: Viewer, site: str, storeroom: str, month: str,
          format: str = "html") -> Response:  # fmt: skip
    made = api.record_sheet(request, who, site, storeroom, month)
    lang = language(request)
    header, rows = sheets.rows(made, lang)
    if format == "csv":
        name = f"sheet-{site}-{storeroom}-{made.year}-{made.month:02d}.csv"
        return _csv(name, header, [list(r) for r in rows])
    zone = state(request).config.server.zone
    page = render(request, who, "sheet.html", made=made, header=header, rows=rows,
                  remarks=sheets.excursion_lines(made, lang, zone), site=site, room=storeroom,
                  month=f"{made.year}-{made.month:02d}")  # fmt: skip
    return _as_pdf(page, f"sheet-{site}-{storeroom}-{made.year}-{made.month:02d}.pdf", format)


def _as_pdf(page: HTMLResponse, name: str, format: str) -> Response:
    """The page itself, or (``format=pdf``) the page as its PDF download."""
    if format != "pdf":
        return page
    made = render_pdf(bytes(page.body).decode())
    saved = {"content-disposition": f'attachment; filename="{name}"'}
    return Response(made, media_type="application/pdf", headers=saved)


def _csv(name: str, header: list[str], rows: list[list[object]]) -> Response:
    out = io.StringIO()
    out.write("\ufeff")  # Excel reads Chinese only with the byte-order mark
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    saved = {"content-disposition": f'attachment; filename="{name}"'}
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=saved)


def _this_month(request: Request) -> str:
    web = state(request)
    return web.now().astimezone(web.config.server.zone).strftime("%Y-%m")


@router.get("/boxes", response_class=HTMLResponse)
def boxes(request: Request, who: Viewer) -> HTMLResponse:
    return render(request, who, "boxes.html", rows=api.boxes(request, who))


@router.get("/reports", response_class=HTMLResponse)
def reports(request: Request, who: Viewer, month: str | None = None) -> HTMLResponse:
    chosen = month or _this_month(request)
    api.month_of(chosen)
    data = api.overview(request, who)
    return render(request, who, "reports.html", sites=data.sites, month=chosen)


STOCK_COLUMNS = ("product", "batch", "opening", "received", "transferred_in",
                 "transferred_out", "dispensed", "adjusted", "closing")  # fmt: skip


@router.get("/reports/stock/{site}", response_model=None)
def stock_report(request: Request, who: Viewer, site: str, month: str,
                 format: str = "html") -> Response:  # fmt: skip
    data = api.stock_report(request, who, site, month)
    lang = language(request)
    header = [say(lang, f"report.{c}") for c in STOCK_COLUMNS]
    rows: list[list[object]] = [[getattr(line, c) for c in STOCK_COLUMNS] for line in data.lines]
    if format == "csv":
        return _csv(f"stock-{site}-{data.month}.csv", header, rows)
    page = render(request, who, "stock_report.html", data=data, header=header, rows=rows)
    return _as_pdf(page, f"stock-{site}-{data.month}.pdf", format)


@router.get("/reports/dispensing", response_model=None)
def dispensing(request: Request, who: Viewer, month: str | None = None,
               format: str = "html") -> Response:  # fmt: skip
    data = api.dispensing(request, who, month or _this_month(request))
    lang = language(request)
    if format == "csv":
        keys = ("site", "box", "books", "box_records", "of_median", "flag")
        rows: list[list[object]] = [
            [p.site, p.box, p.books, p.box_records, "" if p.of_median is None else p.of_median,
             "" if p.flag is None else say(lang, f"flag.{p.flag}")]
            for p in data.points
        ]  # fmt: skip
        return _csv(f"dispensing-{data.month}.csv", [say(lang, f"report.{k}") for k in keys], rows)
    page = render(request, who, "dispensing.html", data=data)
    return _as_pdf(page, f"dispensing-{data.month}.pdf", format)


@router.get("/cards", response_class=HTMLResponse)
def cards(request: Request, who: api.CardsAdmin, status: str | None = None) -> HTMLResponse:
    chosen = status if status in ("active", "lost", "revoked") else None
    rows = api.cards(request, who, chosen)  # type: ignore[arg-type]
    return render(request, who, "cards.html", rows=rows, shown=chosen or "")


@router.post("/cards", response_model=None)
def issue_card(request: Request, who: api.CardsAdmin, uid: Annotated[str, Form(max_length=40)],
               role: Annotated[str, Form()] = "villager",
               group: Annotated[str, Form(max_length=64)] = "") -> Response:  # fmt: skip
    lang = language(request)
    try:
        body = api.CardIssue.model_validate(
            {"uid": uid.strip(), "role": role if role in ("villager", "technician") else None,
             "group": group.strip() or None}
        )  # fmt: skip
        done = api.issue_card(request, who, body)
    except ValidationError:
        problem = say(lang, "cards.bad_input")
    except WebError as exc:
        problem = say(lang, exc.key, **exc.fields)
    else:
        shown = f"done=cards.issued&card={done.card}&change={quote(done.change)}"
        return RedirectResponse(f"/cards?{shown}", status_code=303)
    rows = api.cards(request, who, None)
    return render(request, who, "cards.html", 422, rows=rows, shown="", problem=problem)


@router.post("/cards/{card}/{status}")
def card_status(request: Request, who: api.CardsAdmin, card: str, status: str) -> RedirectResponse:
    if status not in ("lost", "revoked"):
        raise WebError(404, "not.found")
    done = api.card_status(request, who, card, status)  # type: ignore[arg-type]
    shown = f"done=cards.status_set&card={done.card}&status={status}"
    return RedirectResponse(f"/cards?{shown}", status_code=303)
