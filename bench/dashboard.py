"""Dashboard benchmark: each page's API data over a county's five years of history, and the
monthly record sheet as a page.

Run from the repository root with the project installed::

    python bench/dashboard.py [--sites 50] [--years 5] [--interval-min 30] [--requests 30]
                              [--alerts 300]

The store: a SQLite file of the real schema (``server.store.db.migrate``), filled directly,
not through ingest (five years of a county through the broker and ``Ingestor`` would take
hours; ingest's own speed is ``bench/alerts.py`` and ``bench/ledger.py``'s):

- ``climate_records``: ``--sites`` sites ``site-00``… of three storerooms (``no1``..``no3``),
  one sensor each (``no2-a``…), a record every ``--interval-min`` minutes for ``--years``
  years ending now (50 x 3 x 5 years every 30 minutes: 13.1 million rows). One agent per site
  (``agent-NN``, one outbox epoch), its sequence numbers counting up over its three rooms.
  They are written in SQL (one ``INSERT … SELECT`` over a template of the times and the
  storerooms, journal and ``synchronous`` off on this file only) in time order across every
  storeroom, as ingest writes them, with every index of the schema in place; clocks synced,
  the re-dating columns empty, as a synced agent's records are.
- ``agents`` and ``streams``: each site's agent, heard from now, online, its stream primary.
- the ledger, through ``book.enter`` on an ``Ingestor`` (as ``tests/test_web.py`` seeds it):
  a city, its county, five townships and the sites as villages under them, three products of two
  batches each, received at the county and at every township.
- ``alerts``: ``--alerts`` climate alerts (range, room, sensor) over the years, resolved,
  plus one acknowledged with an action in the record sheet's month on every site's ``no2``
  and one open (firing or acknowledged) on every other site, written as the alerts
  projection writes its rows.
- one administrator with an API token (``server.users.store``).

Boxes, dispenses and cards are not filled: the routes reading them are timed over none.

Then the real app (``server.web.app.create_app``) is served by uvicorn in a thread on
loopback, and requested with httpx and the token. Every ``GET`` route under ``/api/v1`` in
the app's OpenAPI description is timed (the climate chart once per window): a site's path and
query parameters are filled in (``site``: ``site-NN``, a different site at each request;
``storeroom``: ``no2``; ``month``: last month; ``alert_id``: an alert of the site), a route
with any other required parameter is skipped with a ``#`` line, and so is one that answers
other than 200. Each is requested once to warm up, then ``--requests`` times, one at a time.

Figures (``figure: NAME VALUE UNIT``):

- ``climate_rows``: records in the store; ``fill_s``: the time to build the whole store.
- ``page_p95_ms.ROUTE``: the 95th percentile of a route's request times, client side
  (``overview``, ``climate_24h``, ``climate_7d``, ``climate_30d``, ``climate_1y``,
  ``alerts``, ``stock``, ``reports_sheet`` and whatever else the API has).
- ``page_p95_ms``: the largest of them, the slowest page. Goal at most 200 ms.
- ``record_sheet_ms``: the median time of a month's record sheet of one storeroom rendered as
  the HTML page (``/reports/sheet/SITE/no2?month=``), over ``--requests`` sites.

Then, as ``#`` lines, the SQL of the ``--explain`` slowest routes: one request's statements
captured, each run again on its own (its rows fetched) and timed, the costliest (by their total
time) with ``EXPLAIN QUERY PLAN``.
"""

from __future__ import annotations

import argparse
import math
import random
import socket
import sqlite3
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from benchsupport import figure

from server.config import ServerConfig
from server.ingest.core import Ingestor
from server.ledger import book
from server.ledger import entries as en
from server.ledger.rules import Catalog
from server.projections import default_projections
from server.store.db import make_engine, migrate, statements
from server.store.schema import agents, alerts, streams
from server.users import store
from server.web.app import create_app
from server.web.views import WINDOWS

ROOMS = ("no1", "no2", "no3")
EPOCH = "e0e0e0e0"
BY = "bench"
PASSWORD = "benchmark password"
LIMITS = {"temperature_c": [10, 30], "humidity_pct": [35, 75]}
#: The sheet's check times are in this zone, and so is "last month".
ZONE = "Asia/Shanghai"
#: The API's own routes in the OpenAPI description.
API = "/api/v1"

# --- the store ---------------------------------------------------------------------------------

#: Every record time, ascending, with a temperature and humidity shape (yearly and daily
#: waves, noise) that every storeroom shares, shifted by its own offset.
_TIMES = """
INSERT INTO bench_times (i, at, t, h)
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :n)
SELECT i, strftime('%Y-%m-%d %H:%M:%S', :end - (:n - 1 - i) * :step, 'unixepoch') || '.000000',
    19 + 5 * sin((:end - (:n - 1 - i) * :step) * 1.99e-7)
       + 2 * sin((:end - (:n - 1 - i) * :step) * 7.27e-5) + (abs(random()) % 100) / 100.0,
    55 + 10 * sin((:end - (:n - 1 - i) * :step) * 1.99e-7 + 1) + (abs(random()) % 100) / 20.0
FROM s
"""
#: Every storeroom's record at each time, in time order (times outer, storerooms inner); now
#: and then (1 in 1999) one too warm.
_FILL = """
INSERT INTO climate_records (agent_id, epoch, seq, site_id, storeroom, sensor, serial,
    temperature_c, humidity_pct, raw_temperature_c, raw_humidity_pct, quality, occurred_at,
    clock_synced, time_corrected)
SELECT r.agent, :epoch, t.i * 3 + r.n + 1, r.site, r.room, r.sensor, r.serial,
    round(t.t + r.offset + CASE WHEN (t.i * 31 + r.k * 977) % 1999 = 0 THEN 12 ELSE 0 END, 2),
    t.h,
    round(t.t + r.offset + CASE WHEN (t.i * 31 + r.k * 977) % 1999 = 0 THEN 12 ELSE 0 END, 2)
    - 0.3, t.h + 1.5, '', t.at, 1, 0
FROM bench_times AS t CROSS JOIN bench_rooms AS r
"""


def site(n: int) -> str:
    return f"site-{n:02d}"


def agent(n: int) -> str:
    return f"agent-{n:02d}"


def township(n: int) -> str:
    return f"town-{n % 5}"


def fill_climate(path: Path, sites: int, years: int, step_s: int, end: datetime) -> int:
    """The records, written in SQL straight into the file; the number written."""
    n = int(years * 365.25 * 86400) // step_s
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000",
                       "temp_store = MEMORY"):  # fmt: skip
            db.execute(f"PRAGMA {pragma}")
        db.execute("CREATE TEMP TABLE bench_times (i INTEGER PRIMARY KEY, at TEXT, t REAL, h REAL)")
        db.execute(
            "CREATE TEMP TABLE bench_rooms (k INTEGER PRIMARY KEY, n INTEGER, agent TEXT, "
            "site TEXT, room TEXT, sensor TEXT, serial TEXT, offset REAL)"
        )
        db.execute(_TIMES, {"n": n, "end": int(end.timestamp()), "step": step_s})
        db.executemany(
            "INSERT INTO bench_rooms VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (3 * s + r, r, agent(s), site(s), room, f"{room}-a", f"SN{s:02d}{r}",
                 r - 1 + (s % 7) * 0.3)
                for s in range(sites)
                for r, room in enumerate(ROOMS)
            ],
        )  # fmt: skip
        db.execute("BEGIN")
        rows = db.execute(_FILL, {"epoch": EPOCH}).rowcount
        db.execute("COMMIT")
        db.execute("DROP TABLE bench_times")
        db.execute("DROP TABLE bench_rooms")
        db.execute("PRAGMA journal_mode = WAL")
    finally:
        db.close()
    return rows


def fill_agents(engine: sa.Engine, sites: int, years: int, step_s: int, now: datetime) -> None:
    first = now - timedelta(days=round(365.25 * years))
    highest = 3 * (int(years * 365.25 * 86400) // step_s)
    with engine.begin() as conn:
        for s in range(sites):
            stream = conn.execute(
                sa.insert(streams).values(
                    agent_id=agent(s), epoch=EPOCH, state="primary", acked_seq=highest,
                    highest_seq=highest, first_received_at=first, last_received_at=now,
                )
            ).inserted_primary_key  # fmt: skip
            assert stream is not None
            conn.execute(
                sa.insert(agents).values(
                    agent_id=agent(s), site_id=site(s), primary_stream=stream[0],
                    first_seen_at=first, last_heard_at=now - timedelta(seconds=20 + s),
                    online=True,
                )
            )  # fmt: skip


def fill_ledger(engine: sa.Engine, sites: int, now: datetime) -> None:
    """The county's places, three products, and receipts at the county and its townships."""
    places: list[en.LedgerEntry] = [
        en.SiteEntry(site="city", name="市", level="city", by=BY),
        en.SiteEntry(site="county", name="县站", level="county", parent="city", by=BY),
    ]
    places += [
        en.SiteEntry(site=township(t), name=f"镇{t}", level="township", parent="county", by=BY)
        for t in range(min(5, sites))
    ]
    places += [
        en.SiteEntry(site=site(s), name=f"村{s:02d}", level="village", parent=township(s), by=BY)
        for s in range(sites)
    ]
    products = [("condom-a", "避孕套", "Condoms", "no1", "condoms"),
                ("pill-a", "口服避孕药", "Pills", "no1", "pills"),
                ("ring-a", "宫内节育器", "IUD", "no2", "iud")]  # fmt: skip
    master: list[en.LedgerEntry] = []
    receipts: list[en.LedgerEntry] = []
    for product, zh, english, room, group in products:
        master.append(en.ProductEntry(product=product, name_zh=zh, name_en=english,
                                      storeroom=room, group=group, by=BY))  # fmt: skip
        for b, days in (("B1", 60), ("B2", 900)):
            expiry = (now + timedelta(days=days)).date()
            master.append(en.BatchEntry(product=product, batch=b, expiry=expiry, by=BY))
            for where in ["county", *(township(t) for t in range(min(5, sites)))]:
                receipts.append(en.Receipt(site=where, storeroom=room, product=product,
                                           batch=b, quantity=200, by=BY))  # fmt: skip
    feed = Ingestor(engine, "fp", projections=default_projections())

    def build(_conn: sa.Connection, _catalog: Catalog) -> list[en.LedgerEntry]:
        return [*places, *master, *receipts]

    book.enter(feed, build, now, now.date())


def fill_alerts(engine: sa.Engine, sites: int, count: int, years: int, now: datetime,
                month: tuple[datetime, datetime]) -> int:  # fmt: skip
    """Resolved alerts over the years, an acknowledged one in the sheet's month on every
    site's no2, and one open alert on every other site."""
    picks = random.Random(13)
    span_s = int(years * 365.25 * 86400)
    rows: list[dict[str, Any]] = []

    def alert(s: int, rule: str, room: str, since: datetime, state: str, acked: bool,
              resolved: bool) -> None:  # fmt: skip
        subject = f"{room}/{room}-a" if rule == "climate.sensor" else room
        fired = since + timedelta(minutes=15)
        acked_at = fired + timedelta(minutes=20) if acked else None
        rows.append({
            "key": f"{rule}:{site(s)}:{subject}", "rule": rule, "site": site(s),
            "subject": subject, "severity": "warning" if rule == "climate.sensor" else "critical",
            "state": state, "condition": not resolved, "since": since, "fired_at": fired,
            "acked_at": acked_at, "acked_by": BY if acked else None,
            "action": "开启空调" if acked else None,
            "resolved_at": fired + timedelta(hours=2) if resolved else None,
            "clear_since": fired + timedelta(hours=1, minutes=40) if resolved else None,
            "refires": "[]",
            "detail": '{"temperature_c": 31.4, "humidity_pct": 58.0}',
            "seen_at": fired + timedelta(hours=2) if resolved else now,
        })  # fmt: skip

    rules = ("climate.range", "climate.room", "climate.sensor")
    for _ in range(count):
        since = now - timedelta(seconds=picks.randrange(86400, span_s))
        alert(picks.randrange(sites), picks.choice(rules), picks.choice(ROOMS), since,
              "resolved", picks.random() < 0.5, True)  # fmt: skip
    start, end = month
    for s in range(sites):
        seconds = picks.randrange(int((end - start).total_seconds()) - 9000)
        since = start + timedelta(seconds=seconds)
        alert(s, "climate.range", "no2", since, "resolved", True, True)
        if s % 2:
            since = now - timedelta(hours=picks.randrange(1, 72))
            acked = s % 4 == 1
            alert(s, "climate.range", "no3", since, "acknowledged" if acked else "firing",
                  acked, False)  # fmt: skip
    rows.sort(key=lambda r: r["since"])
    with engine.begin() as conn:
        conn.execute(sa.insert(alerts), rows)
    return len(rows)


def last_month(now: datetime) -> tuple[str, tuple[datetime, datetime]]:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(ZONE)
    first = now.astimezone(zone).date().replace(day=1)
    before = (first - timedelta(days=1)).replace(day=1)

    def midnight(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)

    return f"{before.year}-{before.month:02d}", (midnight(before), midnight(first))


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(config: ServerConfig, engine: sa.Engine) -> Iterator[str]:
    port = free_port()
    app = create_app(config, engine)
    settings = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


# --- timing ------------------------------------------------------------------------------------


@dataclass
class Route:
    name: str
    path: str
    query: dict[str, str] = field(default_factory=dict)


def routes(client: httpx.Client) -> tuple[list[Route], list[str]]:
    """Every GET route of the API, named after its path's fixed parts (the climate chart once
    per window); and what was left out, with why."""
    described = client.get("/api/openapi.json")
    described.raise_for_status()
    found: list[Route] = []
    left: list[str] = []
    for path, operations in sorted(described.json()["paths"].items()):
        get = operations.get("get")
        if get is None or not path.startswith(API + "/"):
            continue
        parts = [p for p in path[len(API) + 1 :].split("/") if not p.startswith("{")]
        name = "_".join(parts).replace("-", "_")
        required = [p["name"] for p in get.get("parameters", [])
                    if p.get("required") and p["in"] in ("path", "query")]  # fmt: skip
        unknown = [p for p in required if p not in ("site", "storeroom", "month", "alert_id")]
        if unknown:
            left.append(f"{path}: no value for {', '.join(unknown)}")
            continue
        query = {"month": "{month}"} if "month" in required else {}
        if name == "climate":
            found += [Route(f"climate_{w}", path, {**query, "window": w}) for w in WINDOWS]
        else:
            found.append(Route(name, path, query))
    return found, left


@dataclass
class Filler:
    """What a request's parameters are at its ``k``-th request."""

    sites: int
    month: str
    alert_ids: dict[str, list[int]]

    def site_of(self, k: int) -> str:
        return site((k * 17 + 3) % self.sites)

    def url(self, route: Route, k: int) -> tuple[str, dict[str, str]]:
        where = self.site_of(k)
        ids = self.alert_ids.get(where) or [i for v in self.alert_ids.values() for i in v]
        values = {"site": where, "storeroom": "no2", "month": self.month,
                  "alert_id": str(ids[k % len(ids)])}  # fmt: skip
        path = route.path
        for key, value in values.items():
            path = path.replace("{" + key + "}", value)
        return path, {k2: v.format(**values) for k2, v in route.query.items()}


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def timed(client: httpx.Client, path: str, query: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    r = client.get(path, params=query)
    _ = r.content
    return (time.perf_counter() - started) * 1000, r.status_code


def time_routes(client: httpx.Client, fill: Filler, found: list[Route],
                requests: int) -> dict[str, float]:  # fmt: skip
    worst: dict[str, float] = {}
    for route in found:
        path, query = fill.url(route, requests)  # the warm-up: a site not timed after
        _, status = timed(client, path, query)
        if status != 200:
            print(f"# {route.name} left out: {path} answered {status}", flush=True)
            continue
        samples = []
        for k in range(requests):
            ms, status = timed(client, *fill.url(route, k))
            if status != 200:
                raise RuntimeError(f"{route.name}: {fill.url(route, k)} answered {status}")
            samples.append(ms)
        worst[route.name] = p95(samples)
        figure(f"page_p95_ms.{route.name}", worst[route.name], "ms")
        print(f"# {route.name}: median {statistics.median(samples):.1f} ms, "
              f"max {max(samples):.1f} ms", flush=True)  # fmt: skip
    return worst


def explain(engine: sa.Engine, client: httpx.Client, fill: Filler, route: Route) -> None:
    """One request of ``route``: its statements run again one by one, the costliest shown."""
    path, query = fill.url(route, 1)
    with statements(engine) as seen:
        ms, _ = timed(client, path, query)
    spent: dict[str, list[float]] = defaultdict(list)
    params_of: dict[str, Any] = {}
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql("SELECT exp(0)")
        except sa.exc.OperationalError:  # as server.climate.history lends it
            raw: Any = conn.connection.driver_connection
            raw.create_function("exp", 1, math.exp, deterministic=True)
        for statement, params in seen:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            started = time.perf_counter()
            conn.exec_driver_sql(statement, params).fetchall()
            spent[statement].append((time.perf_counter() - started) * 1000)
            params_of.setdefault(statement, params)
        total = sum(sum(v) for v in spent.values())
        print(f"# slowest: {route.name} ({path}): {ms:.1f} ms a request, {len(seen)} "
              f"statements, {total:.1f} ms of them run again alone", flush=True)  # fmt: skip
        costly = sorted(spent.items(), key=lambda kv: -sum(kv[1]))[:4]
        for statement, times in costly:
            one = " ".join(statement.split())
            print(f"# {len(times)} x {sum(times) / len(times):.2f} ms: {one[:400]}", flush=True)
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params_of[statement])
            for row in plan:
                print(f"#     plan: {row[-1]}", flush=True)


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--interval-min", type=int, default=30, help="minutes between records")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per route")
    parser.add_argument("--alerts", type=int, default=300, help="resolved alerts over the years")
    parser.add_argument("--explain", type=int, default=2, help="slowest routes whose SQL is shown")
    args = parser.parse_args()
    now = datetime.now(UTC).replace(microsecond=0)
    month, span = last_month(now)
    with tempfile.TemporaryDirectory(prefix="edge-bench-dashboard-") as tmp:
        path = Path(tmp) / "server.db"
        url = f"sqlite:///{path}"
        started = time.perf_counter()
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        rows = fill_climate(path, args.sites, args.years, args.interval_min * 60, now)
        engine = make_engine(url)
        fill_agents(engine, args.sites, args.years, args.interval_min * 60, now)
        fill_ledger(engine, args.sites, now)
        fired = fill_alerts(engine, args.sites, args.alerts, args.years, now, span)
        with engine.begin() as conn:
            store.add(conn, BY, "admin", "*", PASSWORD, BY, now)
            token = store.make_token(conn, BY, BY, BY, now)
            ids: dict[str, list[int]] = defaultdict(list)
            for alert_id, where in conn.execute(sa.select(alerts.c.id, alerts.c.site)):
                ids[where].append(int(alert_id))
        figure("fill_s", time.perf_counter() - started, "s")
        figure("climate_rows", rows, "rows")
        print(f"# {args.sites} sites x {len(ROOMS)} storerooms, a record every "
              f"{args.interval_min} min for {args.years} years; {fired} alerts; "
              f"database {path.stat().st_size / 1e9:.2f} GB", flush=True)  # fmt: skip
        config = ServerConfig.model_validate(
            {"database": {"url": url}, "server": {"timezone": ZONE},
             "alerts": {"limits": {"default": LIMITS}}}
        )  # fmt: skip
        fill = Filler(args.sites, month, ids)
        headers = {"authorization": f"Bearer {token}"}
        with (
            serving(config, engine) as base,
            httpx.Client(base_url=base, headers=headers, timeout=60) as client,
        ):
            found, left = routes(client)
            for why in left:
                print(f"# left out: {why}", flush=True)
            worst = time_routes(client, fill, found, args.requests)
            if not worst:
                raise RuntimeError("no route answered")
            slowest = max(worst, key=lambda k: worst[k])
            figure("page_p95_ms", worst[slowest], "ms")
            page = Route("record_sheet", "/reports/sheet/{site}/{storeroom}", {"month": "{month}"})
            fill.url(page, args.requests)
            _, status = timed(client, *fill.url(page, args.requests))
            if status != 200:
                raise RuntimeError(f"the record sheet page answered {status}")
            sheet = [timed(client, *fill.url(page, k))[0] for k in range(args.requests)]
            figure("record_sheet_ms", statistics.median(sheet), "ms")
            for name in sorted(worst, key=lambda k: -worst[k])[: args.explain]:
                explain(engine, client, fill, next(r for r in found if r.name == name))
        engine.dispose()


if __name__ == "__main__":
    main()
