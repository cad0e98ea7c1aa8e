"""The stock ledger: its pure rules (property tests of the books' invariants) and its projection
through real ingest, on SQLite and PostgreSQL: county entries journaled in the county's own
stream, the boxes' events, idempotence, stocktakes, discrepancies and replay."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.wire import Dispense, parse_event
from server.entries import COUNTY_AGENT
from server.ingest.core import Ingestor, IngestResult
from server.ingest.timefix import BootRefs
from server.ledger import book, queries, rules
from server.ledger import entries as en
from server.ledger.projection import LedgerProjection
from server.ledger.rules import (
    DISPENSED,
    SUPPLY,
    VARIANCE,
    Books,
    Bucket,
    Catalog,
    LedgerError,
    Movement,
)
from server.projections import Run, replay
from server.store.schema import ledger_movements, ledger_stock, messages
from tests.test_boxes_projection import dispense, ev, restock
from tests.test_ingest import EPOCH, NOW

TODAY = NOW.date()
EXPIRY = date(2028, 6, 30)
BY = "王会计"

PRODUCT = en.ProductEntry(product="condom-a", name_zh="避孕套", name_en="Condoms",
                          storeroom="no1", group="condoms", by=BY)  # fmt: skip
SITES = [
    en.SiteEntry(site="city", name="市", level="city", by=BY),
    en.SiteEntry(site="county", name="县站", level="county", parent="city", by=BY),
    en.SiteEntry(site="town", name="镇站", level="township", parent="county", by=BY),
    en.SiteEntry(site="village", name="村", level="village", parent="town", by=BY),
]
BATCH = en.BatchEntry(product="condom-a", batch="B1", expiry=EXPIRY, by=BY)


# --- pure rules ---------------------------------------------------------------------------------


def catalog() -> Catalog:
    return Catalog({"condom-a": PRODUCT}, {("condom-a", "B1"): BATCH}, {s.site: s for s in SITES})


BUCKETS = [
    Bucket("county", "no1", 0, "awaiting"),
    Bucket("county", "no1", 0, "qualified"),
    Bucket("town", "no1", 0, "qualified"),
    Bucket("village", "transit"),
    Bucket("village", "box-1", 1),
    SUPPLY,
    DISPENSED,
    VARIANCE,
]


def _movement_or_none(kind: str, q: int, src: int, dst: int) -> Movement | None:
    if src == dst:
        return None
    return Movement(kind, "condom-a", "B1", q, BUCKETS[src], BUCKETS[dst])


movement_lists = st.lists(
    st.builds(
        _movement_or_none,
        st.sampled_from(["receipt", "transfer", "dispense", "adjustment"]),
        st.integers(1, 50),
        st.integers(0, len(BUCKETS) - 1),
        st.integers(0, len(BUCKETS) - 1),
    ),
    max_size=40,
).map(lambda ms: [m for m in ms if m is not None])


@given(movement_lists)
def test_what_a_bucket_holds_is_the_sum_of_what_moved_in_and_out(ms: list[Movement]) -> None:
    books = Books()
    books.apply(ms)
    for bucket in BUCKETS:
        inflow = sum(m.quantity for m in ms if m.target == bucket)
        outflow = sum(m.quantity for m in ms if m.source == bucket)
        assert books.held(bucket, "condom-a", "B1") == inflow - outflow
    assert sum(books.stock.values()) == 0, "nothing is made or lost: it comes from outside"


@given(
    st.lists(st.tuples(st.sampled_from(["qualified", "awaiting"]), st.integers(0, 30)),
             min_size=1, max_size=2, unique_by=lambda t: t[0]),
    movement_lists,
)  # fmt: skip
def test_a_stocktake_leaves_what_was_counted_and_records_the_variance(
    counts: list[tuple[str, int]], before: list[Movement]
) -> None:
    books = Books()
    books.apply(before)
    lines = [
        en.CountLine(zone=zone, product="condom-a", batch="B1", counted=n,
                     expected=books.held(Bucket("county", "no1", 0, zone), "condom-a", "B1"))
        for zone, n in counts
    ]  # fmt: skip
    take = en.Stocktake(site="county", place="no1", lines=lines, by=BY)
    variance_before = books.held(VARIANCE, "condom-a", "B1")
    books.apply(rules.counted(take))
    for zone, n in counts:
        assert books.held(Bucket("county", "no1", 0, zone), "condom-a", "B1") == n
    recorded = books.held(VARIANCE, "condom-a", "B1") - variance_before
    assert recorded == -sum(line.counted - line.expected for line in lines)


def test_only_qualified_stock_moves_and_only_unqualified_is_disposed_of() -> None:
    books = Books()
    books.apply([Movement("receipt", "condom-a", "B1", 10, SUPPLY,
                          Bucket("county", "no1", 0, "awaiting"))])  # fmt: skip
    transfer = en.Transfer(from_site="county", from_place="no1", to_site="town", to_place="no1",
                           product="condom-a", batch="B1", quantity=5, by=BY)  # fmt: skip
    with pytest.raises(LedgerError) as short:
        rules.plan(transfer, catalog(), books.held, TODAY)
    assert (short.value.key, short.value.fields["have"]) == ("stock.short", 0)
    inspect = en.Inspection(site="county", storeroom="no1", product="condom-a", batch="B1",
                            quantity=7, result="qualified", by=BY)  # fmt: skip
    books.apply(rules.plan(inspect, catalog(), books.held, TODAY))
    books.apply(rules.plan(transfer, catalog(), books.held, TODAY))
    assert books.held(Bucket("town", "no1"), "condom-a", "B1") == 5
    dispose = en.Disposal(site="county", storeroom="no1", product="condom-a", batch="B1",
                          quantity=1, reason="破损", by=BY)  # fmt: skip
    with pytest.raises(LedgerError, match=r"stock\.short"):
        rules.plan(dispose, catalog(), books.held, TODAY)


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        (en.Receipt(site="county", storeroom="no2", product="condom-a", batch="B1", quantity=1,
                    by=BY), "product.storeroom"),
        (en.Receipt(site="county", storeroom="no1", product="condom-a", batch="B9", quantity=1,
                    by=BY), "batch.unknown"),
        (en.Receipt(site="nowhere", storeroom="no1", product="condom-a", batch="B1", quantity=1,
                    by=BY), "site.unknown"),
        (en.Transfer(from_site="county", from_place="no1", to_site="village", to_place="transit",
                     from_zone="dispatch", product="condom-a", batch="B1", quantity=1, by=BY),
         "zone.storerooms_only"),
        (en.Adjustment(site="village", place="box-1", product="condom-a", batch="B1",
                       quantity=1, reason="found", by=BY), "place.box_needs_slot"),
        (en.Return(from_site="village", from_place="box-1", to_site="town", to_storeroom="no1",
                   product="condom-a", batch="B1", quantity=1, by=BY), "place.box_needs_slot"),
        (en.Return(from_site="village", from_place="transit", to_site="town", to_storeroom="no2",
                   product="condom-a", batch="B1", quantity=1, by=BY), "product.storeroom"),
        (en.Return(from_site="town", from_place="no1", to_site="town", to_storeroom="no1",
                   product="condom-a", batch="B1", quantity=1, by=BY), "transfer.same_place"),
    ],
)  # fmt: skip
def test_entries_the_books_forbid_are_refused_with_a_reason(
    entry: en.MovementEntry, key: str
) -> None:
    with pytest.raises(LedgerError) as refused:
        rules.plan(entry, catalog(), Books().held, TODAY)
    assert refused.value.key == key


def test_what_a_box_gave_back_returns_to_a_storeroom_to_be_inspected_again() -> None:
    books = Books()
    books.apply([Movement("removal", "condom-a", "B1", 2, Bucket("village", "box-1", 1),
                          Bucket("village", "transit", 0, "returned"))])  # fmt: skip
    back = en.Return(from_site="village", from_place="transit", to_site="town",
                     to_storeroom="no1", product="condom-a", batch="B1", quantity=2,
                     reason="卡货", by=BY)  # fmt: skip
    books.apply(rules.plan(back, catalog(), books.held, TODAY))
    assert books.held(Bucket("town", "no1", 0, "returned"), "condom-a", "B1") == 2
    with pytest.raises(LedgerError, match=r"stock\.short"):
        rules.plan(back, catalog(), books.held, TODAY)
    again = en.Inspection(site="town", storeroom="no1", product="condom-a", batch="B1",
                          quantity=2, zone="returned", result="qualified", by=BY)  # fmt: skip
    books.apply(rules.plan(again, catalog(), books.held, TODAY))
    assert books.held(Bucket("town", "no1"), "condom-a", "B1") == 2


def test_an_expired_batch_is_neither_received_nor_transferred() -> None:
    old = Catalog(catalog().products, {("condom-a", "B1"): BATCH.model_copy(
        update={"expiry": TODAY - timedelta(days=1)})}, catalog().sites)  # fmt: skip
    receipt = en.Receipt(site="county", storeroom="no1", product="condom-a", batch="B1",
                         quantity=1, by=BY)  # fmt: skip
    with pytest.raises(LedgerError, match=r"batch\.expired"):
        rules.plan(receipt, old, Books().held, TODAY)


def test_a_box_that_dispenses_what_the_books_do_not_show_is_recorded_with_a_discrepancy() -> None:
    books = Books()
    payload = Dispense.model_validate(dispense(1, 0))
    moved, short = rules.from_box("village", payload, books.held, books.lots)
    assert moved == [Movement("dispense", "condom-a", "B1", 1, Bucket("village", "box-1", 1),
                              DISPENSED)]  # fmt: skip
    assert [(d.what, d.books, d.needed) for d in short] == [("dispense", 0, 1)]


# --- through ingest ------------------------------------------------------------------------------


def send_at(
    ingest: Ingestor, events: list[dict[str, Any]], agent: str, site: str = "village"
) -> IngestResult:
    body = {"v": 1, "agent_id": agent, "epoch": EPOCH, "sent_at": NOW.isoformat(),
            "events": events}  # fmt: skip
    return ingest.handle(f"fp/v1/{site}/{agent}/events", json.dumps(body).encode(), NOW)


def ledger_only(engine: sa.Engine) -> Ingestor:
    return Ingestor(engine, "fp", projections=[LedgerProjection()])


def county(ingest: Ingestor, *entries: en.LedgerEntry) -> list[int]:
    return book.enter(ingest, lambda conn, cat: list(entries), NOW, TODAY)


def stocked(ingest: Ingestor) -> None:
    """The county's master data, a receipt of 100 inspected (95 qualified), 30 to the township,
    10 of those with the village's technician."""
    county(ingest, PRODUCT, *SITES, BATCH)
    county(
        ingest,
        en.Receipt(site="county", storeroom="no1", product="condom-a", batch="B1", quantity=100,
                   by=BY),
        en.Inspection(site="county", storeroom="no1", product="condom-a", batch="B1",
                      quantity=95, result="qualified", by=BY),
        en.Inspection(site="county", storeroom="no1", product="condom-a", batch="B1",
                      quantity=5, result="unqualified", by=BY),
        en.Transfer(from_site="county", from_place="no1", to_site="town", to_place="no1",
                    product="condom-a", batch="B1", quantity=30, by=BY),
        en.Transfer(from_site="town", from_place="no1", to_site="village", to_place="transit",
                    product="condom-a", batch="B1", quantity=10, by=BY),
    )  # fmt: skip


def on_hand(engine: sa.Engine) -> dict[tuple[str, str, int, str], int]:
    with engine.connect() as conn:
        return {
            (r.site, r.place, r.slot, r.zone): r.quantity
            for r in queries.stock(conn, product="condom-a")
        }


def sums_of_movements(engine: sa.Engine) -> dict[tuple[str, str, int, str, str, str], int]:
    m = ledger_movements
    out: dict[tuple[str, str, int, str, str, str], int] = {}
    with engine.connect() as conn:
        for r in conn.execute(sa.select(m)):
            for side, sign in (("from", -1), ("to", 1)):
                where = [getattr(r, f"{side}_{part}") for part in ("site", "place", "slot", "zone")]
                key = (*where, r.product, r.batch)
                out[key] = out.get(key, 0) + sign * int(r.quantity)
        stock = {
            (r.site, r.place, r.slot, r.zone, r.product, r.batch): int(r.quantity)
            for r in conn.execute(sa.select(ledger_stock))
        }
    assert {k: v for k, v in stock.items() if v} == {k: v for k, v in out.items() if v}
    return out


def test_county_entries_are_journaled_in_their_own_stream_and_make_the_books(
    engine: sa.Engine,
) -> None:
    ingest = ledger_only(engine)
    stocked(ingest)
    assert on_hand(engine) == {
        ("county", "no1", 0, "qualified"): 65,
        ("county", "no1", 0, "unqualified"): 5,
        ("town", "no1", 0, "qualified"): 20,
        ("village", "transit", 0, "qualified"): 10,
    }
    sums_of_movements(engine)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one()
    assert stored == 2, "one journal message per call, as entered"
    with engine.connect() as conn:
        town = queries.stock(conn, site="county")
    assert sum(line.quantity for line in town) == 100, "the county's total includes the townships"


def test_a_refused_entry_journals_nothing(engine: sa.Engine) -> None:
    ingest = ledger_only(engine)
    stocked(ingest)
    too_much = en.Transfer(from_site="town", from_place="no1", to_site="village",
                           to_place="transit", product="condom-a", batch="B1", quantity=21,
                           by=BY)  # fmt: skip
    with pytest.raises(LedgerError, match=r"stock\.short"):
        county(ingest, too_much)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(messages)).scalar_one() == 2


def test_the_boxes_events_move_stock_and_a_shortfall_is_a_discrepancy(engine: sa.Engine) -> None:
    ingest = ledger_only(engine)
    stocked(ingest)
    agent = "box-agent"
    first = [
        ev(1, "cabinet.restock", restock(1, 8), agent=agent),
        ev(2, "cabinet.dispense", dispense(1, 7), agent=agent),
        ev(3, "cabinet.dispense", dispense(1, 6), agent=agent),
    ]
    send_at(ingest, first, agent)
    send_at(ingest, first, agent)  # delivered twice: applied once
    books = on_hand(engine)
    assert books[("village", "transit", 0, "qualified")] == 2
    assert books[("village", "box-1", 1, "qualified")] == 6
    # A count finds 5: one unit is a variance; then a box that gives what it does not have.
    count = {"box": "box-1", "slot": 1, "product": "condom-a", "expected": 6, "counted": 5,
             "lines": [{"batch": "B1", "expiry": "2028-06-30", "quantity": 5}],
             "source": "cli"}  # fmt: skip
    send_at(ingest, [ev(4, "cabinet.count", count, agent=agent)], agent)
    assert on_hand(engine)[("village", "box-1", 1, "qualified")] == 5
    more = [ev(5 + i, "cabinet.dispense", dispense(1, 0), agent=agent) for i in range(6)]
    send_at(ingest, more, agent)
    assert on_hand(engine)[("village", "box-1", 1, "qualified")] == -1, "as it happened"
    with engine.connect() as conn:
        [short] = queries.discrepancies(conn)
    assert (short.what, short.books, short.needed) == ("dispense", 0, 1)
    sums_of_movements(engine)


def test_a_stocktake_takes_its_expected_figures_from_the_books_when_entered(
    engine: sa.Engine,
) -> None:
    ingest = ledger_only(engine)
    stocked(ingest)
    lines = [en.CountLine(product="condom-a", batch="B1", counted=60, expected=0)]
    book.enter(ingest, book.stocktake("county", "no1", 0, lines, BY), NOW, TODAY)
    books = on_hand(engine)
    assert books[("county", "no1", 0, "qualified")] == 60
    assert ("county", "no1", 0, "unqualified") not in books, "not counted: counted 0"
    with engine.connect() as conn:
        m = ledger_movements
        rows = conn.execute(sa.select(m.c.quantity, m.c.from_zone).where(
            m.c.kind == "stocktake").order_by(m.c.from_zone)).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [(5, "qualified"), (5, "unqualified")]


def test_the_county_id_is_refused_from_the_broker_and_entries_from_agents(
    engine: sa.Engine,
) -> None:
    ingest = ledger_only(engine)
    stocked(ingest)
    forged = en.Receipt(site="county", storeroom="no1", product="condom-a", batch="B1",
                        quantity=1000, by="x").model_dump(mode="json")  # fmt: skip
    result = send_at(ingest, [ev(1, "ledger.receipt", forged, agent="box-agent")], "box-agent")
    assert result.refused
    assert "entered on the server only" in result.refused[0].reason
    body = ev(99, "ledger.receipt", forged, agent=COUNTY_AGENT)
    assert send_at(ingest, [body], COUNTY_AGENT, site="county").dead_lettered
    assert on_hand(engine)[("county", "no1", 0, "qualified")] == 65


def test_replay_rebuilds_the_same_books(engine: sa.Engine) -> None:
    ingest = ledger_only(engine)
    stocked(ingest)
    agent = "box-agent"
    send_at(ingest, [ev(1, "cabinet.restock", restock(1, 8), agent=agent),
                     ev(2, "cabinet.dispense", dispense(1, 7), agent=agent)], agent)  # fmt: skip
    before = sums_of_movements(engine)
    replay(engine, [LedgerProjection()])
    assert sums_of_movements(engine) == before
    replay(engine, [LedgerProjection()], agent_id=COUNTY_AGENT)
    assert sums_of_movements(engine) == before
    with engine.connect() as conn:
        assert "condom-a" in queries.catalog(conn).products


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=6))
def test_applying_a_run_again_changes_nothing(tmp_path_factory: Any, sizes: list[int]) -> None:
    from server.store.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'x.db'}")
    migrate(engine)
    ingest = ledger_only(engine)
    stocked(ingest)
    agent = "box-agent"
    events = [ev(1, "cabinet.restock", restock(1, 10), agent=agent)]
    for n in sizes:
        events.append(ev(len(events) + 1, "cabinet.dispense", dispense(1, n), agent=agent))
    send_at(ingest, events, agent)
    once = sums_of_movements(engine)
    with engine.begin() as conn:
        run = Run("village", agent, EPOCH, [parse_event(e) for e in events], BootRefs(agent))
        LedgerProjection().apply(conn, run)
    assert sums_of_movements(engine) == once
    engine.dispose()


@given(
    st.dictionaries(
        st.sampled_from(["B1", "B2", "B3", "B4"]),
        st.tuples(st.dates(date(2026, 1, 1), date(2029, 1, 1)), st.integers(-5, 50)),
        max_size=4,
    ),
    st.integers(1, 120),
)
def test_fefo_takes_the_earliest_expiry_first_and_never_an_expired_batch(
    batches: dict[str, tuple[date, int]], quantity: int
) -> None:
    held: dict[tuple[str, date | None], int] = {(b, e): n for b, (e, n) in batches.items()}
    picks, missing = rules.fefo(held, quantity, TODAY)
    assert sum(n for _, n in picks) + missing == quantity
    usable = {b: n for b, (e, n) in batches.items() if n > 0 and e >= TODAY}
    assert missing == max(0, quantity - sum(usable.values()))
    assert all(b in usable and n <= usable[b] for b, n in picks)
    expiries = [batches[b][0] for b, _ in picks]
    assert expiries == sorted(expiries)


@given(st.integers(-5, 200), st.floats(0, 20), st.integers(1, 60), st.integers(1, 90))
def test_a_restock_proposal_makes_the_slot_last_its_cover_and_only_when_it_runs_short(
    on_hand: int, per_day: float, below: int, cover: int
) -> None:
    q = rules.restock_quantity(on_hand, per_day, below, cover)
    assert q >= 0
    have = max(on_hand, 0)
    if per_day == 0 or have >= below * per_day or have >= cover * per_day:
        assert q == 0, "not short, or already holding its cover"
    else:
        assert q >= 1
        assert have + q >= cover * per_day - 1e-9
