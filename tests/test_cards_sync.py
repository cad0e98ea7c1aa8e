"""What the boxes' agents are sent, on SQLite and PostgreSQL: registry deltas (full from 0,
only what changed since a version, rules and guest policy when they changed, in chunks) and the
takes at other boxes (never an agent's own, each sent once, none missed when a row with a lower
id or an earlier time becomes visible after later ones were sent)."""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from edge_agent.wire import (
    AgentStatus,
    CardsSyncCommand,
    CardsUsageCommand,
    Command,
    GuestPolicy,
    QuotaRule,
    encode,
)
from server.cards import registry
from server.cards.registry import Issue
from server.cards.sync import MAX_USAGE_FAILURES, CardSync, Report, card_delta, snapshot
from server.ingest.core import Ingestor
from server.store.db import utc
from server.store.schema import cabinet_usage, card_changes, commands
from tests.test_boxes_projection import dispense, ev, send
from tests.test_ingest import NOW

T0 = NOW - timedelta(hours=1)


def card(n: int) -> str:
    return f"{n:04x}" * 16


def issue(engine: sa.Engine, *numbers: int, group: str | None = None) -> None:
    registry.issue(engine, [Issue(card(n), group=group) for n in numbers], T0)


def rule(engine: sa.Engine, group: str = "default", site: str | None = None, days: int = 30) -> int:
    r = QuotaRule(group=group, product_group="condoms", quantity=1, period_days=days, site=site)
    return registry.set_rule(engine, r, T0)


def delta(engine: sa.Engine, held: int, site: str = "county", limit: int = 1000) -> Any:
    with snapshot(engine) as conn:
        return card_delta(conn, held, site, limit)


def cards_of(sync: CardsSyncCommand) -> dict[str, str]:
    return {c.card: c.status for c in sync.cards}


def test_from_zero_is_everything(engine: sa.Engine) -> None:
    assert delta(engine, 0) is None, "an empty registry: nothing to send"
    issue(engine, 1, 2)
    rule(engine)
    registry.set_status(engine, card(1), "lost", T0)
    registry.set_guest(engine, GuestPolicy(mode="quota", quantity=1, period_days=30), T0)
    sync = delta(engine, 0)
    assert (sync.full, sync.version_from, sync.version) == (True, 0, 5)
    assert cards_of(sync) == {card(1): "lost", card(2): "active"}, "lost cards too"
    assert [r.group for r in sync.rules] == ["default"]
    assert sync.guest == GuestPolicy(mode="quota", quantity=1, period_days=30)


def test_from_a_version_only_what_changed_since(engine: sa.Engine) -> None:
    issue(engine, 1, 2)  # 1, 2
    rule(engine)  # 3
    registry.set_status(engine, card(1), "revoked", T0)  # 4
    issue(engine, 3)  # 5
    since_3 = delta(engine, 3)
    assert (since_3.full, since_3.version_from, since_3.version) == (False, 3, 5)
    assert cards_of(since_3) == {card(1): "revoked", card(3): "active"}
    assert since_3.rules is None, "the rules did not change after 3"
    assert since_3.guest is None
    since_2 = delta(engine, 2)
    assert since_2.rules is not None
    assert cards_of(since_2) == {card(1): "revoked", card(3): "active"}
    assert delta(engine, 5) is None
    assert delta(engine, 9) is None, "ahead of the registry: nothing it could apply"


def test_rules_for_the_agents_site_only(engine: sa.Engine) -> None:
    rule(engine)
    rule(engine, "youth", site="town-a")
    rule(engine, "youth", site="town-b")
    sync = delta(engine, 0, site="town-a")
    assert sorted((r.group, r.site) for r in sync.rules) == [("default", None), ("youth", "town-a")]


def test_a_large_delta_comes_in_chunks_that_end_on_a_card(engine: sa.Engine) -> None:
    issue(engine, *range(1, 6))
    rule(engine)  # 6
    first = delta(engine, 0, limit=2)
    assert (first.full, first.version, len(first.cards)) == (True, 2, 2)
    assert first.rules is None, "the rules came after this chunk's last card"
    second = delta(engine, 2, limit=2)
    assert (second.full, second.version, len(second.cards)) == (False, 4, 2)
    last = delta(engine, 4, limit=2)
    assert (last.version, len(last.cards), last.rules is not None) == (6, 1, True)


def test_a_log_that_no_longer_reaches_back_means_a_full_sync(engine: sa.Engine) -> None:
    issue(engine, 1, 2, 3, 4)
    with engine.begin() as conn:
        conn.execute(card_changes.delete().where(card_changes.c.version <= 3))
    sync = delta(engine, 2)
    assert (sync.full, sync.version_from, sync.version) == (True, 2, 4)
    assert len(sync.cards) == 4


# --- through the ingest process's timer ----------------------------------------------------


class County:
    """Agents that report through the real ingest path, and the sync timer."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.ingest = Ingestor(engine, "fp")
        self.seq: dict[str, int] = defaultdict(int)
        self.sync = CardSync(engine, "fp", timedelta(minutes=5))

    def status(self, agent: str, held: int | None, at: datetime = NOW) -> None:
        status = AgentStatus(agent_id=agent, online=True, cards_version=held)
        self.ingest.handle(f"fp/v1/county/{agent}/status", encode(status), at)

    def events(self, agent: str, *items: tuple[str, dict[str, Any]], **over: Any) -> None:
        batch = []
        for kind, payload in items:
            self.seq[agent] += 1
            batch.append(ev(self.seq[agent], kind, payload, agent=agent, **over))
        result = send(self.ingest, batch, agent=agent)
        assert result.acked_seq == self.seq[agent]

    def take(self, agent: str, n: int = 1, at: datetime = T0) -> str:
        transaction = str(uuid.uuid4())
        taken = dispense(1, 5, card(n), transaction, box=f"{agent}-box")
        self.events(agent, ("cabinet.dispense", taken), occurred_at=at.isoformat())
        return transaction

    def answer(self, agent: str, command_id: str, ok: bool = True, at: datetime = NOW) -> None:
        result = {"command_id": command_id, "command_kind": "cards.sync", "ok": ok}
        self.events(agent, ("command.result", result), occurred_at=at.isoformat())

    def run(self, at: datetime = NOW + timedelta(seconds=10)) -> Report:
        return self.sync.run(at)


def sent_to(report: Report, agent: str) -> list[Command]:
    return [
        Command.model_validate_json(out.payload)
        for out in report.sent
        if out.topic == f"fp/v1/county/{agent}/commands"
    ]


def taken(commands_: list[Command]) -> set[str]:
    out = set()
    for c in commands_:
        if isinstance(c.body, CardsUsageCommand):
            out |= {str(u.transaction) for u in c.body.usage}
    return out


def syncs(commands_: list[Command]) -> list[CardsSyncCommand]:
    return [c.body for c in commands_ if isinstance(c.body, CardsSyncCommand)]


def test_an_agent_below_the_registry_gets_one_sync_until_it_answers(engine: sa.Engine) -> None:
    county = County(engine)
    issue(engine, 1, 2)
    county.status("box-a", 0)
    county.status("climate-only", None)
    first = county.run()
    [sync] = syncs(sent_to(first, "box-a"))
    assert (sync.full, sync.version_from, sync.version, len(sync.cards)) == (True, 0, 2, 2)
    assert sent_to(first, "climate-only") == [], "no boxes, no cards"
    assert syncs(sent_to(county.run(), "box-a")) == [], "not twice while unanswered"
    [command] = sent_to(first, "box-a")
    county.answer("box-a", str(command.id), at=NOW + timedelta(seconds=20))
    later = NOW + timedelta(seconds=30)
    assert syncs(sent_to(county.run(later), "box-a")) == [], "its status predates the answer"
    county.status("box-a", 2, at=later)
    assert syncs(sent_to(county.run(later), "box-a")) == [], "up to date"
    registry.set_status(engine, card(2), "lost", T0)
    [step] = syncs(sent_to(county.run(later), "box-a"))
    assert (step.full, step.version_from, step.version) == (False, 2, 3)
    assert cards_of(step) == {card(2): "lost"}


def test_a_refused_sync_is_sent_again_and_offline_agents_wait(engine: sa.Engine) -> None:
    county = County(engine)
    issue(engine, 1)
    county.status("box-a", 0)
    [command] = sent_to(county.run(), "box-a")
    county.answer("box-a", str(command.id), ok=False)
    assert len(syncs(sent_to(county.run(), "box-a"))) == 1, "refused: try again"
    assert county.run(NOW + timedelta(hours=1)).sent == [], "not heard for an hour: offline"


def test_an_agent_ahead_of_the_registry_is_reported(engine: sa.Engine) -> None:
    county = County(engine)
    issue(engine, 1)
    county.status("box-a", 7)
    report = county.run()
    assert (report.ahead, report.sent) == (["box-a"], [])


def test_usage_goes_to_the_other_boxes_once(engine: sa.Engine) -> None:
    county = County(engine)
    for agent in ("box-a", "box-b", "box-c"):
        county.status(agent, 0)
    a1 = county.take("box-a", 1)
    b1 = county.take("box-b", 2)
    first = county.run()
    assert first.stamped == 2
    assert taken(sent_to(first, "box-a")) == {b1}, "never its own"
    assert taken(sent_to(first, "box-b")) == {a1}
    assert taken(sent_to(first, "box-c")) == {a1, b1}
    for out in first.sent:
        county.answer(out.topic.split("/")[3], out.id)
    a2 = county.take("box-a", 3)
    second = county.run()
    assert taken(sent_to(second, "box-a")) == set()
    assert taken(sent_to(second, "box-b")) == {a2}
    assert taken(sent_to(second, "box-c")) == {a2}
    county.take("box-a", 4)
    third = county.run()
    assert taken(sent_to(third, "box-b")) == set(), "its last usage is unanswered: wait"


def test_takes_of_a_usage_command_the_agent_failed_are_sent_again(engine: sa.Engine) -> None:
    county = County(engine)
    for agent in ("box-a", "box-b"):
        county.status(agent, 0)
    a1 = county.take("box-a", 1)
    [first] = sent_to(county.run(), "box-b")
    assert taken([first]) == {a1}
    county.answer("box-b", str(first.id), ok=False)
    a2 = county.take("box-a", 2)
    [again] = sent_to(county.run(), "box-b")
    assert taken([again]) == {a1, a2}, "what failed, and what came since"
    county.answer("box-b", str(again.id))
    county.take("box-a", 3)
    [after] = sent_to(county.run(), "box-b")
    assert not {a1, a2} & taken([after]), "answered: not sent again"


def test_takes_of_a_usage_command_pruned_before_its_answer_was_seen_are_sent_again(
    engine: sa.Engine,
) -> None:
    county = County(engine)
    for agent in ("box-a", "box-b"):
        county.status(agent, 0)
    a1 = county.take("box-a", 1)
    [first] = sent_to(county.run(), "box-b")
    county.answer("box-b", str(first.id))
    with engine.begin() as conn:
        conn.execute(commands.delete().where(commands.c.id == str(first.id)))
    [again] = sent_to(county.run(), "box-b")
    assert taken([again]) == {a1}, "not known to be applied: sent again"


def test_takes_that_keep_failing_are_given_up_after_three_tries(engine: sa.Engine) -> None:
    county = County(engine)
    for agent in ("box-a", "box-b"):
        county.status(agent, 0)
    a1 = county.take("box-a", 1)
    for _ in range(MAX_USAGE_FAILURES):
        [sent] = sent_to(county.run(), "box-b")
        assert taken([sent]) == {a1}
        county.answer("box-b", str(sent.id), ok=False)
    a2 = county.take("box-a", 2)
    [after] = sent_to(county.run(), "box-b")
    assert taken([after]) == {a2}, "the failing ones are skipped, later ones go on"


def test_usage_older_than_the_longest_period_is_not_sent(engine: sa.Engine) -> None:
    county = County(engine)
    county.status("box-a", 0)
    county.status("box-b", 0)
    old = county.take("box-b", at=NOW - timedelta(days=40))
    recent = county.take("box-b", at=NOW - timedelta(days=10))
    assert taken(sent_to(county.run(), "box-a")) == {recent}
    county.status("box-c", 0)
    rule(engine, days=60)
    assert taken(sent_to(county.run(), "box-c")) == {old, recent}


def tx(name: str) -> str:
    """A transaction id that reads like its name in the test."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def usage_row(agent: str, transaction: str, row_id: int | None, at: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "transaction_id": tx(transaction), "agent_id": agent, "epoch": "e0e0e0e0", "stream_id": 1,
        "seq": 1, "site_id": "county", "box": f"{agent}-box", "card": card(9),
        "product_group": "condoms", "quantity": 1, "occurred_at": at, "clock_synced": True,
    }  # fmt: skip
    if row_id is not None:
        row["id"] = row_id
    return row


def test_a_row_that_appears_behind_the_watermark_is_still_sent(engine: sa.Engine) -> None:
    """What a late commit looks like to the sync: a row with a lower id and an earlier time than
    rows already sent becomes visible only now."""
    county = County(engine)
    county.status("box-a", 0)
    county.status("box-b", 0)
    with engine.begin() as conn:
        conn.execute(cabinet_usage.insert(), [usage_row("box-b", "t-20", 20, T0)])
    assert taken(sent_to(county.run(), "box-a")) == {tx("t-20")}
    with engine.begin() as conn:
        conn.execute(commands.update().values(result_at=NOW, result_ok=True))
        late = usage_row("box-b", "t-10", 10, T0 - timedelta(minutes=30))
        conn.execute(cabinet_usage.insert(), [late])
    assert taken(sent_to(county.run(), "box-a")) == {tx("t-10")}


def test_a_transaction_committed_late_on_postgresql_is_not_missed(
    engine: sa.Engine, request: pytest.FixtureRequest
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: its rows are visible in id order")
    county = County(engine)
    county.status("box-a", 0)
    county.status("box-b", 0)
    slow = engine.connect()
    request.addfinalizer(slow.close)
    pending = slow.begin()
    early = slow.execute(
        cabinet_usage.insert().returning(cabinet_usage.c.id),
        [usage_row("box-b", "slow", None, T0)],
    ).scalar_one()
    with engine.begin() as conn:
        quick = conn.execute(
            cabinet_usage.insert().returning(cabinet_usage.c.id),
            [usage_row("box-b", "quick", None, T0)],
        ).scalar_one()
    assert early < quick, "the slow one took the lower id"
    assert taken(sent_to(county.run(), "box-a")) == {tx("quick")}
    with engine.begin() as conn:
        conn.execute(commands.update().values(result_at=NOW, result_ok=True))
    pending.commit()
    assert taken(sent_to(county.run(), "box-a")) == {tx("slow")}


def test_usage_comes_in_chunks_and_the_rest_follows(engine: sa.Engine) -> None:
    county = County(engine)
    county.sync.chunk = 2
    county.status("box-a", 0)
    county.status("box-b", 0)
    sent = set()
    made = {county.take("box-b", n) for n in range(5)}
    for _ in range(3):
        report = county.run()
        got = taken(sent_to(report, "box-a"))
        assert len(got) <= 2
        sent |= got
        with engine.begin() as conn:
            conn.execute(commands.update().values(result_at=NOW, result_ok=True))
    assert sent == made
    with engine.connect() as conn:
        stamped = conn.execute(sa.select(cabinet_usage.c.sync_round)).scalars().all()
    assert all(r is not None for r in stamped)


def test_what_is_sent_is_what_the_commands_table_holds(engine: sa.Engine) -> None:
    county = County(engine)
    issue(engine, 1)
    county.status("box-a", 0)
    county.status("box-b", 0)
    county.take("box-b")
    report = county.run()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(commands.c.id, commands.c.kind, commands.c.message)).all()
    assert {(r.id, r.message.encode()) for r in rows} == {(o.id, o.payload) for o in report.sent}
    assert sorted(r.kind for r in rows) == ["cards.sync", "cards.sync", "cards.usage"]
    [usage] = [json.loads(r.message) for r in rows if r.kind == "cards.usage"]
    assert utc(datetime.fromisoformat(usage["body"]["usage"][0]["at"])) == T0
    assert datetime.now(UTC) > T0


def test_two_ingest_processes_syncing_at_once_queue_each_command_once(engine: sa.Engine) -> None:
    county = County(engine)
    issue(engine, 1, 2)
    county.status("box-a", 0)
    county.status("box-b", 0)
    county.take("box-b")
    timers = [CardSync(engine, "fp", timedelta(minutes=5)) for _ in range(2)]
    start = threading.Barrier(2)
    reports: list[Report] = []

    def run(timer: CardSync) -> None:
        start.wait()
        reports.append(timer.run(NOW + timedelta(seconds=10)))

    threads = [threading.Thread(target=run, args=(timer,)) for timer in timers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reports) == 2
    with engine.connect() as conn:
        kinds = conn.execute(
            sa.select(commands.c.agent_id, commands.c.kind).order_by(commands.c.agent_id)
        ).all()
    assert sorted(kinds) == [
        ("box-a", "cards.sync"), ("box-a", "cards.usage"), ("box-b", "cards.sync"),
    ]  # fmt: skip


def test_the_ingest_process_runs_the_sync(engine: sa.Engine) -> None:
    from server.app import IngestService
    from server.config import ServerConfig

    county = County(engine)
    issue(engine, 1)
    county.status("box-a", 0, at=datetime.now(UTC))
    service = IngestService(ServerConfig(), engine)
    assert service.sync_cards() == 1
    assert service.sync_cards() == 0
