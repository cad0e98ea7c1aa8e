"""Commands to agents: queued in the database, published until the agent's result comes back.

A command is published (QoS 1) when queued and again every ``retry_s`` while its agent is
online and no result has arrived; the agent applies each command id once, so repeats are
harmless. The result comes back as an ordinary ``command.result`` event through ingest.
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


def due(
    engine: sa.Engine, prefix: str, now: datetime, retry_s: float, offline_after: timedelta
) -> list[Outgoing]:
    """Commands without a result, for online agents, not published within ``retry_s``."""
    cutoff = now - timedelta(seconds=retry_s)
    query = (
        sa.select(commands.c.id, commands.c.site_id, commands.c.agent_id, commands.c.message)
        .join(agents, agents.c.agent_id == commands.c.agent_id)
        .where(
            commands.c.result_at.is_(None),
            online(now, offline_after),
            sa.or_(commands.c.published_at.is_(None), commands.c.published_at < cutoff),
        )
        .order_by(commands.c.created_at)
        .limit(500)
    )
    with engine.connect() as conn:
        return [
            Outgoing(cid, topic(prefix, site, agent, Channel.COMMANDS), message.encode())
            for cid, site, agent, message in conn.execute(query)
        ]


def mark_published(engine: sa.Engine, ids: list[str], now: datetime) -> None:
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(
            commands.update()
            .where(commands.c.id.in_(ids))
            .values(published_at=now, attempts=commands.c.attempts + 1)
        )


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
