"""Commands to agents: queued in the database, published until the agent's result comes back.

A command is published (QoS 1) when queued and again while its agent is online and no result
has arrived, the wait doubling from ``retry_s`` up to ``retry_max_s`` (``resend_wait``): a
command the agent never answers (one too big for its outbox, say) costs a publish every
``retry_max_s``, not every ``retry_s`` for ever, and is an alert (``agent.commands``). The
agent applies each command id once, so repeats are harmless. The result comes back as an
ordinary ``command.result`` event through ingest. Answered commands are deleted ``keep`` after
their answer (``prune``); the journal keeps the results.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError

from edge_agent.wire import Channel, Command, CommandBody, CommandResultEvent, encode, topic
from server.ingest.timefix import BootRef
from server.ingest.validate import brief
from server.link import online
from server.projections import Run
from server.store.schema import agents, commands

BODY_ADAPTER: TypeAdapter[CommandBody] = TypeAdapter(CommandBody)


class CommandError(Exception):
    """The command cannot be queued (unknown agent, invalid body)."""


@dataclass(frozen=True)
class Outgoing:
    id: str
    topic: str
    payload: bytes
    #: Times published before this one.
    attempts: int = 0


def resend_wait(attempts: int, retry_s: float, most_s: float) -> float:
    """Seconds to wait for a result after the ``attempts``-th publish: ``retry_s``, doubling
    with each publish, at most ``most_s`` (never below ``retry_s``)."""
    return max(retry_s, min(retry_s * 2.0 ** min(max(attempts - 1, 0), 30), most_s))


def parse_body(kind: str, data: dict[str, Any]) -> CommandBody:
    try:
        return BODY_ADAPTER.validate_python({**data, "kind": kind})
    except ValidationError as exc:
        raise CommandError(f"invalid {kind} command: {brief(exc)}") from None


def queue(
    engine: sa.Engine, prefix: str, agent_id: str, body: CommandBody, now: datetime
) -> Outgoing:
    with engine.begin() as conn:
        return queue_in(conn, prefix, agent_id, body, now)


def queue_in(
    conn: sa.Connection, prefix: str, agent_id: str, body: CommandBody, now: datetime
) -> Outgoing:
    """``queue`` inside the caller's transaction, so that what the command stands for (a sync's
    watermark, say) is written with it or not at all."""
    site = conn.execute(
        sa.select(agents.c.site_id).where(agents.c.agent_id == agent_id)
    ).scalar_one_or_none()
    if site is None:
        raise CommandError(f"unknown agent {agent_id!r} (it has not reported yet)")
    command = Command(id=uuid.uuid4(), agent_id=agent_id, issued_at=now, body=body)
    message = encode(command)
    conn.execute(
        commands.insert().values(
            id=str(command.id),
            agent_id=agent_id,
            site_id=site,
            kind=body.kind,
            message=message.decode(),
            created_at=now,
        )
    )
    return Outgoing(str(command.id), topic(prefix, site, agent_id, Channel.COMMANDS), message)


def due(engine: sa.Engine, prefix: str, now: datetime, offline_after: timedelta) -> list[Outgoing]:
    """Commands without a result, for online agents, whose wait (``next_at``) is over."""
    c = commands
    query = (
        sa.select(c.c.id, c.c.site_id, c.c.agent_id, c.c.message, c.c.attempts)
        .join(agents, agents.c.agent_id == c.c.agent_id)
        .where(
            c.c.result_at.is_(None),
            online(now, offline_after),
            sa.or_(c.c.next_at.is_(None), c.c.next_at <= now),
        )
        .order_by(c.c.created_at)
        .limit(500)
    )
    with engine.connect() as conn:
        return [
            Outgoing(cid, topic(prefix, site, agent, Channel.COMMANDS), message.encode(), n)
            for cid, site, agent, message, n in conn.execute(query)
        ]


def mark_published(
    engine: sa.Engine, sent: list[Outgoing], now: datetime, retry_s: float, most_s: float
) -> None:
    """Count each publish and set when the command is due again if still unanswered."""
    if not sent:
        return
    rows = [
        {
            "command": out.id,
            "at": now,
            "again": now + timedelta(seconds=resend_wait(out.attempts + 1, retry_s, most_s)),
        }
        for out in sent
    ]
    with engine.begin() as conn:
        conn.execute(_PUBLISHED, rows)


_PUBLISHED = (
    commands.update()
    .where(commands.c.id == sa.bindparam("command"))
    .values(
        published_at=sa.bindparam("at"),
        attempts=commands.c.attempts + 1,
        next_at=sa.bindparam("again"),
    )
)


#: Kept whatever their age: restock proposals count an order until a load names it, and there
#: are a few a month per box.
KEPT_KINDS = ("restock.order",)


def prune(engine: sa.Engine, now: datetime, keep: timedelta, chunk: int = 5000) -> int:
    """Delete commands queued and answered before ``now - keep``, ``chunk`` at a time (each in
    its own transaction, so a first prune of months never holds the database); return how
    many. The unanswered stay whatever their age: they are still owed a result. Queued is the
    server's own time; answered is the agent's, which a clock not yet set may put years back,
    so both must be old."""
    c = commands
    cutoff = now - keep
    old = sa.select(c.c.id).where(
        c.c.result_at < cutoff, c.c.created_at < cutoff, c.c.kind.not_in(KEPT_KINDS)
    )
    deleted = 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(old.limit(chunk)).scalars())
            if not ids:
                return deleted
            conn.execute(c.delete().where(c.c.id.in_(ids)))
        deleted += len(ids)


class CommandsProjection:
    """Closes each command with the result its agent reported (``command.result``)."""

    name = "commands"
    rebuilt = True
    kinds = frozenset({"command.result"})

    def apply(self, conn: sa.Connection, run: Run) -> None:
        for e in run.events:
            if not isinstance(e, CommandResultEvent):
                continue
            r = e.payload
            conn.execute(
                commands.update()
                .where(commands.c.id == str(r.command_id), commands.c.agent_id == run.agent_id)
                .values(
                    result_ok=r.ok,
                    result_detail=r.detail,
                    result_at=run.when(e)[0],
                    result_epoch=run.epoch,
                    result_seq=e.seq,
                )
            )

    def redate(self, conn: sa.Connection, agent_id: str, boot_id: str, ref: BootRef) -> int:
        return 0  # a result's time is informative only; the command's own times are the server's

    def reset(self, conn: sa.Connection, agent_id: str, epoch: str) -> None:
        conn.execute(
            commands.update()
            .where(commands.c.agent_id == agent_id, commands.c.result_epoch == epoch)
            .values(
                result_ok=None,
                result_detail=None,
                result_at=None,
                result_epoch=None,
                result_seq=None,
            )
        )
