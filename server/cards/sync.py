"""What the boxes' agents are sent: registry changes (``cards.sync``) and the takes recorded at
other boxes (``cards.usage``), so that one quota holds across every box of the county.

An agent with boxes says in its status which registry version it holds (``cards_version``).

**Cards.** An online agent below the registry's version gets the cards changed after its
version, each in its latest state, and the rules and guest policy if they changed too: a delta
from its version (``full`` from 0, or when ``card_changes`` no longer holds every version since
its own, in which case it gets every card). At most ``CHUNK`` cards go in one command: the
command then stops at the version of its last card, and the rest follows once the agent reports
that version. Versions are given out under the registry's lock (``registry.lock``), so a
reader that sees version n sees every change up to n; the delta is read in one snapshot.

**Usage.** Every card dispense is a row of ``cabinet_usage`` (the cabinet projection, written by
whichever ingest process stored the event). Numbering rows by id, or by time, and remembering
the last one sent would miss rows: with several ingest processes on PostgreSQL a row with a
lower id (or an earlier time) can commit after a higher one was already read. So rows are
numbered again once they are visible: each sync first *stamps* every row that has no
``sync_round`` yet with the next round, from the counter row ``card_sync_clock``, all in one
transaction that holds the counter's lock. A row still uncommitted is not seen, keeps no round,
and is stamped by a later sync with a later round; rows of a round are all committed before that
round can be read. The watermark of each agent (``card_sync_agents``) is the last (round, row id)
queued to it, and each round reads what follows it up to the counter: nothing is missed
however transactions interleave, with no overlap or clock involved. A row the projection writes
again (a replay) comes back unstamped and is sent again: agents keep each transaction once, so
duplicates cost only bytes. Only rows of the other agents' boxes within the longest rule period
are sent. An agent that answers a ``cards.usage`` failed has its watermark put back to where it
stood before that command, so those takes are sent again (an agent whose outbox is full answers
nothing, and the command itself is resent).

Each agent's sync is one transaction that first locks its ``card_sync_agents`` row, so several
ingest processes running this timer never queue the same command twice; a new command is not
queued while the agent's previous one of that kind is unanswered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from edge_agent.wire import CardEntry, CardsSyncCommand, CardsUsageCommand, Usage
from server.cards.queries import head, rules
from server.commands import Outgoing, queue_in
from server.ingest.journal import insert_ignore
from server.link import online
from server.store.db import utc
from server.store.schema import (
    agents,
    cabinet_usage,
    card_changes,
    card_sync_agents,
    card_sync_clock,
    cards,
    commands,
    quota_rules,
)

log = logging.getLogger(__name__)

#: Cards or usage entries in one command at most.
CHUNK = 20_000
#: Usage is sent back this far at least (the boxes' default quota period).
DEFAULT_PERIOD_DAYS = 30
#: A ``cards.usage`` answered failed this many times in a row is given up on.
MAX_USAGE_FAILURES = 3
#: A usage watermark's row id meaning "the whole round".
WHOLE_ROUND = 2**62


@dataclass(frozen=True)
class BoxAgent:
    agent_id: str
    site_id: str
    cards_version: int
    status_at: datetime | None


@dataclass(frozen=True)
class Report:
    stamped: int
    sent: list[Outgoing]
    #: Agents that hold a version above the registry's (a database restored from a backup?).
    ahead: list[str]


# --- cards ------------------------------------------------------------------------------------


def log_reaches(conn: sa.Connection, held: int, upto: int) -> bool:
    """Whether ``card_changes`` holds every version after ``held`` up to ``upto``."""
    c = card_changes
    n = conn.execute(
        sa.select(sa.func.count()).where(c.c.version > held, c.c.version <= upto)
    ).scalar_one()
    return int(n) == upto - held


def card_delta(
    conn: sa.Connection, held: int, site: str, limit: int = CHUNK
) -> CardsSyncCommand | None:
    """What an agent of ``site`` holding version ``held`` is to be sent, or None when it is up
    to date (or ahead). Read it inside ``snapshot``."""
    now = head(conn)
    if held >= now.version:
        return None
    full = held == 0 or not log_reaches(conn, held, now.version)
    since = 0 if full else held
    query = sa.select(cards).where(cards.c.version > since).order_by(cards.c.version)
    rows = conn.execute(query.limit(limit)).all()
    upto = now.version if len(rows) < limit else int(rows[-1].version)
    if upto <= held:
        # A full sync for an agent whose version the log no longer reaches must still move it
        # forward: the command then carries more than ``limit`` cards.
        upto = held + 1
        rows = conn.execute(query.where(cards.c.version <= upto)).all()
    entries = [
        CardEntry(card=r.pseudonym, status=r.status, role=r.role, group=r.card_group)
        for r in rows
        if r.version <= upto
    ]
    command = CardsSyncCommand(version_from=held, version=upto, full=full, cards=entries)
    if since < now.rules_version <= upto:
        command = command.model_copy(update={"rules": [r.rule for r in rules(conn, site)]})
    if since < now.guest_version <= upto:
        command = command.model_copy(update={"guest": now.guest})
    return command


@contextmanager
def snapshot(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection that reads the database as of one moment."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
            return
        conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


def box_agents(conn: sa.Connection, now: datetime, offline_after: timedelta) -> list[BoxAgent]:
    """Online agents whose status names a registry version: those with boxes."""
    query = (
        sa.select(agents.c.agent_id, agents.c.site_id, agents.c.status, agents.c.status_at)
        .where(online(now, offline_after), agents.c.status.is_not(None))
        .order_by(agents.c.agent_id)
    )
    out = []
    for agent, site, status, status_at in conn.execute(query):
        held = json.loads(status).get("cards_version")
        if isinstance(held, int) and not isinstance(held, bool):
            out.append(BoxAgent(agent, site, held, utc(status_at) if status_at else None))
    return out


def _lock_agent(conn: sa.Connection, agent_id: str, now: datetime) -> tuple[tuple[int, int], bool]:
    """This agent's usage watermark, its sync row locked (the first statement, so SQLite's write
    lock comes first), and whether a ``cards.usage`` is still unanswered. If the last one was
    answered failed, the watermark goes back to where it stood before it, so its takes are sent
    again; after ``MAX_USAGE_FAILURES`` in a row they are skipped, with an error in the log."""
    s = card_sync_agents
    conn.execute(insert_ignore(conn, s).values(agent_id=agent_id))
    conn.execute(s.update().where(s.c.agent_id == agent_id).values(agent_id=agent_id))
    row = conn.execute(sa.select(s).where(s.c.agent_id == agent_id)).one()
    mark = (int(row.usage_round), int(row.usage_id))
    # Waiting is read before failure: an answer, once stored, never changes, so one that
    # arrives between the two reads is seen at the next round rather than half now.
    if _usage_waiting(conn, agent_id):
        return mark, True
    if row.usage_command is None:
        return mark, False
    answer = conn.execute(
        sa.select(commands.c.result_ok, commands.c.result_detail).where(
            commands.c.id == row.usage_command
        )
    ).first()
    mine = s.c.agent_id == agent_id
    if answer is not None and answer.result_ok is None:
        return mark, True
    if answer is not None and answer.result_ok:
        conn.execute(s.update().where(mine).values(usage_command=None, usage_failures=0))
        return mark, False
    if answer is None:
        # Pruned before a round saw its answer: whether it was applied is not known, so its
        # takes are sent again (the agent keeps each take once); no failure is counted.
        log.warning("agent %s: cards.usage %s is no longer kept; its takes are sent again",
                    agent_id, row.usage_command)  # fmt: skip
        failures = int(row.usage_failures)
    else:
        failures = int(row.usage_failures) + 1
        if failures >= MAX_USAGE_FAILURES:
            log.error(
                "agent %s: cards.usage failed %d times in a row (%s); those takes are not sent "
                "again, and its quota may let a card take more than its share",
                agent_id, failures, answer.result_detail,
            )  # fmt: skip
            conn.execute(s.update().where(mine).values(usage_command=None, usage_failures=0))
            return mark, False
        log.warning(
            "agent %s: cards.usage %s failed (%s); its takes are sent again",
            agent_id, row.usage_command, answer.result_detail,
        )  # fmt: skip
    back = (int(row.usage_from_round), int(row.usage_from_id))
    conn.execute(
        s.update()
        .where(mine)
        .values(usage_round=back[0], usage_id=back[1], usage_command=None,
                usage_failures=failures, updated_at=now)
    )  # fmt: skip
    return back, False


def _sync_waiting(conn: sa.Connection, agent: BoxAgent) -> bool:
    """Whether a ``cards.sync`` from the agent's version is unanswered, or was applied after the
    agent's last status (which then still names the old version)."""
    c = commands
    query = sa.select(c.c.message, c.c.result_ok, c.c.result_at).where(
        c.c.agent_id == agent.agent_id, c.c.kind == "cards.sync"
    )
    if agent.status_at is not None:
        query = query.where(sa.or_(c.c.result_at.is_(None), c.c.result_at >= agent.status_at))
    else:
        query = query.where(c.c.result_at.is_(None))
    for message, ok, result_at in conn.execute(query):
        held = json.loads(message)["body"]["version_from"]
        if held == agent.cards_version and (result_at is None or ok):
            return True
    return False


# --- usage ------------------------------------------------------------------------------------


def stamp_usage(engine: sa.Engine) -> int:
    """Give every visible unstamped usage row the next round; return how many."""
    u = cabinet_usage
    with engine.connect() as conn:
        if conn.execute(sa.select(u.c.id).where(u.c.sync_round.is_(None)).limit(1)).first() is None:
            return 0
    with engine.begin() as conn:
        k = card_sync_clock
        conn.execute(insert_ignore(conn, k).values(id=1))
        conn.execute(k.update().where(k.c.id == 1).values(last_round=k.c.last_round + 1))
        now_round = conn.execute(sa.select(k.c.last_round).where(k.c.id == 1)).scalar_one()
        done = conn.execute(u.update().where(u.c.sync_round.is_(None)).values(sync_round=now_round))
        return int(done.rowcount)


def usage_period(conn: sa.Connection) -> timedelta:
    """The longest period any quota counts back over (rules, guest policy, the default)."""
    longest = conn.execute(sa.select(sa.func.max(quota_rules.c.period_days))).scalar()
    days = [DEFAULT_PERIOD_DAYS, int(longest or 0)]
    registry = head(conn)
    if registry.guest.mode == "quota":
        days.append(registry.guest.period_days)
    return timedelta(days=max(days))


def usage_after(
    conn: sa.Connection,
    agent_id: str,
    after: tuple[int, int],
    upto_round: int,
    since: datetime,
    limit: int = CHUNK,
) -> tuple[list[Usage], tuple[int, int]]:
    """Takes at other agents' boxes after the watermark ``after`` (round, id) up to round
    ``upto_round``, taken since ``since``; and the watermark after them."""
    u = cabinet_usage
    after_round, after_id = after
    if after_round > upto_round:
        after_round, after_id = 0, 0  # the counter went back (a store restored): send again
    rows = conn.execute(
        sa.select(u.c.id, u.c.sync_round, u.c.transaction_id, u.c.card, u.c.product_group,
                  u.c.quantity, u.c.occurred_at, u.c.box)
        .where(
            sa.or_(u.c.sync_round > after_round,
                   sa.and_(u.c.sync_round == after_round, u.c.id > after_id)),
            u.c.sync_round <= upto_round,
            u.c.agent_id != agent_id,
            u.c.occurred_at >= since,
        )
        .order_by(u.c.sync_round, u.c.id)
        .limit(limit)
    ).all()  # fmt: skip
    usage = [
        Usage(transaction=r.transaction_id, card=r.card, product_group=r.product_group,
              quantity=r.quantity, at=utc(r.occurred_at), box=r.box)
        for r in rows
    ]  # fmt: skip
    if len(rows) < limit:
        return usage, (upto_round, WHOLE_ROUND)
    return usage, (int(rows[-1].sync_round), int(rows[-1].id))


def _usage_waiting(conn: sa.Connection, agent_id: str) -> bool:
    c = commands
    query = sa.select(c.c.id).where(
        c.c.agent_id == agent_id, c.c.kind == "cards.usage", c.c.result_at.is_(None)
    )
    return conn.execute(query.limit(1)).first() is not None


# --- one round ----------------------------------------------------------------------------------


class CardSync:
    """The ingest process's timer: one ``run`` every ``cards.sync_interval_s``."""

    def __init__(
        self, engine: sa.Engine, prefix: str, offline_after: timedelta, chunk: int = CHUNK
    ) -> None:
        self.engine = engine
        self.prefix = prefix
        self.offline_after = offline_after
        self.chunk = chunk
        self._ahead: set[tuple[str, int]] = set()

    def run(self, now: datetime) -> Report:
        stamped = stamp_usage(self.engine)
        sent: list[Outgoing] = []
        ahead: list[str] = []
        deltas: dict[tuple[int, str], CardsSyncCommand | None] = {}
        with snapshot(self.engine) as conn:
            targets = box_agents(conn, now, self.offline_after)
            version = head(conn).version
            for a in targets:
                if a.cards_version > version:
                    ahead.append(a.agent_id)
                elif a.cards_version == version or _sync_waiting(conn, a):
                    continue  # checked again under the agent's lock before anything is queued
                elif (a.cards_version, a.site_id) not in deltas:
                    deltas[(a.cards_version, a.site_id)] = card_delta(
                        conn, a.cards_version, a.site_id, self.chunk
                    )
        for agent_id in ahead:
            held = next(a.cards_version for a in targets if a.agent_id == agent_id)
            if (agent_id, held) not in self._ahead:
                self._ahead.add((agent_id, held))
                log.error(
                    "agent %s holds card registry version %d, above this registry's %d "
                    "(was the database restored?); it is sent nothing until the registry passes it",
                    agent_id, held, version,
                )  # fmt: skip
        for a in targets:
            delta = deltas.get((a.cards_version, a.site_id))
            with self.engine.begin() as conn:
                watermark, usage_waiting = _lock_agent(conn, a.agent_id, now)
                if delta is not None and not _sync_waiting(conn, a):
                    sent.append(queue_in(conn, self.prefix, a.agent_id, delta, now))
                    log.info(
                        "agent %s: cards.sync %d -> %d%s, %d cards",
                        a.agent_id, delta.version_from, delta.version,
                        " (full)" if delta.full else "", len(delta.cards),
                    )  # fmt: skip
                if not usage_waiting:
                    sent += self._usage(conn, a, watermark, now)
        return Report(stamped, sent, ahead)

    def _usage(
        self, conn: sa.Connection, agent: BoxAgent, after: tuple[int, int], now: datetime
    ) -> list[Outgoing]:
        k = card_sync_clock
        upto = conn.execute(sa.select(k.c.last_round).where(k.c.id == 1)).scalar()
        if upto is None:
            return []
        since = now - usage_period(conn)
        usage, mark = usage_after(conn, agent.agent_id, after, int(upto), since, self.chunk)
        s = card_sync_agents
        mine = s.c.agent_id == agent.agent_id
        if mark != after:
            conn.execute(
                s.update().where(mine).values(usage_round=mark[0], usage_id=mark[1], updated_at=now)
            )
        if not usage:
            return []
        out = queue_in(conn, self.prefix, agent.agent_id, CardsUsageCommand(usage=usage), now)
        conn.execute(
            s.update()
            .where(mine)
            .values(usage_command=out.id, usage_from_round=after[0], usage_from_id=after[1])
        )
        log.info("agent %s: cards.usage with %d takes at other boxes", agent.agent_id, len(usage))
        return [out]
