"""Checking the journal's hash chains (``edge-server verify``).

For each agent (any writer of the journal: a device, or the county's entries), its messages
are read in chain order, streamed in chunks, and every link is recomputed. The first broken
one is named, and what is wrong with it:

- ``altered``: the record's content (payload, time, origin, its stream's agent or epoch) no
  longer gives its hash;
- ``missing``: a position is skipped (a record deleted), or the chain ends before the last
  position kept on the agent's row (its end deleted);
- ``inserted``: a position taken twice, a position beyond the end kept on the agent's row, or
  a record that does not link to the one before it (put in by someone who did not hold the
  chain; or the one before was altered and its hash recomputed to hide it);
- ``head``: the hash kept on the agent's row is not the last record's, or the row is gone;
- ``journal``: an index row (``journal``, ``journal_conflicts``) points to a message that does
  not exist or belongs to another stream (cheap: one anti-join per agent on primary keys).

Everything is read as of one moment (one SQLite read transaction, PostgreSQL's repeatable
read), so a check while ingest runs sees each chain and its head as one commit left them.

What a hash chain cannot show: someone who rewrites a whole chain's end and the agent's row
with it, knowing this format, leaves a valid chain. A backup's chain heads (or a printed
``verify``) taken before shows it: the same position must keep the same hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from server.integrity.chain import GENESIS, Link, link_hash
from server.store.schema import agents, journal, journal_conflicts, messages, streams

Kind = Literal["altered", "missing", "inserted", "head", "journal"]

#: Messages read at a time.
CHUNK = 2000


class UnknownAgent(Exception):
    """``--agent`` names no agent of this store."""


@dataclass(frozen=True)
class Problem:
    """The first broken link of a chain. ``reason`` says which check failed (see the module
    docstring); the other fields are what a person needs to find the record."""

    kind: Kind
    reason: str
    position: int | None = None
    message_id: int | None = None
    #: The last position kept on the agent's row.
    head: int | None = None
    epoch: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class ChainReport:
    agent_id: str
    #: Records checked and found sound (all of them when ``problem`` is None).
    messages: int
    problem: Problem | None = None


@dataclass(frozen=True)
class Report:
    chains: tuple[ChainReport, ...]

    @property
    def ok(self) -> bool:
        return all(c.problem is None for c in self.chains)

    @property
    def broken(self) -> tuple[ChainReport, ...]:
        return tuple(c for c in self.chains if c.problem is not None)


def verify(engine: sa.Engine, agent: str | None = None, chunk: int = CHUNK) -> Report:
    """Check every agent's chain (or ``agent``'s alone; ``UnknownAgent`` if it has neither a
    row nor a message). Database errors are raised as they come."""
    with engine.connect() as conn:
        _one_moment(conn)
        try:
            return Report(tuple(_verify(conn, agent, chunk)))
        finally:
            conn.rollback()


def _verify(conn: sa.Connection, only: str | None, chunk: int) -> Iterable[ChainReport]:
    of_stream = {
        int(i): (str(a), str(e))
        for i, a, e in conn.execute(sa.select(streams.c.id, streams.c.agent_id, streams.c.epoch))
    }
    heads_query = sa.select(agents.c.agent_id, agents.c.chain_pos, agents.c.chain_head)
    names_query = sa.select(messages.c.agent_id).distinct()
    if only is not None:
        heads_query = heads_query.where(agents.c.agent_id == only)
        names_query = names_query.where(messages.c.agent_id == only)
    heads = {str(a): (int(p), h or GENESIS) for a, p, h in conn.execute(heads_query)}
    names = sorted(set(heads).union(str(a) for a in conn.execute(names_query).scalars()))
    if only is not None and not names:
        raise UnknownAgent(only)
    for name in names:
        report = _walk(conn, name, heads.get(name), of_stream, chunk)
        if report.problem is None:
            mine = [i for i, (a, _) in of_stream.items() if a == name]
            problem = _index_problem(conn, mine, of_stream)
            if problem is not None:
                report = ChainReport(name, report.messages, problem)
        yield report


def _walk(
    conn: sa.Connection,
    agent: str,
    head: tuple[int, str] | None,
    of_stream: dict[int, tuple[str, str]],
    chunk: int,
) -> ChainReport:
    query = (
        sa.select(
            messages.c.id,
            messages.c.stream_id,
            messages.c.chain_pos,
            messages.c.chain_prev,
            messages.c.chain_hash,
            messages.c.received_at,
            messages.c.origin,
            messages.c.payload,
        )
        .where(messages.c.agent_id == agent)
        .order_by(messages.c.chain_pos, messages.c.id)
    )
    expected, prev = 1, GENESIS
    head_pos = head[0] if head is not None else None
    result = conn.execution_options(yield_per=chunk).execute(query)
    try:
        for part in result.partitions():
            for row in part:
                problem = _check(row, agent, expected, prev, head_pos, of_stream)
                if problem is not None:
                    return ChainReport(agent, expected - 1, problem)
                expected += 1
                prev = row.chain_hash
    finally:
        result.close()
    count = expected - 1
    if head is None:
        return ChainReport(agent, count, Problem("head", "no_agent", position=count))
    if head[0] > count:
        return ChainReport(agent, count, Problem("missing", "end", position=expected, head=head[0]))
    if head[1] != prev:
        return ChainReport(agent, count, Problem("head", "hash", position=count, head=head[0]))
    return ChainReport(agent, count)


def _check(
    row: Any,
    agent: str,
    expected: int,
    prev: str,
    head: int | None,
    of_stream: dict[int, tuple[str, str]],
) -> Problem | None:
    position, message_id = int(row.chain_pos), int(row.id)
    if position < expected:
        return Problem("inserted", "duplicate", position, message_id)
    if position > expected:
        return Problem("missing", "gap", expected, message_id)
    if head is not None and position > head:
        return Problem("inserted", "beyond_head", position, message_id, head=head)
    if row.chain_prev != prev:
        return Problem("inserted", "link", position, message_id)
    stream = of_stream.get(int(row.stream_id))
    if stream is None or stream[0] != agent:
        return Problem("altered", "stream", position, message_id)
    link = Link(agent, stream[1], position, row.received_at, row.origin, bytes(row.payload))
    if link_hash(link, prev) != row.chain_hash:
        return Problem("altered", "hash", position, message_id, epoch=stream[1])
    return None


def _index_problem(
    conn: sa.Connection, stream_ids: list[int], of_stream: dict[int, tuple[str, str]]
) -> Problem | None:
    """The first index row of these streams whose message is gone or another stream's."""
    if not stream_ids:
        return None
    for table, reason in ((journal, "event"), (journal_conflicts, "conflict")):
        found = conn.execute(
            sa.select(table.c.stream_id, table.c.seq, table.c.message_id)
            .select_from(table.outerjoin(messages, messages.c.id == table.c.message_id))
            .where(
                table.c.stream_id.in_(stream_ids),
                sa.or_(messages.c.id.is_(None), messages.c.stream_id != table.c.stream_id),
            )
            .limit(1)
        ).first()
        if found is not None:
            epoch = of_stream[int(found.stream_id)][1]
            return Problem(
                "journal", reason, message_id=int(found.message_id), epoch=epoch, seq=found.seq
            )
    return None


def _one_moment(conn: sa.Connection) -> None:
    """Read everything as of one moment (pysqlite begins no transaction for reads by itself)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")
    elif conn.dialect.name == "postgresql":
        conn.execution_options(isolation_level="REPEATABLE READ")
