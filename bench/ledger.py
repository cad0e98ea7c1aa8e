"""Ledger and climate history benchmark: queries over a county's years of records, and ledger
events applied through ingest.

Run from the repository root with the project installed::

    python bench/ledger.py [--sites 50] [--years 5] [--events 10000] [--single 1000]
                           [--batch 50] [--no-postgres]

Each group of figures is one function called from ``main()``; add new ones the same way.

Climate history (``climate_figures``): a SQLite store made with the real schema
(``server.store.db.migrate``) is filled with a county's history: ``--sites`` sites of three
storerooms, one record every 10 to 15 minutes (drawn at random) for ``--years`` years, written
in SQL (a recursive CTE per storeroom, synchronous off) because Python tuples would take longer
than the whole budget. Rows carry what the queries read (site, storeroom, sensor, corrected and
raw values, quality, time); the re-dating columns are left empty and clocks synced.

Figures (``figure: NAME VALUE UNIT``):

- ``climate_rows``: records in the store.
- ``climate_build_s``: the time it took to write them (with every index of the schema).
- ``climate_series_ms``: a 30-day series of one storeroom (hourly points, min/mean/max in
  SQL), the median of 20 storerooms and windows picked at random; ``climate_series_max_ms``
  the slowest of them.
- ``climate_series_5y_ms``: a five-year series of one storeroom (weekly points).
- ``mkt_year_ms``: a year's mean kinetic temperature of one storeroom, the median of 10.

Ledger history (``ledger_figures``): a SQLite store of the real schema holding ``--years`` of a
county's ledger: a city, the county, five townships and ``--sites`` villages with one box of
two slots each; ten products, a new batch of each every quarter (expiring three years later).
Every quarter each product's batch is received at the county and inspected (1 % unqualified,
then disposed of); on the 1st of each month the county sends the townships, and the townships
the villages' technicians (``transit``), what the boxes will be loaded with that month; each
slot is restocked weekly from transit with the next week's takes, 2 to 8 dispenses a day
(drawn at random). That is about a million movements, which ingest could not apply within the
budget (see the apply figures), so they are written straight into ``ledger_movements`` in
time order (``executemany``, synchronous off), numbered per stream as ingest numbers them, and
``ledger_stock`` is filled as their sum per bucket, product and batch (in minus out), which is
the invariant the projection keeps; products, batches and sites as the county's entries would
make them. ``ledger_events`` and the journal are left empty: no query here reads them.
Each query figure is the median of 20 runs (of those that fit in 5 s when a run is slow, at
least 5), on one connection, through ``server.ledger.queries``:

- ``ledger_movements_rows``: movements in the store; ``ledger_build_s``: the time to write them.
- ``stock_query_ms``: the county's stock with everything below it (``edge-server stock``).
- ``stock_expiring_ms``: the same, batches expiring within 90 days.
- ``restock_propose_ms``: every box slot's stock and its dispensing rate over 30 days
  (``queries.box_slots``, what ``edge-server restock propose`` reads).
- ``movements_month_ms``: a township's movements (its villages' included) over 30 days,
  townships and months picked at random (``edge-server movements``, limit 5000).

Ledger events applied (``apply_figures``): through ``Ingestor.handle`` with the default
projections (what a deployment runs), one transaction and durable commit per message: SQLite
of ``make_engine`` (WAL, ``synchronous=FULL``), and a private PostgreSQL with ``fsync`` and
``synchronous_commit`` on (``simulators.broker.Postgres`` starts it with ``fsync=off``, so it
is restarted without; skipped, with a note, where PostgreSQL is not installed, or with
``--no-postgres``). The county enters master data and stock through its own path
(``book.enter``: receipt, inspection, transfers down to each village's transit); then each of
``--sites`` box agents restocks its two slots from its transit and dispenses, one unit a take
with a card. Every message must be accepted whole, and at the end the books must show every
dispense sent, with no discrepancy, or the script fails.

- ``apply_sqlite_eps`` / ``apply_postgres_eps``: ``--events`` events in messages of ``--batch``,
  the agents' messages interleaved.
- ``apply_sqlite_single_eps`` / ``apply_postgres_single_eps``: ``--single`` more, one per
  message.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchsupport import END, ROOMS, climate_query_figures, figure, private_postgres, timed_ms

from server.entries import COUNTY_AGENT, COUNTY_EPOCH
from server.ingest.core import Ingestor
from server.ledger import book, queries
from server.ledger import entries as en
from server.ledger.rules import OUTSIDE, Catalog
from server.store.db import make_engine, migrate
from server.store.schema import ledger_discrepancies, ledger_stock

# --- climate history ---------------------------------------------------------------------------

#: One storeroom's years of record times and values, made once per storeroom number and reused
#: by every site with its own offsets (the same instants at every site: harmless to the queries).
_TEMPLATE = """
INSERT INTO bench_times
WITH RECURSIVE s(i, t) AS (
    SELECT 0, :start UNION ALL
    SELECT i + 1, t + 600 + abs(random()) % 301 FROM s WHERE t < :end - 900
)
SELECT i, strftime('%Y-%m-%d %H:%M:%S', t, 'unixepoch') || '.000000',
    round(6 * sin(t * 1.99e-7) + 2 * sin(t * 7.27e-5) + (abs(random()) % 100) / 100.0, 2),
    round(55 + 10 * sin(t * 1.99e-7 + 1) + (abs(random()) % 100) / 20.0, 1)
FROM s
"""
_FILL = """
INSERT INTO climate_records (agent_id, epoch, seq, site_id, storeroom, sensor, serial,
    temperature_c, humidity_pct, raw_temperature_c, raw_humidity_pct, quality, occurred_at,
    clock_synced, time_corrected)
SELECT :agent, 'e0e0e0e0', :base + i, :site, :room, :sensor, :serial, t + :offset, h,
    t + :offset - 0.3, h + 1.5, '', at, 1, 0
FROM bench_times WHERE room = :room ORDER BY room, i
"""


def build_climate_store(path: Path, sites: int, years: int) -> int:
    """A store of the real schema holding ``years`` of records of ``sites`` sites."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 16384")  # before the first table; nothing else differs
    db.close()
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    start = int((END - timedelta(days=round(365.25 * years))).timestamp())
    end = int(END.timestamp())
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000"):
        db.execute(f"PRAGMA {pragma}")
    db.execute("PRAGMA temp_store = MEMORY")
    db.execute(
        "CREATE TEMP TABLE bench_times (room TEXT, i INTEGER, at TEXT, t REAL, h REAL, "
        "PRIMARY KEY (room, i))"
    )
    for room in ROOMS:
        db.execute(
            _TEMPLATE.replace("SELECT i, strftime", f"SELECT '{room}', i, strftime"),
            {"start": start, "end": end},
        )
    rows = 0
    db.execute("BEGIN")
    for s in range(sites):
        for n, room in enumerate(ROOMS):
            cursor = db.execute(
                _FILL,
                {
                    "agent": f"station-{s:02d}", "base": n * 1_000_000, "site": f"site-{s:02d}",
                    "room": room, "sensor": f"{room}-a", "serial": f"SN{s:02d}{n}",
                    "offset": 16 + n + (s % 7) / 2,
                },
            )  # fmt: skip
            rows += cursor.rowcount
    db.execute("COMMIT")
    db.execute("DROP TABLE bench_times")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    return rows


def climate_figures(work: Path, sites: int, years: int) -> None:
    path = work / "climate.db"
    started = time.perf_counter()
    rows = build_climate_store(path, sites, years)
    figure("climate_rows", rows, "rows")
    figure("climate_build_s", time.perf_counter() - started, "s")
    engine = make_engine(f"sqlite:///{path}", create=False)
    climate_query_figures(
        engine,
        sites,
        years,
        {"series": "climate_series_ms", "series_max": "climate_series_max_ms",
         "series_5y": "climate_series_5y_ms", "mkt_year": "mkt_year_ms"},
    )  # fmt: skip
    engine.dispose()


# --- ledger: the county's places ---------------------------------------------------------------

BY = "bench"
#: Every box agent's outbox epoch.
BOX_EPOCH = "e0e0e0e0"


def village(n: int) -> str:
    return f"village-{n:02d}"


def township(n: int) -> str:
    return f"township-{n % 5}"


def box_agent(n: int) -> str:
    return f"box-agent-{n:02d}"


def master_data(sites: int) -> list[en.SiteEntry]:
    """City, county, five townships and ``sites`` villages (village n under township n % 5)."""
    out = [
        en.SiteEntry(site="city", name="市", level="city", by=BY),
        en.SiteEntry(site="county", name="县站", level="county", parent="city", by=BY),
    ]
    out += [
        en.SiteEntry(site=township(t), name=f"镇{t}", level="township", parent="county", by=BY)
        for t in range(min(5, sites))
    ]
    out += [
        en.SiteEntry(site=village(v), name=f"村{v}", level="village", parent=township(v), by=BY)
        for v in range(sites)
    ]
    return out


# --- ledger: five years of a county's movements ------------------------------------------------

#: Ten products, each with its storeroom: a box's two slots hold two of them (village n: the
#: products 2n and 2n + 1, modulo ten).
PRODUCTS = tuple((f"product-{p}", "no1" if p < 6 else "no2") for p in range(10))
_MOVEMENT = """
INSERT INTO ledger_movements (stream_id, seq, line, agent_id, epoch, kind, product, batch,
    quantity, from_site, from_place, from_slot, from_zone, to_site, to_place, to_slot, to_zone,
    reason, entered_by, occurred_at, agent_occurred_at, clock_synced, time_corrected, boot_id,
    mono_s)
VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?, NULL)
"""
_STOCK = """
INSERT INTO ledger_stock (site, place, slot, zone, product, batch, quantity)
SELECT site, place, slot, zone, product, batch, sum(q) FROM (
    SELECT to_site AS site, to_place AS place, to_slot AS slot, to_zone AS zone, product, batch,
        quantity AS q FROM ledger_movements
    UNION ALL
    SELECT from_site, from_place, from_slot, from_zone, product, batch, -quantity
        FROM ledger_movements
) GROUP BY site, place, slot, zone, product, batch
"""

#: One movement before it is numbered: (seconds from the start, stream, kind, product, batch,
#: quantity, from bucket, to bucket, reason).
Planned = tuple[int, int, str, str, str, int, tuple[str, str, int, str], tuple[str, str, int, str],
                str | None]  # fmt: skip
SUPPLY_BUCKET = ("", "supply", 0, "qualified")


def plan_history(sites: int, years: int, picks: random.Random) -> tuple[list[Planned], int]:
    """A county's movements over ``years``, in time order; and the number of quarters.

    Every quarter a new batch of each product is received at the county, inspected (1 %
    unqualified, then disposed of); on the 1st of each month the county sends each township and
    each township its villages' technicians what the boxes will be loaded with that month;
    each box's slot is restocked weekly with the next week's takes, which are 2 to 8 a day."""
    start = END - timedelta(days=round(365.25 * years))
    days = (END - start).days
    dates = [(start + timedelta(days=d)).date() for d in range(days)]
    month_of = [(d.year - dates[0].year) * 12 + d.month - dates[0].month for d in dates]
    quarters = month_of[-1] // 3 + 1
    out: list[Planned] = []
    # (village, product, month) -> quantity restocked that month
    monthly: dict[tuple[int, int, int], int] = defaultdict(int)
    for v in range(sites):
        stream = 2 + v
        for slot in (1, 2):
            p = (2 * v + slot - 1) % len(PRODUCTS)
            product = PRODUCTS[p][0]
            box = (village(v), f"box-{v:02d}", slot, "qualified")
            takes = [picks.randint(2, 8) for _ in range(days)]
            loads = [0, *(d for d in range(1, days) if (d + v) % 7 == 0), days]
            for a, b in itertools.pairwise(loads):
                batch = f"{product}-q{month_of[a] // 3:02d}"
                load = sum(takes[a:b])
                monthly[(v, p, month_of[a])] += load
                at = a * 86400 + 9 * 3600 + 60 * v
                out.append((at, stream, "restock", product, batch, load,
                            (village(v), "transit", 0, "qualified"), box, None))  # fmt: skip
                for d in range(a, b):
                    for t in sorted(picks.randrange(10 * 3600, 20 * 3600) for _ in range(takes[d])):
                        out.append((d * 86400 + t, stream, "dispense", product, batch, 1, box,
                                    ("", "dispensed", 0, "qualified"), None))  # fmt: skip
    first_day = {m: month_of.index(m) for m in set(month_of)}
    # (product, quarter) -> what the county sends down in it
    quarterly: dict[tuple[int, int], int] = defaultdict(int)
    towns: dict[tuple[int, int, int], int] = defaultdict(int)
    for (v, p, month), load in monthly.items():
        product, room = PRODUCTS[p]
        batch = f"{product}-q{month // 3:02d}"
        town = (township(v), room, 0, "qualified")
        at = first_day[month] * 86400 + 7 * 3600 + 60 * v
        out.append((at, 1, "transfer", product, batch, load, town,
                    (village(v), "transit", 0, "qualified"), None))  # fmt: skip
        towns[(v % 5, p, month)] += load
        quarterly[(p, month // 3)] += load
    for (t, p, month), load in towns.items():
        product, room = PRODUCTS[p]
        at = first_day[month] * 86400 + 6 * 3600 + 60 * t
        out.append((at, 1, "transfer", product, f"{product}-q{month // 3:02d}", load,
                    ("county", room, 0, "qualified"), (township(t), room, 0, "qualified"),
                    None))  # fmt: skip
    for (p, q), need in quarterly.items():
        product, room = PRODUCTS[p]
        batch = f"{product}-q{q:02d}"
        at = first_day[3 * q] * 86400 + 2 * 3600 + 60 * p
        received = need + need // 20 + 20  # what the county keeps in reserve
        bad = received // 100
        awaiting, qualified = ("county", room, 0, "awaiting"), ("county", room, 0, "qualified")
        unqualified = ("county", room, 0, "unqualified")
        out += [
            (at, 1, "receipt", product, batch, received, SUPPLY_BUCKET, awaiting, None),
            (at + 3600, 1, "inspection", product, batch, received - bad, awaiting, qualified,
             None),
            (at + 3600, 1, "inspection", product, batch, bad, awaiting, unqualified, None),
            (at + 7200, 1, "disposal", product, batch, bad, unqualified,
             ("", "disposed", 0, "qualified"), "破损"),
        ]  # fmt: skip
    out.sort(key=lambda m: (m[0], m[1]))
    return out, quarters


def build_ledger_store(path: Path, sites: int, years: int) -> int:
    """A store of the real schema holding ``years`` of the ledger of ``sites`` village boxes."""
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    planned, quarters = plan_history(sites, years, random.Random(11))
    start = END - timedelta(days=round(365.25 * years))
    base = start.replace(tzinfo=None)
    stamps = [(base + timedelta(days=d)).strftime("%Y-%m-%d") for d in range((END - start).days)]
    seqs: dict[int, int] = defaultdict(int)
    rows = []
    for at, stream, kind, product, batch, quantity, source, target, reason in planned:
        seqs[stream] += 1
        day, second = divmod(at, 86400)
        hour, rest = divmod(second, 3600)
        when = f"{stamps[day]} {hour:02d}:{rest // 60:02d}:{rest % 60:02d}.000000"
        county = stream == 1
        rows.append((
            stream, seqs[stream], COUNTY_AGENT if county else box_agent(stream - 2),
            COUNTY_EPOCH if county else BOX_EPOCH, kind, product, batch, quantity, *source,
            *target, reason, BY if county else None, when, when,
            "server" if county else "box-boot",
        ))  # fmt: skip
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -1000000"):
        db.execute(f"PRAGMA {pragma}")
    db.execute("BEGIN")
    db.executemany(_MOVEMENT, rows)
    db.execute(_STOCK)
    db.executemany(
        "INSERT INTO ledger_products VALUES (?, ?, ?, '盒', 'box', ?, ?)",
        [(p, f"产品{n}", f"Product {n}", room, f"group-{n % 4}")
         for n, (p, room) in enumerate(PRODUCTS)],
    )  # fmt: skip
    first = start.date()
    db.executemany(
        "INSERT INTO ledger_batches VALUES (?, ?, ?, 'bench')",
        [(p, f"{p}-q{q:02d}", (first + timedelta(days=91 * q + 3 * 365)).isoformat())
         for p, _ in PRODUCTS for q in range(quarters)],
    )  # fmt: skip
    db.executemany(
        "INSERT INTO ledger_sites VALUES (?, ?, ?, ?)",
        [(s.site, s.name, s.level, s.parent) for s in master_data(sites)],
    )
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    return len(rows)


def ledger_figures(work: Path, sites: int, years: int) -> None:
    path = work / "ledger.db"
    started = time.perf_counter()
    rows = build_ledger_store(path, sites, years)
    figure("ledger_movements_rows", rows, "rows")
    figure("ledger_build_s", time.perf_counter() - started, "s")
    engine = make_engine(f"sqlite:///{path}", create=False)
    today = END.date()

    def median_ms(call: Callable[[sa.Connection], object]) -> float:
        """The median of 20 runs, or of those that fit in 5 s (at least 5): a slow query must
        not take the script over its budget."""
        with engine.connect() as conn:
            call(conn)  # the first connection and statement
            runs: list[float] = []
            while len(runs) < 20 and (len(runs) < 5 or sum(runs) < 5000):
                runs.append(timed_ms(lambda: call(conn)))
            return statistics.median(runs)

    def stock(conn: sa.Connection) -> object:
        found = queries.stock(conn, site="county")
        assert found
        return found

    def expiring(conn: sa.Connection) -> object:
        found = queries.stock(conn, site="county", expiring_before=today + timedelta(days=90))
        assert found
        return found

    def propose(conn: sa.Connection) -> object:
        found = queries.box_slots(conn, END, 30)
        assert len(found) == 2 * sites
        assert all(s.per_day > 0 for s in found)
        return found

    picks = random.Random(11)

    def month(conn: sa.Connection) -> object:
        since = END - timedelta(days=30 + picks.randrange(round(365.25 * years) - 30))
        found = queries.movements(conn, site=township(picks.randrange(5)), since=since,
                                  until=since + timedelta(days=30), limit=5000)  # fmt: skip
        assert found
        return found

    figure("stock_query_ms", median_ms(stock), "ms")
    figure("stock_expiring_ms", median_ms(expiring), "ms")
    figure("restock_propose_ms", median_ms(propose), "ms")
    figure("movements_month_ms", median_ms(month), "ms")
    engine.dispose()


# --- ledger: applying events through ingest -----------------------------------------------------

#: The day the apply figures' events are taken (fixed: batch expiries are judged against it).
APPLY_NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
APPLY_EXPIRY = "2028-06-30"
#: A box's two slots: (product, its storeroom, its quota group).
APPLY_SLOTS = (("condom-a", "no1", "condoms"), ("pill-b", "no2", "pills"))


def stock_the_county(ingestor: Ingestor, sites: int, per_slot: int) -> None:
    """Master data, then ``per_slot`` of each product received, inspected (qualified) and
    transferred down to each village's technician (``transit``): the county's own path."""

    def build(conn: sa.Connection, catalog: Catalog) -> list[en.LedgerEntry]:
        out: list[en.LedgerEntry] = []
        for product, room, group in APPLY_SLOTS:
            out.append(en.ProductEntry(product=product, name_zh=product, name_en=product,
                                       storeroom=room, group=group, by=BY))  # fmt: skip
            out.append(en.BatchEntry(product=product, batch="B1",
                                     expiry=date.fromisoformat(APPLY_EXPIRY), by=BY))  # fmt: skip
        out += master_data(sites)
        for product, room, _ in APPLY_SLOTS:
            total = per_slot * sites
            lot = {"site": "county", "storeroom": room, "product": product, "batch": "B1"}
            out.append(en.Receipt(**lot, quantity=total, by=BY))
            out.append(en.Inspection(**lot, quantity=total, result="qualified", by=BY))
            for t in range(min(5, sites)):
                villages = [v for v in range(sites) if township(v) == township(t)]
                out.append(en.Transfer(from_site="county", from_place=room, to_site=township(t),
                                       to_place=room, product=product, batch="B1",
                                       quantity=per_slot * len(villages), by=BY))  # fmt: skip
                out += [
                    en.Transfer(from_site=township(t), from_place=room, to_site=village(v),
                                to_place="transit", product=product, batch="B1",
                                quantity=per_slot, by=BY)
                    for v in villages
                ]  # fmt: skip
        return out

    book.enter(ingestor, build, APPLY_NOW, APPLY_NOW.date())


def box_events(n: int, per_slot: int) -> list[dict[str, Any]]:
    """One box agent's events: both slots restocked from its site's transit with ``per_slot``
    each, then ``per_slot`` dispenses from each slot, alternately, each with a card."""
    box = f"box-{n:02d}"
    payloads: list[tuple[str, dict[str, Any]]] = [
        ("cabinet.restock", {"box": box, "slot": slot, "product": product, "batch": "B1",
                             "expiry": APPLY_EXPIRY, "quantity": per_slot, "source": "door"})
        for slot, (product, _, _) in enumerate(APPLY_SLOTS, 1)
    ]  # fmt: skip
    for k in range(2 * per_slot):
        slot = 1 + k % 2
        product, _, group = APPLY_SLOTS[slot - 1]
        payloads.append(("cabinet.dispense", {
            "box": box, "transaction": str(uuid.uuid4()), "slot": slot, "product": product,
            "product_group": group, "batch": "B1", "expiry": APPLY_EXPIRY, "quantity": 1,
            "card": f"{n * 1000 + k % 97:064x}", "mode": "card",
            "remaining": per_slot - 1 - k // 2,
        }))  # fmt: skip
    start = APPLY_NOW - timedelta(hours=12)
    return [
        {"id": str(uuid.uuid4()), "agent_id": box_agent(n), "seq": seq, "kind": kind,
         "occurred_at": (start + timedelta(seconds=5 * seq)).isoformat(), "clock_synced": True,
         "boot_id": "bench-boot", "mono_s": 5.0 * seq, "payload": payload}
        for seq, (kind, payload) in enumerate(payloads, 1)
    ]  # fmt: skip


Message = tuple[str, bytes, int, int]  # topic, body, events in it, last seq


def messages(events: dict[int, list[dict[str, Any]]], size: int) -> list[Message]:
    """Each agent's events in batches of ``size``, the agents' batches interleaved."""
    per_agent = {
        n: [evs[i : i + size] for i in range(0, len(evs), size)] for n, evs in events.items()
    }
    out = []
    for i in range(max((len(b) for b in per_agent.values()), default=0)):
        for n, batches in per_agent.items():
            if i < len(batches):
                body = {"v": 1, "agent_id": box_agent(n), "epoch": BOX_EPOCH,
                        "sent_at": APPLY_NOW.isoformat(), "events": batches[i]}  # fmt: skip
                where = f"fp/v1/{village(n)}/{box_agent(n)}/events"
                out.append((where, json.dumps(body).encode(), len(batches[i]),
                            batches[i][-1]["seq"]))  # fmt: skip
    return out


def apply_rate(ingestor: Ingestor, batches: list[Message]) -> float:
    """Events per second through ``Ingestor.handle``, one transaction (commit) per message;
    every message must be accepted whole."""
    started = time.perf_counter()
    results = [ingestor.handle(where, body, APPLY_NOW) for where, body, _, _ in batches]
    elapsed = time.perf_counter() - started
    for (where, _, count, last), r in zip(batches, results, strict=True):
        if r.dead_lettered or r.refused or r.stored != count or r.acked_seq != last:
            raise RuntimeError(f"{where}: not accepted whole: {r}")
    return sum(count for _, _, count, _ in batches) / elapsed


def apply_figures(
    engine: sa.Engine, name: str, sites: int, batched: int, single: int, batch: int
) -> None:
    """``apply_<name>_eps``: ``batched`` events in batches of ``batch``;
    ``apply_<name>_single_eps``: ``single`` more, one per message."""
    ingestor = Ingestor(engine, "fp")  # the default projections, as a deployment runs
    per_batched, per_single = batched // sites, single // sites
    per_slot = (per_batched + per_single) // 2  # two restocks and the rest dispenses
    stock_the_county(ingestor, sites, per_slot)
    events = {n: box_events(n, per_slot) for n in range(sites)}
    first = {n: evs[: len(evs) - per_single] for n, evs in events.items()}
    then = {n: evs[len(evs) - per_single :] for n, evs in events.items()}
    figure(f"apply_{name}_eps", apply_rate(ingestor, messages(first, batch)), "events/s")
    figure(f"apply_{name}_single_eps", apply_rate(ingestor, messages(then, 1)), "events/s")
    dispensed = sum(1 for evs in events.values() for e in evs if e["kind"] == "cabinet.dispense")
    with engine.connect() as conn:
        out = conn.execute(
            sa.select(sa.func.sum(ledger_stock.c.quantity)).where(
                ledger_stock.c.site == OUTSIDE, ledger_stock.c.place == "dispensed"
            )
        ).scalar_one()
        short = conn.execute(
            sa.select(sa.func.count()).select_from(ledger_discrepancies)
        ).scalar_one()
    if int(out or 0) != dispensed or short:
        raise RuntimeError(
            f"{name}: the ledger shows {out} dispensed of {dispensed}, {short} short"
        )
    print(f"# {name}: {sites} boxes, {dispensed} dispenses in the books, none short", flush=True)


def sqlite_apply_figures(work: Path, sites: int, batched: int, single: int, batch: int) -> None:
    engine = make_engine(f"sqlite:///{work / 'apply.db'}")  # WAL, synchronous=FULL
    migrate(engine)
    apply_figures(engine, "sqlite", sites, batched, single, batch)
    engine.dispose()


def postgres_apply_figures(sites: int, batched: int, single: int, batch: int) -> None:
    with private_postgres() as pg:
        if pg is None:
            return
        admin = sa.create_engine(pg.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE bench_ledger"))
            shown = {
                name: conn.execute(sa.text(f"SHOW {name}")).scalar()
                for name in ("server_version", "fsync", "synchronous_commit")
            }
        admin.dispose()
        if shown["fsync"] != "on" or shown["synchronous_commit"] != "on":
            raise RuntimeError(f"PostgreSQL commits would not be durable: {shown}")
        print(f"# PostgreSQL {shown['server_version']}: fsync on, synchronous_commit on")
        engine = make_engine(pg.url("bench_ledger"))
        migrate(engine)
        apply_figures(engine, "postgres", sites, batched, single, batch)
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--events", type=int, default=10_000, help="applied in batches")
    parser.add_argument("--single", type=int, default=1_000, help="applied one per message")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-bench-ledger-") as tmp:
        work = Path(tmp)
        climate_figures(work, args.sites, args.years)
        (work / "climate.db").unlink()  # 8 GB, not needed any more
        ledger_figures(work, args.sites, args.years)
        sqlite_apply_figures(work, args.sites, args.events, args.single, args.batch)
    if not args.no_postgres:
        postgres_apply_figures(args.sites, args.events, args.single, args.batch)


if __name__ == "__main__":
    main()
