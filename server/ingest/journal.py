"""The journal's storage: agents, streams, messages as received, the per-event index, conflicts
and dead letters. Knows nothing of what an event means.

Every function runs inside the caller's transaction. Agents are locked in sorted order
(``lock_agents``) before anything of theirs is touched, so two ingest processes never wait on
each other in a cycle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from server.integrity.chain import GENESIS, Link, link_hash
from server.store.db import bulk_insert, utc
from server.store.schema import (
    agents,
    dead_letters,
    journal,
    journal_conflicts,
    messages,
    streams,
)

JOURNAL_COLUMNS = ("stream_id", "seq", "span", "message_id", "idx", "kind", "status")


def insert_ignore(conn: sa.Connection, table: sa.Table) -> Any:
    """An INSERT that leaves an existing row alone, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


@dataclass
class AgentRow:
    agent_id: str
    site_id: str
    primary_stream: int | None


@dataclass
class StreamRow:
    id: int
    agent_id: str
    epoch: str
    state: str
    acked: int
    highest: int
    gap_since: datetime | None
    first_received_at: datetime
    last_received_at: datetime


@dataclass(frozen=True)
class JournalRow:
    seq: int
    span: int
    message_id: int
    idx: int
    kind: str
    status: str


# --- agents and streams -------------------------------------------------------------------------


def lock_agents(
    conn: sa.Connection, sites: dict[str, str], now: datetime, known: Iterable[str] = ()
) -> dict[str, AgentRow]:
    """Create unknown agents and lock every one named (agent -> site of the first message),
    and the ``known`` ones if they exist (never created: agents of refused messages, whose
    counters are updated), all in one sorted pass."""
    found: dict[str, AgentRow] = {}
    for agent in sorted(set(sites).union(known)):
        if agent in sites:
            conn.execute(
                insert_ignore(conn, agents).values(
                    agent_id=agent, site_id=sites[agent], first_seen_at=now, last_heard_at=now
                )
            )
        row = conn.execute(
            sa.select(agents.c.site_id, agents.c.primary_stream)
            .where(agents.c.agent_id == agent)
            .with_for_update()
        ).one_or_none()
        if row is not None:
            found[agent] = AgentRow(agent, row.site_id, row.primary_stream)
    return found


def lock_agent(conn: sa.Connection, agent: str) -> AgentRow:
    """Lock one known agent (for work no message triggered: catch-up, replay, epochs)."""
    row = conn.execute(
        sa.select(agents.c.site_id, agents.c.primary_stream)
        .where(agents.c.agent_id == agent)
        .with_for_update()
    ).one()
    return AgentRow(agent, row.site_id, row.primary_stream)


def heard(conn: sa.Connection, agent: str, now: datetime) -> None:
    conn.execute(agents.update().where(agents.c.agent_id == agent).values(last_heard_at=now))


def _stream(row: Any) -> StreamRow:
    return StreamRow(
        int(row.id),
        row.agent_id,
        row.epoch,
        row.state,
        int(row.acked_seq),
        int(row.highest_seq),
        utc(row.gap_since) if row.gap_since else None,
        utc(row.first_received_at),
        utc(row.last_received_at),
    )


_STREAM_COLUMNS = (
    streams.c.id,
    streams.c.agent_id,
    streams.c.epoch,
    streams.c.state,
    streams.c.acked_seq,
    streams.c.highest_seq,
    streams.c.gap_since,
    streams.c.first_received_at,
    streams.c.last_received_at,
)


def stream_by_epoch(conn: sa.Connection, agent: str, epoch: str) -> StreamRow | None:
    row = conn.execute(
        sa.select(*_STREAM_COLUMNS).where(streams.c.agent_id == agent, streams.c.epoch == epoch)
    ).first()
    return _stream(row) if row else None


def stream_by_id(conn: sa.Connection, stream_id: int) -> StreamRow:
    return _stream(conn.execute(sa.select(*_STREAM_COLUMNS).where(streams.c.id == stream_id)).one())


def agent_streams(conn: sa.Connection, agent: str) -> list[StreamRow]:
    query = sa.select(*_STREAM_COLUMNS).where(streams.c.agent_id == agent).order_by(streams.c.id)
    return [_stream(r) for r in conn.execute(query)]


def create_stream(
    conn: sa.Connection, agent: str, epoch: str, state: str, now: datetime
) -> StreamRow:
    stream_id = conn.execute(
        streams.insert().values(
            agent_id=agent,
            epoch=epoch,
            state=state,
            acked_seq=0,
            highest_seq=0,
            first_received_at=now,
            last_received_at=now,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    return StreamRow(int(stream_id), agent, epoch, state, 0, 0, None, now, now)


def update_stream(conn: sa.Connection, stream_id: int, **values: object) -> None:
    conn.execute(streams.update().where(streams.c.id == stream_id).values(**values))


def count_on_stream(conn: sa.Connection, stream_id: int, **increments: int) -> None:
    """Add to the stream's counters (not_understood, malformed, conflicts)."""
    values = {k: streams.c[k] + n for k, n in increments.items() if n}
    if values:
        conn.execute(streams.update().where(streams.c.id == stream_id).values(**values))


def set_primary(conn: sa.Connection, agent: str, stream_id: int) -> None:
    conn.execute(agents.update().where(agents.c.agent_id == agent).values(primary_stream=stream_id))


def raise_identity_conflict(conn: sa.Connection, agent: str, what: str, now: datetime) -> None:
    conn.execute(
        agents.update()
        .where(agents.c.agent_id == agent)
        .values(identity_conflict_at=now, identity_conflict=what[:500])
    )


# --- the journal --------------------------------------------------------------------------------


def insert_message(
    conn: sa.Connection, stream_id: int, payload: bytes, now: datetime, origin: str = "mqtt"
) -> int:
    """Keep a message as received, as the next link of its agent's hash chain
    (``server.integrity.chain``). The agent is locked already (``lock_agents``); ``FOR UPDATE``
    here only makes sure that two processes never give two messages one position."""
    at = conn.execute(
        sa.select(streams.c.agent_id, streams.c.epoch, agents.c.chain_pos, agents.c.chain_head)
        .join(agents, agents.c.agent_id == streams.c.agent_id)
        .where(streams.c.id == stream_id)
        .with_for_update(of=agents)
    ).one()
    received = utc(now)
    position = int(at.chain_pos) + 1
    link = Link(at.agent_id, at.epoch, position, received, origin, payload)
    digest = link_hash(link, at.chain_head or GENESIS)
    message_id = int(
        conn.execute(
            messages.insert().values(
                stream_id=stream_id,
                received_at=received,
                origin=origin,
                payload=payload,
                agent_id=at.agent_id,
                chain_pos=position,
                chain_prev=at.chain_head or GENESIS,
                chain_hash=digest,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    )
    conn.execute(
        agents.update()
        .where(agents.c.agent_id == at.agent_id)
        .values(chain_pos=position, chain_head=digest)
    )
    return message_id


def insert_events(conn: sa.Connection, rows: list[tuple[object, ...]]) -> None:
    """Rows in ``JOURNAL_COLUMNS`` order."""
    bulk_insert(conn, journal, JOURNAL_COLUMNS, rows)


def insert_conflicts(
    conn: sa.Connection,
    stream_id: int,
    message_id: int,
    found: list[tuple[int, int, str]],
    now: datetime,
) -> None:
    """``found``: (seq, idx, reason) of events that claim a number another event holds."""
    if found:
        conn.execute(
            journal_conflicts.insert(),
            [
                {
                    "stream_id": stream_id,
                    "seq": seq,
                    "message_id": message_id,
                    "idx": idx,
                    "received_at": now,
                    "reason": reason,
                }
                for seq, idx, reason in found
            ],
        )


_JOURNAL_SELECT = (
    journal.c.seq,
    journal.c.span,
    journal.c.message_id,
    journal.c.idx,
    journal.c.kind,
    journal.c.status,
)


def _rows(conn: sa.Connection, query: sa.Select[Any]) -> list[JournalRow]:
    return [
        JournalRow(int(a), int(b), int(c), int(d), e, f) for a, b, c, d, e, f in conn.execute(query)
    ]


def stored(conn: sa.Connection, stream_id: int, seqs: Iterable[int]) -> dict[int, JournalRow]:
    """The journaled events starting at any of ``seqs``."""
    wanted = sorted(set(seqs))
    if not wanted:
        return {}
    found: dict[int, JournalRow] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        query = sa.select(*_JOURNAL_SELECT).where(
            journal.c.stream_id == stream_id, journal.c.seq.between(chunk[0], chunk[-1])
        )
        found.update({r.seq: r for r in _rows(conn, query) if r.seq in set(chunk)})
    return found


def read(
    conn: sa.Connection, stream_id: int, after: int, upto: int, limit: int
) -> list[JournalRow]:
    """Journaled events numbered ``after < seq <= upto``, in order."""
    query = (
        sa.select(*_JOURNAL_SELECT)
        .where(journal.c.stream_id == stream_id, journal.c.seq > after, journal.c.seq <= upto)
        .order_by(journal.c.seq)
        .limit(limit)
    )
    return _rows(conn, query)


def near(
    conn: sa.Connection, stream_id: int, after: int, first: int, last: int
) -> list[JournalRow]:
    """Held-back events (numbered above ``after``) that a claim of ``first .. last`` can meet:
    those starting in that range and the one just before it, which may span into it. Stored
    events never overlap, so no other can."""
    in_range = sa.select(*_JOURNAL_SELECT).where(
        journal.c.stream_id == stream_id,
        journal.c.seq > after,
        journal.c.seq >= first,
        journal.c.seq <= last,
    )
    before = (
        sa.select(*_JOURNAL_SELECT)
        .where(journal.c.stream_id == stream_id, journal.c.seq > after, journal.c.seq < first)
        .order_by(journal.c.seq.desc())
        .limit(1)
    )
    return [*_rows(conn, before), *_rows(conn, in_range.order_by(journal.c.seq))]


def load_raw(conn: sa.Connection, message_ids: Iterable[int]) -> dict[int, list[Any]]:
    """The ``events`` lists of stored messages, decoded, by message id."""
    ids = sorted(set(message_ids))
    out: dict[int, list[Any]] = {}
    for i in range(0, len(ids), 100):
        query = sa.select(messages.c.id, messages.c.payload).where(
            messages.c.id.in_(ids[i : i + 100])
        )
        for mid, payload in conn.execute(query):
            out[int(mid)] = json.loads(payload)["events"]
    return out


def unknown(conn: sa.Connection, stream_id: int) -> list[JournalRow]:
    """The stream's events journaled as not yet understood."""
    query = sa.select(*_JOURNAL_SELECT).where(
        journal.c.stream_id == stream_id, journal.c.status == "unknown"
    )
    return _rows(conn, query.order_by(journal.c.seq))


def set_status(conn: sa.Connection, stream_id: int, seqs: list[int], status: str) -> None:
    if seqs:
        conn.execute(
            journal.update()
            .where(journal.c.stream_id == stream_id, journal.c.seq.in_(seqs))
            .values(status=status)
        )


# --- dead letters --------------------------------------------------------------------------------


def dead_letter(
    conn: sa.Connection,
    topic: str,
    agent: str | None,
    payload: bytes,
    reason: str,
    now: datetime,
    epoch: str | None = None,
    seq: int | None = None,
) -> None:
    conn.execute(
        dead_letters.insert().values(
            received_at=now,
            topic=topic,
            agent_id=agent,
            epoch=epoch,
            seq=seq,
            reason=reason,
            payload=payload,
        )
    )


def count_dropped(conn: sa.Connection, counts: dict[str, int]) -> None:
    """Messages not kept at all (beyond an agent's queue share), counted with dropped dead
    letters. Agents unknown to the store are not created for it."""
    for agent, n in sorted(counts.items()):
        conn.execute(
            agents.update()
            .where(agents.c.agent_id == agent)
            .values(dead_letters_dropped=agents.c.dead_letters_dropped + n)
        )


def count_dead_letter(conn: sa.Connection, agent: str, kept: bool) -> None:
    column = "dead_lettered" if kept else "dead_letters_dropped"
    conn.execute(
        agents.update().where(agents.c.agent_id == agent).values({column: agents.c[column] + 1})
    )
