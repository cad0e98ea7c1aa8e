"""The cabinet's pure cores: stock per slot (queue, FEFO), quotas, and the take state machine."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.cabinet import stock
from edge_agent.cabinet.config import BoxConfig
from edge_agent.cabinet.domain import _manual
from edge_agent.cabinet.quota import (
    Allowance,
    Card,
    Policy,
    Rule,
    Use,
    admit,
    allowance,
    open_box_allows,
    rule_for,
)
from edge_agent.cabinet.transaction import (
    CANCEL_BUTTON,
    CONFIRM_BUTTON,
    Delivered,
    DoorMoved,
    Failed,
    Idle,
    Offer,
    Refuse,
    RestockAnswer,
    Show,
    Take,
    TamperAlarm,
    Unknown,
    Unlock,
    Vend,
)
from edge_agent.wire import QuotaRule, VendFailure

T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
TODAY = date(2026, 11, 24)
CARD = "c" * 64


def slot(number: int, product: str = "condom", *lots: tuple[str, date, int]) -> stock.Slot:
    return stock.Slot("box", number, product, 50, tuple(stock.Lot(*lot) for lot in lots))


# --- stock ----------------------------------------------------------------------------------


def test_units_leave_a_slot_in_the_order_they_were_loaded() -> None:
    s = slot(1)
    s = stock.load(s, "B1", date(2027, 1, 1), 2)
    s = stock.load(s, "B0", date(2026, 12, 1), 1)  # loaded later, expires sooner: still behind
    out = []
    while s.count:
        s, lot = stock.take_one(s)
        out.append(lot.batch)
    assert out == ["B1", "B1", "B0"]
    with pytest.raises(stock.StockError):
        stock.take_one(s)


@given(st.lists(st.tuples(st.sampled_from("ABC"), st.integers(1, 5)), min_size=1, max_size=8))
def test_a_slot_gives_back_exactly_what_was_loaded_in_order(loads: list[tuple[str, int]]) -> None:
    s = stock.Slot("box", 1, "p", 1000)
    for batch, n in loads:
        s = stock.load(s, batch, date(2027, 1, 1), n)
    taken: list[str] = []
    while s.count:
        s, lot = stock.take_one(s)
        taken.append(lot.batch)
    assert taken == [batch for batch, n in loads for _ in range(n)]


def test_fefo_picks_the_slot_whose_front_unit_expires_first() -> None:
    slots = [
        slot(1, "condom", ("late", date(2028, 1, 1), 5)),
        slot(2, "condom", ("soon", date(2027, 1, 1), 5)),
        slot(3, "pill", ("sooner", date(2026, 12, 1), 5)),
    ]
    assert stock.choose(slots, "condom", TODAY).number == 2  # type: ignore[union-attr]
    assert stock.choose(slots, "condom", TODAY, skip=[2]).number == 1  # type: ignore[union-attr]
    assert stock.choose(slots, "condom", TODAY, skip=[1, 2]) is None


def test_a_slot_whose_front_unit_expired_is_blocked_even_with_good_units_behind() -> None:
    s = slot(1, "condom", ("old", date(2026, 11, 23), 1), ("new", date(2028, 1, 1), 9))
    assert stock.health(s, TODAY, 2) == "expired"
    assert not stock.sellable(s, TODAY)
    assert stock.choose([s], "condom", TODAY) is None
    # Valid through its expiry date.
    assert stock.sellable(s, date(2026, 11, 23))
    s, taken = stock.remove(s, 1)
    assert [t.batch for t in taken] == ["old"]
    assert stock.health(s, TODAY, 2) == "ok"


def test_slot_health_names_each_state() -> None:
    s = slot(1, "condom", ("b", date(2028, 1, 1), 2))
    assert stock.health(s, TODAY, 2) == "low"
    assert stock.health(s, TODAY, 1) == "ok"
    assert stock.health(slot(1), TODAY, 2) == "empty"
    assert stock.health(stock.Slot("box", 1, "c", 5, s.lots, fault="jammed"), TODAY, 0) == "faulty"
    doubt = stock.Slot("box", 1, "c", 5, s.lots, count_needed=True)
    assert stock.health(doubt, TODAY, 0) == "count_needed"
    assert stock.sellable(doubt, TODAY)


def test_loads_that_do_not_fit_and_removals_of_more_than_there_is_are_refused() -> None:
    s = stock.Slot("box", 1, "p", 3)
    with pytest.raises(stock.StockError):
        stock.load(s, "b", date(2027, 1, 1), 4)
    s = stock.load(s, "b", date(2027, 1, 1), 3)
    with pytest.raises(stock.StockError):
        stock.remove(s, 4)
    faulty = stock.Slot("box", 1, "p", 3, fault="jammed")
    assert stock.load(faulty, "b", date(2027, 1, 1), 1).fault is None


def test_a_count_replaces_the_books_and_clears_fault_and_doubt() -> None:
    s = stock.Slot("box", 1, "p", 10, (stock.Lot("a", date(2027, 1, 1), 4),), "jammed", True)
    s = stock.counted(s, [stock.Lot("a", date(2027, 1, 1), 3), stock.Lot("z", date(2027, 2, 1), 0)])
    assert (s.count, s.fault, s.count_needed, len(s.lots)) == (3, None, False, 1)


# --- quotas ---------------------------------------------------------------------------------


def policy(**kw: object) -> Policy:
    values: dict[str, object] = {
        "site": "s1",
        "rules": [],
        "defaults": [
            QuotaRule(group="default", product_group="condoms", quantity=1, period_days=30)
        ],
        "guest": None,
        "id_card_group": "default",
    }
    values.update(kw)
    return Policy(**values)  # type: ignore[arg-type]


def test_one_box_per_30_days_by_default_and_the_date_it_allows_again() -> None:
    rule = policy().rule("default", "condoms")
    assert rule == Rule(1, 30)
    assert allowance([], rule, T0) == Allowance(1)
    taken = [Use(T0 - timedelta(days=10), 1)]
    assert allowance(taken, rule, T0) == Allowance(0, T0 + timedelta(days=20))
    assert allowance(taken, rule, T0 + timedelta(days=20)).allowed
    assert allowance(taken, None, T0).allowed


@given(
    st.lists(st.tuples(st.integers(0, 60 * 24 * 40), st.integers(1, 3)), max_size=8),
    st.integers(1, 5),
    st.integers(1, 40),
)
def test_the_next_date_is_exactly_when_the_rule_allows_again(
    takes: list[tuple[int, int]], quantity: int, days: int
) -> None:
    rule = Rule(quantity, days)
    uses = [Use(T0 - timedelta(minutes=m), n) for m, n in takes]
    now = allowance(uses, rule, T0)
    if now.allowed:
        return
    assert now.next_at is not None
    assert now.next_at > T0
    assert allowance(uses, rule, now.next_at).allowed
    assert not allowance(uses, rule, now.next_at - timedelta(microseconds=1)).allowed


def test_registry_rules_beat_the_sites_defaults_and_site_rules_beat_county_rules() -> None:
    rules = [
        QuotaRule(group="default", product_group="condoms", quantity=2, period_days=30),
        QuotaRule(group="default", product_group="condoms", quantity=3, period_days=30, site="s1"),
        QuotaRule(group="default", product_group="condoms", quantity=9, period_days=30, site="s2"),
    ]
    assert policy(rules=rules).rule("default", "condoms") == Rule(3, 30)
    assert policy(rules=rules[:1]).rule("default", "condoms") == Rule(2, 30)
    assert policy(rules=rules).rule("default", "pills") is None


def test_who_is_admitted() -> None:
    active = Card("active", "villager", "default")
    assert admit(active, "ic", None, policy()) == (active, None)
    assert admit(Card("lost", "villager", "g"), "ic", None, policy())[1] == "lost"
    assert admit(Card("revoked", "villager", "g"), "ic", None, policy())[1] == "revoked"
    assert admit(None, "ic", None, policy()) == (None, "unregistered")
    guest = policy(guest=Rule(1, 30))
    assert admit(None, "ic", None, guest) == (None, None)
    assert rule_for(None, "condoms", guest) == Rule(1, 30)
    # An unknown ID card counts as the configured group's; age limits apply to ID cards.
    assert admit(None, "id", 30, policy())[0] == Card("active", "villager", "default")
    aged = policy(min_age=18, max_age=60)
    assert admit(None, "id", 17, aged)[1] == "age"
    assert admit(None, "id", 61, aged)[1] == "age"
    assert admit(None, "id", 60, aged)[1] is None
    assert admit(None, "id", None, aged)[1] == "age"
    assert admit(None, "id", 30, policy(id_card_group=None))[1] == "unregistered"


def test_an_open_box_paces_its_vends() -> None:
    assert open_box_allows([], T0, 30, 3) is None
    assert open_box_allows([T0 - timedelta(seconds=10)], T0, 30, 3) == "pause"
    hour = [T0 - timedelta(minutes=m) for m in (50, 30, 10)]
    assert open_box_allows(hour, T0, 30, 3) == "hourly_cap"
    assert open_box_allows(hour, T0 + timedelta(minutes=11), 30, 3) is None


# --- the take state machine ------------------------------------------------------------------


def box(**kw: object) -> BoxConfig:
    values: dict[str, object] = {
        "id": "box",
        "board": "b",
        "reader": {"bus": "r"},
        "products": ["condom"],
        "slots": [{"number": 1, "product": "condom", "capacity": 20}],
    }
    values.update(kw)
    return BoxConfig.model_validate(values)


def ids() -> itertools.count[int]:
    return itertools.count(1)


def machine(config: BoxConfig, **kw: object) -> Take:
    counter = ids()
    return Take(config, new_id=lambda: uuid.UUID(int=next(counter)), **kw)  # type: ignore[arg-type]


STOCKED = [slot(1, "condom", ("B1", date(2028, 1, 1), 5))]
ALLOWED = Offer(CARD, allowances={"condom": Allowance(1)}, after_take={"condom": Allowance(0, T0)})


def kinds(actions: Sequence[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_a_swipe_on_a_one_product_box_vends_at_once_and_delivery_is_recorded() -> None:
    take = machine(box())
    actions = take.swiped(ALLOWED, STOCKED, TODAY, T0)
    assert kinds(actions) == ["Show", "Vend"]
    vend = actions[1]
    assert vend == Vend(uuid.UUID(int=1), 1, "condom", CARD)
    assert take.busy
    assert take.swiped(ALLOWED, STOCKED, TODAY, T0) == []  # one vend at a time
    done = take.vend_ended("delivered", None, STOCKED, TODAY, T0)
    assert done == [Delivered(vend), Show("take", {"after": Allowance(0, T0)})]
    assert take.state == Idle()


def test_a_refused_card_is_told_why_and_nothing_vends() -> None:
    take = machine(box())
    offer = Offer(CARD, refusal="lost")
    assert take.swiped(offer, STOCKED, TODAY, T0) == [
        Refuse("lost", CARD, next_at=None),
        Show("lost", {"next_at": None}),
    ]
    exhausted = Offer(CARD, allowances={"condom": Allowance(0, T0 + timedelta(days=3))})
    actions = take.swiped(exhausted, STOCKED, TODAY, T0)
    assert actions[0] == Refuse("quota", CARD, "condom", T0 + timedelta(days=3))


def test_with_several_products_a_button_chooses_and_no_choice_times_out() -> None:
    config = box(
        products=["condom", "pill"],
        slots=[
            {"number": 1, "product": "condom", "capacity": 9},
            {"number": 2, "product": "pill", "capacity": 9},
        ],
    )
    slots = [*STOCKED, slot(2, "pill", ("P1", date(2028, 1, 1), 3))]
    take = machine(config)
    assert kinds(take.swiped(ALLOWED, slots, TODAY, T0)) == ["Show"]
    assert take.pressed(7, slots, TODAY, T0) == []  # no such product button
    actions = take.pressed(2, slots, TODAY, T0)
    assert actions[1] == Vend(uuid.UUID(int=1), 2, "pill", CARD)
    take.vend_ended("delivered", None, slots, TODAY, T0)
    take.swiped(ALLOWED, slots, TODAY, T0)
    assert take.tick(T0 + timedelta(seconds=19)) == []
    assert take.tick(T0 + timedelta(seconds=20)) == [Show("welcome")]
    assert take.pressed(1, slots, TODAY, T0 + timedelta(seconds=21)) == []


def two_condom_slots() -> tuple[BoxConfig, list[stock.Slot]]:
    """A box with two slots of one product, both stocked."""
    config = box(
        slots=[
            {"number": 1, "product": "condom", "capacity": 9},
            {"number": 2, "product": "condom", "capacity": 9},
        ]
    )
    return config, [*STOCKED, slot(2, "condom", ("B2", date(2029, 1, 1), 5))]


def test_a_failed_vend_costs_nothing_and_another_slot_of_the_product_is_tried() -> None:
    config, slots = two_condom_slots()
    take = machine(config)
    first = take.swiped(ALLOWED, slots, TODAY, T0)[1]
    assert isinstance(first, Vend)
    assert first.slot == 1
    actions = take.vend_ended("failed", "jammed", slots, TODAY, T0)
    assert actions[0] == Failed(first, "jammed", 2)
    second = actions[2]
    assert isinstance(second, Vend)
    assert second.slot == 2
    assert second.transaction != first.transaction
    actions = take.vend_ended("failed", "no_drop", slots, TODAY, T0)
    assert actions == [Failed(second, "no_drop", None), Show("failed")]
    assert not any(isinstance(a, Delivered) for a in actions)


def test_an_unknown_outcome_is_never_retried() -> None:
    take = machine(box())
    vend = take.swiped(ALLOWED, STOCKED, TODAY, T0)[1]
    assert isinstance(vend, Vend)
    actions = take.vend_ended("unknown", "interrupted", STOCKED, TODAY, T0)
    assert actions == [Unknown(vend, "interrupted"), Show("unknown")]


def test_empty_and_expired_stock_are_refused_with_their_reason() -> None:
    take = machine(box())
    assert take.swiped(ALLOWED, [slot(1)], TODAY, T0)[0] == Refuse("empty", CARD, "condom")
    old = [slot(1, "condom", ("old", date(2026, 1, 1), 5))]
    assert take.swiped(ALLOWED, old, TODAY, T0)[0] == Refuse("expired", CARD, "condom")


def test_a_technician_unlocks_restocks_and_confirms() -> None:
    take = machine(box(), pending_orders=lambda: True)
    tech = Offer("t" * 64, technician=True)
    assert take.swiped(tech, STOCKED, TODAY, T0) == [Unlock("t" * 64)]
    assert take.door(True, T0)[0] == DoorMoved(True, "t" * 64)
    assert take.swiped(ALLOWED, STOCKED, TODAY, T0) == []  # no takes while the door is open
    closed = take.door(False, T0 + timedelta(minutes=5))
    assert closed == [DoorMoved(False, "t" * 64), Show("confirm")]
    assert take.pressed(CONFIRM_BUTTON, STOCKED, TODAY, T0)[0] == RestockAnswer("t" * 64, True)
    assert take.state == Idle()
    take.swiped(tech, STOCKED, TODAY, T0)
    take.door(True, T0)
    take.door(False, T0)
    assert take.pressed(CANCEL_BUTTON, STOCKED, TODAY, T0)[0] == RestockAnswer("t" * 64, False)


def test_an_unlock_not_used_lapses() -> None:
    take = machine(box())
    take.swiped(Offer("t" * 64, technician=True), STOCKED, TODAY, T0)
    assert take.tick(T0 + timedelta(seconds=30)) == [Show("welcome")]
    assert take.door(True, T0 + timedelta(seconds=31))[1] == TamperAlarm("door_without_card", 0.0)


def test_a_door_opened_without_a_card_or_left_open_raises_tamper_once() -> None:
    take = machine(box(door_open_limit_s=60))
    actions = take.door(True, T0)
    assert TamperAlarm("door_without_card", 0.0) in actions
    assert take.tick(T0 + timedelta(seconds=120)) == []  # already alarmed
    take.door(False, T0)
    take.swiped(Offer("t" * 64, technician=True), STOCKED, TODAY, T0)
    take.door(True, T0)
    assert take.tick(T0 + timedelta(seconds=59)) == []
    assert take.tick(T0 + timedelta(seconds=60)) == [TamperAlarm("door_left_open", 60.0)]
    assert take.tick(T0 + timedelta(seconds=600)) == []


def test_an_open_box_vends_on_a_button_paced_and_capped() -> None:
    config = box(mode="open", reader=None, pause_s=30, max_per_hour=2)
    take = machine(config)
    first = take.pressed(1, STOCKED, TODAY, T0)
    assert first[1] == Vend(uuid.UUID(int=1), 1, "condom", None)
    take.vend_ended("delivered", None, STOCKED, TODAY, T0)
    assert take.pressed(1, STOCKED, TODAY, T0 + timedelta(seconds=10))[0] == Refuse(
        "pause", None, "condom"
    )
    later = T0 + timedelta(seconds=40)
    assert isinstance(take.pressed(1, STOCKED, TODAY, later)[1], Vend)
    take.vend_ended("delivered", None, STOCKED, TODAY, later)
    capped = take.pressed(1, STOCKED, TODAY, T0 + timedelta(minutes=5))
    assert capped[0] == Refuse("hourly_cap", None, "condom")
    # A failed vend does not count toward the pace.
    assert isinstance(take.pressed(1, STOCKED, TODAY, T0 + timedelta(minutes=61))[1], Vend)
    take.vend_ended("failed", "jammed", STOCKED, TODAY, T0 + timedelta(minutes=61))
    assert isinstance(take.pressed(1, STOCKED, TODAY, T0 + timedelta(minutes=61))[1], Vend)


def test_a_door_forced_during_a_vend_alarms_and_the_vend_is_still_recorded() -> None:
    take = machine(box())
    vend = take.swiped(ALLOWED, STOCKED, TODAY, T0)[1]
    assert isinstance(vend, Vend)
    assert take.door(True, T0) == [DoorMoved(True, None), TamperAlarm("door_without_card", 0.0)]
    assert take.busy
    actions = take.vend_ended("delivered", None, STOCKED, TODAY, T0)
    assert actions[0] == Delivered(vend)
    assert take.swiped(ALLOWED, STOCKED, TODAY, T0) == []  # the door is still open
    assert take.door(False, T0)[0] == DoorMoved(False, None)
    assert take.state == Idle()


def test_a_door_opened_and_shut_during_a_vend_leaves_the_box_idle_after_it() -> None:
    take = machine(box())
    take.swiped(ALLOWED, STOCKED, TODAY, T0)
    take.door(True, T0)
    assert take.door(False, T0) == [DoorMoved(False, None)]
    take.vend_ended("failed", "jammed", STOCKED, TODAY, T0)
    assert take.state == Idle()


def test_a_vend_found_under_way_after_a_restart_is_never_retried_elsewhere() -> None:
    config, slots = two_condom_slots()
    take = machine(config)
    vend = Vend(uuid.UUID(int=7), 1, "condom", CARD)
    take.resume_vending(vend)
    assert take.vend_ended("failed", "jammed", slots, TODAY, T0) == [
        Failed(vend, "jammed", None),
        Show("failed"),
    ]


@pytest.mark.parametrize(("reason", "shown"), [("board_busy", "busy"), ("door_open", "door_open")])
def test_a_board_not_ready_to_vend_is_not_the_slots_fault_and_no_other_slot_is_tried(
    reason: VendFailure, shown: str
) -> None:
    config, slots = two_condom_slots()
    take = machine(config)
    vend = take.swiped(ALLOWED, slots, TODAY, T0)[1]
    assert isinstance(vend, Vend)
    assert take.vend_ended("failed", reason, slots, TODAY, T0) == [
        Failed(vend, reason, None),
        Show(shown),
    ]
    assert take.state == Idle()


def test_an_outcome_with_the_wrong_kind_of_reason_is_a_bug_not_a_motor_fault() -> None:
    take = machine(box())
    take.swiped(ALLOWED, STOCKED, TODAY, T0)
    with pytest.raises(ValueError, match="failure"):
        take.vend_ended("failed", "interrupted", STOCKED, TODAY, T0)
    assert take.busy, "the vend is still under way: its real outcome is still to be recorded"


def test_a_failure_learnt_late_tries_no_other_slot_for_a_villager_long_gone() -> None:
    config, slots = two_condom_slots()
    take = machine(config)
    vend = take.swiped(ALLOWED, slots, TODAY, T0)[1]
    assert isinstance(vend, Vend)
    take.nobody_waiting()  # the board did not answer when asked for the result
    assert take.vend_ended("failed", "jammed", slots, TODAY, T0) == [
        Failed(vend, "jammed", None),
        Show("failed"),
    ]


def test_a_door_the_status_finds_open_is_taken_up_without_tamper_and_alarms_if_left() -> None:
    take = machine(box())
    assert take.door_seen(False, T0) == []
    assert take.door_seen(True, T0) == [DoorMoved(True, None), Show("service")]
    assert take.door_seen(True, T0) == [], "known already"
    assert take.swiped(ALLOWED, STOCKED, TODAY, T0) == []
    limit = timedelta(seconds=take.box.door_open_limit_s)
    assert take.tick(T0 + limit) == [TamperAlarm("door_left_open", limit.total_seconds())]
    assert take.door_seen(False, T0 + limit)[0] == DoorMoved(False, None)
    assert take.state == Idle()


def test_a_door_the_status_finds_open_while_vending_waits_for_the_vend() -> None:
    take = machine(box())
    take.swiped(ALLOWED, STOCKED, TODAY, T0)
    assert take.door_seen(True, T0) == []
    assert take.busy


@pytest.mark.parametrize(
    ("verb", "rest", "said"),
    [
        (
            "restock",
            ["B1", "2029-13-01", "5"],
            "EXPIRY is a date written YYYY-MM-DD, not '2029-13-01'",
        ),
        ("restock", ["B1", "20290601", "5"], "EXPIRY is a date written YYYY-MM-DD"),
        ("restock", ["B1", "2029-06-01", "five"], "QUANTITY is a whole number"),
        ("restock", ["B1", "2029-06-01", "-5"], "QUANTITY is a whole number"),
        ("remove", ["1.5", "expired"], "QUANTITY is a whole number"),
        ("count", ["B1:2029-06-01"], "a counted lot is BATCH:YYYY-MM-DD:QUANTITY"),
        ("count", ["B1:2029-06-31:4"], "a lot's expiry is a date"),
        ("count", ["B1:2029-06-01:４"], "a lot's quantity is a whole number"),
    ],
)
def test_what_a_technician_types_wrong_is_said_in_our_words(
    verb: str, rest: list[str], said: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(said)) as caught:
        _manual(verb, 1, rest)
    assert "invalid literal" not in str(caught.value)
    assert "isoformat" not in str(caught.value)
