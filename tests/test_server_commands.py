"""The server's command queue: resent with a growing wait while unanswered, pruned once
answered long ago (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from server import commands
from server.store.schema import agents
from server.store.schema import commands as commands_table

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
OFFLINE_AFTER = timedelta(seconds=300)


def add_agent(engine: sa.Engine, agent: str, heard: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            agents.insert().values(
                agent_id=agent, site_id="s1", first_seen_at=heard, last_heard_at=heard,
                online=True,
            )
        )  # fmt: skip


def answer(engine: sa.Engine, command_id: str, at: datetime, ok: bool = True) -> None:
    with engine.begin() as conn:
        conn.execute(
            commands_table.update()
            .where(commands_table.c.id == command_id)
            .values(result_ok=ok, result_detail="done", result_at=at)
        )


def publish_round(engine: sa.Engine, at: datetime) -> list[str]:
    """What a server round would publish at ``at``, marked published."""
    due = commands.due(engine, "fp", at, OFFLINE_AFTER)
    commands.mark_published(engine, due, at, retry_s=60, most_s=900)
    return [out.id for out in due]


@given(st.integers(min_value=0, max_value=10_000), st.floats(1, 86400), st.floats(1, 86400))
def test_resend_wait_grows_and_is_bounded(attempts: int, retry_s: float, most_s: float) -> None:
    wait = commands.resend_wait(attempts, retry_s, most_s)
    assert retry_s <= wait <= max(retry_s, most_s)
    assert commands.resend_wait(attempts + 1, retry_s, most_s) >= wait


def test_resend_wait_doubles_up_to_its_cap() -> None:
    assert [commands.resend_wait(n, 60, 900) for n in range(1, 7)] == [
        60, 120, 240, 480, 900, 900
    ]  # fmt: skip


def test_an_unanswered_command_is_resent_with_a_growing_wait(engine: sa.Engine) -> None:
    add_agent(engine, "a1", NOW)
    out = commands.queue(engine, "fp", "a1", commands.parse_body("ping", {}), NOW)
    times: list[float] = []
    at = NOW
    # Heard from all along (online); look every 30 s for an hour.
    while at < NOW + timedelta(hours=1):
        with engine.begin() as conn:
            conn.execute(agents.update().values(last_heard_at=at))
        if publish_round(engine, at) == [out.id]:
            times.append((at - NOW).total_seconds())
        at += timedelta(seconds=30)
    assert times == [0, 60, 180, 420, 900, 1800, 2700]
    with engine.connect() as conn:
        attempts = conn.execute(sa.select(commands_table.c.attempts)).scalar_one()
    assert attempts == len(times)


def test_an_answered_command_and_one_for_an_offline_agent_are_not_sent(
    engine: sa.Engine,
) -> None:
    add_agent(engine, "a1", NOW)
    add_agent(engine, "a2", NOW - OFFLINE_AFTER - timedelta(seconds=1))
    answered = commands.queue(engine, "fp", "a1", commands.parse_body("ping", {}), NOW)
    waiting = commands.queue(engine, "fp", "a1", commands.parse_body("ping", {}), NOW)
    commands.queue(engine, "fp", "a2", commands.parse_body("ping", {}), NOW)
    answer(engine, answered.id, NOW)
    assert publish_round(engine, NOW) == [waiting.id]


def test_prune_deletes_only_commands_answered_before_the_cutoff(engine: sa.Engine) -> None:
    add_agent(engine, "a1", NOW)
    keep = timedelta(days=30)
    old = NOW - keep - timedelta(days=1)
    ping = commands.parse_body("ping", {})
    old_answered = [commands.queue(engine, "fp", "a1", ping, old).id for _ in range(7)]
    for cid in old_answered:
        answer(engine, cid, old + timedelta(hours=1), ok=cid != old_answered[0])
    recent = commands.queue(engine, "fp", "a1", ping, old).id
    answer(engine, recent, NOW - timedelta(days=1))
    never = commands.queue(engine, "fp", "a1", ping, old).id
    # Answered by an agent whose clock was not yet set: its result looks years old.
    unsynced = commands.queue(engine, "fp", "a1", ping, NOW - timedelta(hours=1)).id
    answer(engine, unsynced, datetime(1970, 1, 1, tzinfo=UTC))
    order = commands.parse_body(
        "restock.order",
        {"order_id": "o-1", "box": "box-1", "slot": 1, "product": "condom-a", "batch": "B1",
         "expiry": "2028-01-31", "quantity": 10},
    )  # fmt: skip
    restock = commands.queue(engine, "fp", "a1", order, old).id
    answer(engine, restock, old + timedelta(hours=1))
    assert commands.prune(engine, NOW, keep, chunk=3) == 7
    with engine.connect() as conn:
        left = set(conn.execute(sa.select(commands_table.c.id)).scalars())
    assert left == {recent, never, unsynced, restock}
    assert commands.prune(engine, NOW, keep) == 0
