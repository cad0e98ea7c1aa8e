"""The fair inbox and the refusal limit: pure bookkeeping, tested directly."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from server.inbox import FairInbox
from server.ingest.limits import RefusalLimit

T0 = datetime(2026, 11, 24, tzinfo=UTC)


def test_a_flooding_agent_waits_its_turn() -> None:
    inbox: FairInbox[str] = FairInbox(share=100)
    for i in range(100):
        inbox.put("flood", f"f{i}")
    inbox.put("quiet", "q0")
    group = inbox.take(4, timeout=0)
    assert group == ["f0", "q0", "f1", "f2"]


def test_beyond_its_share_an_agent_is_dropped_and_counted() -> None:
    inbox: FairInbox[int] = FairInbox(share=8)
    accepted = [inbox.put("flood", i) for i in range(20)]
    assert accepted == [True] * 8 + [False] * 12
    assert inbox.put("quiet", 1)
    assert inbox.dropped() == {"flood": 12}
    assert inbox.dropped() == {}
    assert len(inbox) == 9


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers()), max_size=200))
def test_each_agents_messages_stay_in_order_and_none_is_lost(
    items: list[tuple[str, int]],
) -> None:
    inbox: FairInbox[tuple[str, int]] = FairInbox(share=1000)
    for n, (agent, _) in enumerate(items):
        inbox.put(agent, (agent, n))
    out: list[tuple[str, int]] = []
    while group := inbox.take(7, timeout=0):
        assert len({a for a, _ in group}) >= min(len(group), 1)
        out += group
    assert sorted(out) == sorted((a, n) for n, (a, _) in enumerate(items))
    for agent in "abcd":
        mine = [n for a, n in out if a == agent]
        assert mine == sorted(mine)


def test_take_waits_for_a_message_from_another_thread() -> None:
    inbox: FairInbox[str] = FairInbox(share=10)
    threading.Timer(0.05, inbox.put, ("a", "x")).start()
    assert inbox.take(5, timeout=10) == ["x"]
    assert inbox.take(5, timeout=0.01) == []


def test_refusals_beyond_the_limit_are_only_counted_until_the_window_ends() -> None:
    limit = RefusalLimit(per_window=3, window=timedelta(minutes=1))
    kept = [limit.allow("flood", T0 + timedelta(seconds=i)) for i in range(10)]
    assert kept == [True] * 3 + [False] * 7
    assert limit.allow("quiet", T0)
    assert limit.closed(T0 + timedelta(seconds=30)) == {}
    assert limit.closed(T0 + timedelta(seconds=61)) == {"flood": 7}
    assert limit.allow("flood", T0 + timedelta(seconds=62))
