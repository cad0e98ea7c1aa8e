"""The dashboard and the API over a real uvicorn server and a real SQLite file: every page's
data, logins (limits, sessions, CSRF), API tokens, roles and scopes, bad input, metrics."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from server.alerts.projection import AlertsProjection
from server.cabinet.projection import CabinetProjection
from server.cards.identify import make_key
from server.climate.projection import ClimateProjection
from server.config import ServerConfig
from server.ingest.core import Ingestor
from server.ledger import book
from server.ledger import entries as en
from server.ledger.projection import LedgerProjection
from server.store.db import make_engine, migrate
from server.store.schema import alerts, audit_log, commands, ledger_movements
from server.users import store
from server.web.app import create_app
from tests.support import free_port, wait_for
from tests.test_alerts_projection import events
from tests.test_boxes_projection import dispense, ev, restock

NOW = datetime.now(UTC).replace(microsecond=0)
BY = "王会计"
PASSWORD = "correct horse battery"
#: Who is who: name → (role, scope).
PEOPLE = {
    "admin": ("admin", "*"),
    "keeper": ("keeper", "county"),
    "tech": ("technician", "county"),
    "citytech": ("technician", "city"),
    "viewer": ("viewer", "county"),
    "townkeeper": ("keeper", "town"),
    "lockme": ("viewer", "*"),
}
#: Dispensing points: (agent, site, takes this month). The median is 5: 1 is under-used, 20 over.
BOXES = [("vbox-1", "town", "box-1", 1), ("vbox-2", "town", "box-2", 5),
         ("vbox-3", "county", "box-3", 20)]  # fmt: skip
SITES = [
    en.SiteEntry(site="city", name="市", level="city", by=BY),
    en.SiteEntry(site="county", name="县站", level="county", parent="city", by=BY),
    en.SiteEntry(site="town", name="镇站", level="township", parent="county", by=BY),
    en.SiteEntry(site="other", name="邻县", level="county", parent="city", by=BY),
]


Event = tuple[str, dict[str, Any], datetime]


def record(t: float, at: datetime, room: str = "no2", h: float = 55.0) -> Event:
    return ("climate.record", {
        "storeroom": room, "sensor": f"{room}-a", "temperature_c": t, "humidity_pct": h,
        "raw_temperature_c": t, "raw_humidity_pct": h,
    }, at)  # fmt: skip


def seed(engine: sa.Engine) -> None:
    """A county station (agent station-1 at site ``county``): 3 days of records in no2, the
    last hour too warm (a firing alert); no1 in range; stock received in no1."""
    feed = Ingestor(
        engine, "fp",
        projections=[ClimateProjection(), LedgerProjection(), CabinetProjection(),
                     AlertsProjection(now=lambda: NOW)],
    )  # fmt: skip
    start = NOW - timedelta(days=3)
    payloads = [record(22.0, start + timedelta(minutes=30 * i)) for i in range(3 * 48 - 2)]
    payloads += [record(32.0, NOW - timedelta(minutes=m)) for m in (50, 30, 10, 1)]
    payloads += [record(21.0, NOW - timedelta(minutes=m), room="no1") for m in (40, 5)]
    seq = 1
    for i in range(0, len(payloads), 200):
        part = payloads[i : i + 200]
        feed.handle("fp/v1/county/station-1/events", events(seq, *part), NOW)
        seq += len(part)
    product = en.ProductEntry(product="condom-a", name_zh="避孕套", name_en="Condoms",
                              storeroom="no1", group="condoms", by=BY)  # fmt: skip
    soon = (NOW + timedelta(days=20)).date()
    master: list[en.LedgerEntry] = [
        *SITES, product, en.BatchEntry(product="condom-a", batch="B1", expiry=soon, by=BY),
        en.BatchEntry(product="condom-a", batch="B2", expiry=date(2030, 1, 1), by=BY),
    ]  # fmt: skip
    receipts = [
        en.Receipt(site="county", storeroom="no1", product="condom-a", batch=b, quantity=q, by=BY)
        for b, q in (("B1", 40), ("B2", 500))
    ]
    book.enter(feed, lambda conn, catalog: [*master, *receipts], NOW, NOW.date())
    # fmt: off
    for agent, site, box, takes in BOXES:
        at = NOW - timedelta(hours=2)
        loaded = ev(1, "cabinet.restock", restock(1, 30, box=box), agent=agent,
                    occurred_at=at.isoformat())
        taken = [ev(2 + i, "cabinet.dispense", dispense(1, 29 - i, box=box), agent=agent,
                    occurred_at=(at + timedelta(minutes=i)).isoformat()) for i in range(takes)]
        body = {"v": 1, "agent_id": agent, "epoch": "e1e1e1e1", "sent_at": NOW.isoformat(),
                "events": [loaded, *taken]}
        feed.handle(f"fp/v1/{site}/{agent}/events", json.dumps(body).encode(), NOW)
    # fmt: on
    with engine.begin() as conn:
        for name, (role, scope) in PEOPLE.items():
            store.add(conn, name, role, scope, PASSWORD, "test", NOW, display=name.title())


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded database per module (and worker); each test works on its own copy."""
    path = tmp_path_factory.mktemp("web") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    seed(engine)
    engine.dispose()
    return path


@dataclass
class Web:
    url: str
    engine: sa.Engine

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=20, **kw)

    def login(self, name: str, password: str = PASSWORD) -> httpx.Client:
        c = self.client()
        r = c.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
        assert csrf, r.text
        r = c.post("/login", data={"name": name, "password": password, "csrf": csrf[1]})
        assert r.status_code == 303, r.text
        return c

    def csrf(self, c: httpx.Client) -> str:
        found = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").text)
        assert found
        return found[1]

    def token(self, name: str) -> str:
        with self.engine.begin() as conn:
            return store.make_token(conn, name, "test", "test", NOW)


@pytest.fixture
def web(template: Path, tmp_path: Path) -> Iterator[Web]:
    db = tmp_path / "server.db"
    shutil.copy(template, db)
    key = tmp_path / "card.key"
    make_key(key)
    config = ServerConfig.model_validate(
        {"database": {"url": f"sqlite:///{db}"}, "cards": {"key_file": str(key)},
         "alerts": {"limits": {"default": {"temperature_c": [10, 30], "humidity_pct": [35, 75]}}}}
    )  # fmt: skip
    engine = make_engine(config.database.url)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, engine, clock=lambda: NOW),
            host="127.0.0.1",
            port=port,
            log_config=None,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, what="uvicorn started")
    try:
        yield Web(f"http://127.0.0.1:{port}", engine)
    finally:
        server.should_exit = True
        thread.join(10)
        engine.dispose()


# --- logging in -------------------------------------------------------------------------------


def test_a_page_without_a_session_goes_to_the_login_and_the_api_says_401(web: Web) -> None:
    with web.client() as c:
        r = c.get("/stock")
        assert (r.status_code, r.headers["location"]) == (303, "/login?next=/stock")
        r = c.get("/api/v1/overview")
        assert r.status_code == 401
        assert r.json() == {"error": "auth.required", "message": "请先登录"}
        assert c.get("/api/v1/overview?lang=en").json()["message"] == "please log in"


def test_login_opens_a_session_and_logout_ends_it(web: Web) -> None:
    c = web.login("viewer")
    page = c.get("/")
    assert page.status_code == 200
    assert "各站点现状" in page.text
    cookie = c.cookies.get("fp_session")
    assert cookie
    set_cookie = [v for k, v in page.headers.multi_items() if k == "set-cookie"]
    assert all("fp_session" not in v for v in set_cookie)
    r = c.post("/logout", data={"csrf": web.csrf(c)})
    assert r.status_code == 303
    with web.client() as other:
        other.cookies.set("fp_session", cookie)
        assert other.get("/api/v1/me").status_code == 401, "the session is gone on the server"


def test_a_wrong_password_is_refused_in_chinese_and_guessing_is_limited(web: Web) -> None:
    with web.client() as c:
        page = c.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        for _ in range(store.FAILURES_PER_NAME):
            r = c.post("/login", data={"name": "lockme", "password": "nope", "csrf": csrf[1]})
            assert r.status_code == 401
            assert "用户名或密码不对" in r.text
            assert "fp_session" not in r.headers.get("set-cookie", "")
        r = c.post("/login", data={"name": "lockme", "password": PASSWORD, "csrf": csrf[1]})
        assert r.status_code == 429, "locked out even with the right password"
        assert "登录失败次数过多" in r.text
        r = c.post("/login", data={"name": "nobody", "password": "x", "csrf": csrf[1]})
        assert r.status_code == 401, "an unknown name reads as a wrong password"
        assert "用户名或密码不对" in r.text


def test_a_login_without_its_form_token_is_refused(web: Web) -> None:
    with web.client() as c:
        r = c.post("/login", data={"name": "admin", "password": PASSWORD, "csrf": "forged"})
        assert r.status_code == 403


def test_a_change_by_a_browser_needs_the_csrf_token_and_this_origin(web: Web) -> None:
    c = web.login("keeper")
    alert = c.get("/api/v1/alerts").json()[0]
    r = c.post(f"/api/v1/alerts/{alert['id']}/ack", json={"action": "开空调"})
    assert r.status_code == 403
    assert r.json()["error"] == "csrf.missing"
    r = c.post(f"/api/v1/alerts/{alert['id']}/ack", json={"action": "开空调"},
               headers={"x-csrf-token": web.csrf(c), "origin": "http://evil.example"})  # fmt: skip
    assert (r.status_code, r.json()["error"]) == (403, "csrf.origin")


# --- roles and scopes -------------------------------------------------------------------------


def test_a_viewer_cannot_acknowledge_and_a_keeper_can_with_the_action_recorded(web: Web) -> None:
    viewer = web.login("viewer")
    [alert] = [a for a in viewer.get("/api/v1/alerts").json() if a["rule"] == "climate.range"]
    assert (alert["site"], alert["state"]) == ("county", "firing")
    r = viewer.post(f"/api/v1/alerts/{alert['id']}/ack", json={"action": "x"},
                    headers={"x-csrf-token": web.csrf(viewer)})  # fmt: skip
    assert (r.status_code, r.json()["error"]) == (403, "auth.forbidden")
    assert "/ack" not in viewer.get("/alerts").text, "no acknowledgement form for a viewer"

    keeper = web.login("keeper")
    page = keeper.post(f"/alerts/{alert['id']}/ack",
                       data={"action": "开启空调", "csrf": web.csrf(keeper)})  # fmt: skip
    assert page.status_code == 303
    shown = keeper.get(page.headers["location"])
    assert "已确认告警" in shown.text
    with web.engine.connect() as conn:
        row = conn.execute(sa.select(alerts).where(alerts.c.id == alert["id"])).one()
    assert (row.state, row.acked_by, row.action) == ("acknowledged", "keeper", "开启空调")
    again = keeper.post(f"/api/v1/alerts/{alert['id']}/ack", json={"action": "再开除湿机"},
                        headers={"x-csrf-token": web.csrf(keeper)})  # fmt: skip
    assert again.status_code == 200, "a later action on an open alert is recorded too"
    assert keeper.get(f"/api/v1/alerts/{alert['id']}/told").status_code == 200


def test_a_township_keeper_sees_only_the_township(web: Web) -> None:
    c = web.login("townkeeper")
    assert [s["site"] for s in c.get("/api/v1/overview").json()["sites"]] == ["town"]
    assert {b["agent_id"] for b in c.get("/api/v1/boxes").json()} == {"vbox-1", "vbox-2"}
    assert c.get("/api/v1/alerts").json() == []
    r = c.get("/api/v1/climate/county/no2")
    assert r.status_code == 404, "a site outside one's scope does not exist for one"
    assert {r["site"] for r in c.get("/api/v1/stock").json()} == {"town"}
    assert c.get("/api/v1/stock?site=county").status_code == 404
    county = web.login("keeper")
    seen = [s["site"] for s in county.get("/api/v1/overview").json()["sites"]]
    assert seen == ["county", "town"]


def test_an_api_token_acts_as_its_person_until_revoked_or_disabled(web: Web) -> None:
    token = web.token("tech")
    with web.client(headers={"authorization": f"Bearer {token}"}) as c:
        me = c.get("/api/v1/me").json()
        assert (me["name"], me["role"]) == ("tech", "technician")
        assert "cards.admin" not in me["permissions"]
        alert = c.get("/api/v1/alerts").json()[0]
        r = c.post(f"/api/v1/alerts/{alert['id']}/ack", json={"action": "换传感器"})
        assert r.status_code == 200, "a token needs no CSRF token: browsers never send it"
        assert r.json()["by"] == "tech"
        with web.engine.begin() as conn:
            store.revoke_tokens(conn, "tech", None, "test", NOW)
        assert c.get("/api/v1/me").status_code == 401
    token = web.token("viewer")
    with web.engine.begin() as conn:
        store.set_disabled(conn, "viewer", True, "test", NOW)
        actions = [r.action for r in conn.execute(sa.select(audit_log))]
    assert {"user.add", "token.make", "token.revoke", "user.disable"} <= set(actions)
    with web.client(headers={"authorization": f"Bearer {token}"}) as c:
        assert c.get("/api/v1/me").status_code == 401


# --- each page's data ---------------------------------------------------------------------------


def test_the_overview_shows_each_storeroom_now(web: Web) -> None:
    c = web.login("admin")
    sites = c.get("/api/v1/overview").json()["sites"]
    assert [s["site"] for s in sites] == ["county", "town"]
    site = sites[0]
    assert (site["site"], site["name"], site["level"]) == ("county", "县站", "county")
    assert [b["agent_id"] for b in site["boxes"]] == ["vbox-3"]
    rooms = {r["storeroom"]: r for r in site["storerooms"]}
    assert rooms["no2"]["state"] == "alarm"
    assert rooms["no2"]["temperature_c"] == 32.0
    assert rooms["no1"]["state"] == "ok"
    assert rooms["no1"]["temperature_c"] == 21.0
    assert site["open_alerts"] >= 1
    page = c.get("/")
    assert "超限" in page.text
    assert "1号库" in page.text
    part = c.get("/partials/overview")
    assert part.status_code == 200
    assert "<html" not in part.text


def test_the_climate_chart_is_raw_for_a_day_and_downsampled_for_a_month(web: Web) -> None:
    c = web.login("viewer")
    day = c.get("/api/v1/climate/county/no2?window=24h").json()
    assert day["bucket_s"] is None
    assert day["limits"] == {"temperature_c": [10.0, 30.0], "humidity_pct": [35.0, 75.0]}
    assert day["excursions"]
    assert day["excursions"][-1]["end"] is None
    assert day["excursions"][-1]["temperature_max_c"] == 32.0
    assert day["mkt_c"] is not None
    assert 22.0 < day["mkt_c"] < 32.0
    month = c.get("/api/v1/climate/county/no2?window=30d").json()
    assert month["bucket_s"] is not None
    assert month["bucket_s"] >= 900
    assert len(month["points"]) < month["records"]
    assert sum(1 for p in month["points"]) <= 3 * 86400 // month["bucket_s"] + 2
    page = c.get("/climate/county/no2?window=7d")
    assert page.status_code == 200
    assert 'data-chart="climate"' in page.text
    assert c.get("/api/v1/climate/county/no2?window=2y").status_code == 422
    assert c.get("/api/v1/climate/county/no9").status_code == 404


def test_stock_is_listed_with_expiry_highlighted(web: Web) -> None:
    c = web.login("viewer")
    rows = c.get("/api/v1/stock?site=county&place=no1").json()
    got = {(r["batch"], r["zone"], r["quantity"], r["expiry_band"]) for r in rows}
    assert got == {("B1", "awaiting", 40, 30), ("B2", "awaiting", 500, None)}
    soon = c.get("/api/v1/stock?expiring_days=60&place=no1").json()
    assert [r["batch"] for r in soon] == ["B1"]
    page = c.get("/stock")
    assert 'class="band30"' in page.text
    assert c.get("/api/v1/stock?zone=nowhere").status_code == 422


def test_the_record_sheet_is_a_page_a_csv_and_json(web: Web) -> None:
    c = web.login("keeper")
    month = NOW.astimezone(ServerConfig().server.zone).strftime("%Y-%m")
    data = c.get(f"/api/v1/reports/sheet/county/no2?month={month}").json()
    assert data["site"] == "county"
    assert data["days"]
    page = c.get(f"/reports/sheet/county/no2?month={month}")
    assert page.status_code == 200
    assert "库房温湿度记录表" in page.text
    assert "审核人" in page.text
    csv_file = c.get(f"/reports/sheet/county/no2?month={month}&format=csv")
    assert csv_file.headers["content-type"].startswith("text/csv")
    assert csv_file.text.startswith("\ufeff日期,时间")
    bad = c.get("/api/v1/reports/sheet/county/no2?month=2026-13")
    assert (bad.status_code, bad.json()["message"]) == (422, "月份应写作 2026-11")
    assert c.get("/reports/sheet/county/no2?month=13&lang=en").status_code == 422


def test_metrics_follow_prometheus_names(web: Web) -> None:
    with web.client(headers={"authorization": f"Bearer {web.token('admin')}"}) as c:
        text = c.get("/metrics").text
    assert re.search(r'^fpc_ingest_events_total\{agent="station-1",site="county"\} \d+', text, re.M)
    assert "# TYPE fpc_ingest_dead_letters_total counter" in text
    assert 'agent="county"' not in text, "the county's own entries are no agent to watch"
    assert re.search(r'^fpc_alerts_open\{.*rule="climate.range".*\} 1.0$', text, re.M)
    samples = [line for line in text.splitlines() if line and line[0] != "#"]
    names = {line.split("{")[0].split(" ")[0] for line in samples}
    assert all(n.startswith("fpc_") for n in names)
    with web.client() as anonymous:
        assert anonymous.get("/metrics").status_code == 401


def test_the_openapi_description_lists_every_api_path(web: Web) -> None:
    with web.client() as c:
        spec = c.get("/api/openapi.json").json()
    paths = set(spec["paths"])
    for path in ("/api/v1/overview", "/api/v1/climate/{site}/{storeroom}", "/api/v1/alerts",
                 "/api/v1/alerts/{alert_id}/ack", "/api/v1/stock", "/metrics",
                 "/api/v1/reports/sheet/{site}/{storeroom}"):  # fmt: skip
        assert path in paths
    assert "/login" not in paths


def test_garbage_gets_a_clear_error_and_changes_nothing(web: Web) -> None:
    c = web.login("keeper")
    csrf = {"x-csrf-token": web.csrf(c), "content-type": "application/json"}
    alert = c.get("/api/v1/alerts").json()[0]
    r = c.post(f"/api/v1/alerts/{alert['id']}/ack", content=b"\xff{not json", headers=csrf)
    assert r.status_code == 400
    assert r.json()["error"] == "bad.input"
    r = c.post(f"/api/v1/alerts/{alert['id']}/ack", json={"action": "x" * 201}, headers=csrf)
    assert r.status_code == 422
    r = c.post("/api/v1/alerts/999999/ack", json={}, headers=csrf)
    assert (r.status_code, r.json()["message"]) == (404, "没有编号为 999999 的告警")
    assert c.get("/api/v1/alerts").json()[0]["state"] == "firing"
    assert c.get("/nowhere").status_code == 404
    assert "Traceback" not in c.get("/nowhere").text


def month_now() -> str:
    return NOW.astimezone(ServerConfig().server.zone).strftime("%Y-%m")


def test_boxes_show_slots_and_days(web: Web) -> None:
    c = web.login("tech")
    found = {b["agent_id"]: b for b in c.get("/api/v1/boxes").json()}
    assert set(found) == {"vbox-1", "vbox-2", "vbox-3"}
    three = found["vbox-3"]
    assert three["slots"][0]["count"] == 10
    assert sum(d["dispensed"] for d in three["days"]) == 20
    page = c.get("/boxes")
    assert page.status_code == 200
    assert 'id="vbox-3-box-3"' in page.text


def test_the_stock_report_adds_up(web: Web) -> None:
    c = web.login("viewer")
    report = c.get(f"/api/v1/reports/stock/county?month={month_now()}").json()
    lines = {(x["product"], x["batch"]): x for x in report["lines"]}
    b2 = lines[("condom-a", "B2")]
    assert (b2["opening"], b2["received"], b2["closing"]) == (0, 500, 500)
    assert report["balanced"] is True
    b1 = lines[("condom-a", "B1")]
    assert b1["dispensed"] == 20, "the county's own box dispensed 20 (with books short)"
    assert (b1["opening"], b1["received"], b1["closing"]) == (0, 40, 40 - 20)
    page = c.get(f"/reports/stock/county?month={month_now()}")
    assert "药具进销存月报" in page.text
    got = c.get(f"/reports/stock/county?month={month_now()}&format=csv").text
    assert got.startswith("\ufeff品种,批号,期初,入库,调入,调出,发放,调整,期末")
    assert c.get("/api/v1/reports/stock/other?month=2026-01").status_code == 404
    assert c.get("/api/v1/reports/stock/county?month=2026/01").status_code == 422


def test_dispensing_flags_points_against_the_median(web: Web) -> None:
    c = web.login("viewer")
    data = c.get(f"/api/v1/reports/dispensing?month={month_now()}").json()
    assert data["median"] == 5
    assert len(data["points"]) == 3
    by_books = {p["books"]: p for p in data["points"]}
    assert by_books[1]["flag"] == "under"
    assert by_books[20]["flag"] == "over"
    assert by_books[5]["flag"] is None
    assert all(p["box_records"] == p["books"] for p in data["points"])
    page = c.get("/reports/dispensing")
    assert "使用偏少" in page.text
    assert "使用偏多" in page.text
    town = web.login("townkeeper")
    assert len(town.get(f"/api/v1/reports/dispensing?month={month_now()}").json()["points"]) == 2


def test_only_an_administrator_keeps_the_card_registry(web: Web, tmp_path: Path) -> None:
    tech = web.login("tech")
    assert tech.get("/api/v1/cards").status_code == 403
    r = tech.post("/api/v1/cards", json={"uid": "04A1B2C3D4E580"},
                  headers={"x-csrf-token": web.csrf(tech)})  # fmt: skip
    assert (r.status_code, r.json()["error"]) == (403, "auth.forbidden"), (
        "a technician cannot issue cards"
    )
    assert "/cards" not in tech.get("/").text.split("<main>")[0]
    admin = web.login("admin")
    csrf = {"x-csrf-token": web.csrf(admin)}
    r = admin.post("/api/v1/cards", json={"uid": "04A1B2C3D4E580"}, headers=csrf)
    assert r.status_code == 200, r.text
    card = r.json()["card"]
    assert (r.json()["change"], len(card)) == ("issued", 12)
    listed = admin.get("/api/v1/cards").json()
    assert [(c["card"], c["status"]) for c in listed] == [(card, "active")]
    page = admin.get("/cards").text
    assert card in page
    assert "04A1B2C3D4E580" not in page, "never the card's number"
    done = admin.post(f"/cards/{card}/lost", data={"csrf": web.csrf(admin)})
    assert done.status_code == 303
    assert f"卡 {card} 已挂失" in admin.get(done.headers["location"]).text
    assert admin.get("/api/v1/cards?status=lost").json()[0]["card"] == card
    bad = admin.post("/api/v1/cards", json={"uid": "not hex!"}, headers=csrf)
    assert (bad.status_code, bad.json()["error"]) == (422, "uid.bad")
    form = admin.post("/cards", data={"uid": "zz", "csrf": web.csrf(admin)})
    assert form.status_code == 422
    assert "卡号" in form.text
    with web.engine.connect() as conn:
        done_by = {(r.by, r.action) for r in conn.execute(sa.select(audit_log))}
    assert {("admin", "card.issue"), ("admin", "card.lost")} <= done_by


def test_the_record_sheet_page_shows_the_sheet_cell_by_cell(web: Web) -> None:
    from html import unescape

    from server.climate import sheet

    config = ServerConfig()
    zone = config.server.zone
    local = NOW.astimezone(zone)
    with web.engine.connect() as conn:
        made = sheet.load(conn, "county", "no2", local.year, local.month, zone,
                          config.alerts.range_for("county", "no2"), config.climate.check_times,
                          now=NOW)  # fmt: skip
    header, rows = sheet.rows(made, "zh")
    c = web.login("viewer")
    page = c.get(f"/reports/sheet/county/no2?month={month_now()}").text
    table = page.split('id="sheet">', 1)[1].split("</table>", 1)[0]
    cells = [
        [unescape(cell) for cell in re.findall(r"<t[dh]>(.*?)</t[dh]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
    ]
    assert cells == [header, *rows]


def test_a_technician_approves_a_proposed_restock_and_a_viewer_cannot(web: Web) -> None:
    """box-3 at the county (10 left, 20 taken in 30 days) runs out in 15 days: proposed within
    30; its source is the city, whose qualified B2 the proposal takes."""
    feed = Ingestor(web.engine, "fp", projections=[LedgerProjection()])
    book.enter(feed, lambda conn, catalog: [
        en.Receipt(site="city", storeroom="no1", product="condom-a", batch="B2", quantity=50,
                   by=BY),
        en.Inspection(site="city", storeroom="no1", product="condom-a", batch="B2", quantity=50,
                      result="qualified", by=BY),
    ], NOW, NOW.date())  # fmt: skip
    tech = web.login("citytech")
    assert tech.get("/api/v1/restock").json() == [], "15 days left: nothing within 14"
    [proposal] = tech.get("/api/v1/restock?below=30").json()
    assert (proposal["site"], proposal["box"], proposal["slot"]) == ("county", "box-3", 1)
    assert (proposal["on_hand"], proposal["quantity"]) == (10, 10), "for 30 days at 20 a month"
    assert (proposal["source"], proposal["storeroom"]) == ("city", "no1")
    assert (proposal["picks"], proposal["missing"]) == ([["B2", 10]], 0)
    page = tech.get("/stock?below=30").text
    assert 'action="/stock/restock"' in page
    assert "批准补货" in page

    viewer = web.login("viewer")
    assert 'action="/stock/restock"' not in viewer.get("/stock?below=30").text
    body = {"site": "county", "box": "box-3", "slot": 1, "batch": "B2", "quantity": 10,
            "from_site": "city", "from_storeroom": "no1"}  # fmt: skip
    r = viewer.post("/api/v1/restock", json=body, headers={"x-csrf-token": web.csrf(viewer)})
    assert (r.status_code, r.json()["error"]) == (403, "auth.forbidden")
    county_tech = web.login("tech")
    [seen] = county_tech.get("/api/v1/restock?below=30").json()
    assert (seen["quantity"], seen["picks"]) == (10, []), "not the city's stock, outside scope"
    assert "box-3 #1" in county_tech.get("/stock?below=30").text, "proposed to the county too"
    assert 'action="/stock/restock"' not in county_tech.get("/stock?below=30").text, (
        "but not to approve: the city's storeroom is outside the county's scope"
    )
    r = county_tech.post("/api/v1/restock", json=body,
                         headers={"x-csrf-token": web.csrf(county_tech)})  # fmt: skip
    assert r.status_code == 404
    too_many = tech.post("/api/v1/restock", json={**body, "quantity": 60},
                         headers={"x-csrf-token": web.csrf(tech)})  # fmt: skip
    assert too_many.status_code == 409, too_many.text
    assert "Traceback" not in too_many.text
    assert too_many.json()["message"]

    form = {k: str(v) for k, v in body.items()} | {"quantity": "12", "csrf": web.csrf(tech)}
    done = tech.post("/stock/restock", data=form)
    assert done.status_code == 303, done.text
    assert "已批准：box-3#1 补 B2 × 12" in tech.get(done.headers["location"]).text
    with web.engine.connect() as conn:
        assert conn.execute(sa.select(ledger_movements.c.entered_by).where(
            ledger_movements.c.to_place == "transit")).scalar_one() == "citytech"  # fmt: skip
    # (B1 is below zero in transit: the seeded boxes were loaded with no transfer before.)
    transit = tech.get("/api/v1/stock?site=county&place=transit&batch=B2").json()
    assert [(s["batch"], s["quantity"]) for s in transit] == [("B2", 12)]
    with web.engine.connect() as conn:
        orders = conn.execute(
            sa.select(commands.c.agent_id, commands.c.message).where(
                commands.c.kind == "restock.order"
            )
        ).all()
    assert [(a, '"quantity":12' in m) for a, m in orders] == [("vbox-3", True)], (
        "one order: the refused approval queued none"
    )
    assert tech.get("/api/v1/restock?below=30").json() == [], (
        "ordered and not loaded yet: counted as on hand, so not proposed twice"
    )
    bad = tech.post("/stock/restock", data={**form, "quantity": "lots"})
    assert bad.status_code == 422
    assert "补货数量须为" in bad.text
    huge = tech.post("/api/v1/restock", json={**body, "quantity": 10_001},
                     headers={"x-csrf-token": web.csrf(tech)})  # fmt: skip
    assert huge.status_code == 422, "more than an order can carry"


def test_the_reports_download_as_pdf_with_a_chinese_font(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The printed page laid out by WeasyPrint: a PDF that embeds a CJK font (fonts-noto-cjk),
    fetched nothing from outside; the stock and dispensing reports likewise."""
    c = web.login("keeper")
    month = NOW.astimezone(ServerConfig().server.zone).strftime("%Y-%m")
    page = c.get(f"/reports/sheet/county/no2?month={month}")
    assert "format=pdf" in page.text
    for path in (f"/reports/sheet/county/no2?month={month}&format=pdf",
                 f"/reports/stock/county?month={month}&format=pdf",
                 f"/reports/dispensing?month={month}&format=pdf"):  # fmt: skip
        made = c.get(path)
        assert made.status_code == 200, made.text
        assert made.headers["content-type"] == "application/pdf"
        assert made.headers["content-disposition"].endswith('.pdf"')
        assert made.content.startswith(b"%PDF-")
        fonts = re.findall(rb"/FontName\s*/[A-Z]{6}\+([\w-]+)", inflated(made.content))
        assert any(f.startswith(b"Noto-Sans-CJK-SC") for f in fonts), (path, fonts)
    # A server without the extra (import fails as it does without WeasyPrint or Pango).
    monkeypatch.setitem(sys.modules, "weasyprint", None)
    missing = c.get(f"/reports/stock/county?month={month}&format=pdf")
    assert missing.status_code == 503
    assert "PDF" in missing.text
    assert "浏览器打印" in missing.text
    assert "ImportError" not in missing.text


def inflated(pdf: bytes) -> bytes:
    """A PDF's compressed streams (WeasyPrint packs even the fonts' names in them), inflated."""
    out = []
    for found in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        with contextlib.suppress(zlib.error):
            out.append(zlib.decompress(found[1]))
    return b"".join(out)
