"""Read-only questions about the agents' links: progress, gaps, liveness, identity."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from server.entries import COUNTY_AGENT
from server.store.db import utc
from server.store.schema import agents, streams


def online(now: datetime, offline_after: timedelta) -> sa.ColumnElement[bool]:
    """An agent is online when its last status said so and it was heard from lately."""
    return sa.and_(agents.c.online.is_(True), agents.c.last_heard_at >= now - offline_after)


def is_online(
    said: bool | None, last_heard_at: datetime, now: datetime, offline_after: timedelta
) -> bool | None:
    """The same rule for one agent in Python: None when it never said."""
    if now - last_heard_at >= offline_after:
        return False
    return said


@dataclass(frozen=True)
class AgentLink:
    site_id: str
    agent_id: str
    online: bool | None
    epoch: str | None
    acked_seq: int
    highest_seq: int
    gap_since: datetime | None
    last_heard_at: datetime
    #: Streams other than the primary (new epochs waiting, quarantined ones).
    other_epochs: int
    not_understood: int
    malformed: int
    conflicts: int
    dead_lettered: int
    identity_conflict: str | None
    status: dict[str, object]


def agent_links(
    engine: sa.Engine, now: datetime, offline_after: timedelta, *, field_only: bool = False
) -> list[AgentLink]:
    """Every agent with its primary stream and the totals over all its streams; ``field_only``
    leaves out the county's own stream of entries, which is no computer that can go offline."""
    s = streams
    totals = (
        sa.select(
            s.c.agent_id,
            sa.func.count().label("n"),
            sa.func.sum(s.c.not_understood).label("not_understood"),
            sa.func.sum(s.c.malformed).label("malformed"),
            sa.func.sum(s.c.conflicts).label("conflicts"),
        )
        .group_by(s.c.agent_id)
        .subquery()
    )
    query = (
        sa.select(
            agents,
            s.c.epoch,
            s.c.acked_seq,
            s.c.highest_seq,
            s.c.gap_since,
            totals.c.n,
            totals.c.not_understood,
            totals.c.malformed,
            totals.c.conflicts,
        )
        .select_from(
            agents.outerjoin(s, s.c.id == agents.c.primary_stream).outerjoin(
                totals, totals.c.agent_id == agents.c.agent_id
            )
        )
        .order_by(agents.c.site_id, agents.c.agent_id)
    )
    if field_only:
        query = query.where(agents.c.agent_id != COUNTY_AGENT)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        AgentLink(
            site_id=r.site_id,
            agent_id=r.agent_id,
            online=is_online(r.online, utc(r.last_heard_at), now, offline_after),
            epoch=r.epoch,
            acked_seq=int(r.acked_seq or 0),
            highest_seq=int(r.highest_seq or 0),
            gap_since=utc(r.gap_since) if r.gap_since else None,
            last_heard_at=utc(r.last_heard_at),
            other_epochs=max(0, int(r.n or 0) - 1),
            not_understood=int(r.not_understood or 0),
            malformed=int(r.malformed or 0),
            conflicts=int(r.conflicts or 0),
            dead_lettered=int(r.dead_lettered) + int(r.dead_letters_dropped),
            identity_conflict=r.identity_conflict,
            status=json.loads(r.status) if r.status else {},
        )
        for r in rows
    ]


def events_acknowledged(engine: sa.Engine) -> dict[str, int]:
    """Per agent, the events acknowledged over all its outbox lives: a counter for metrics that
    only grows (a new epoch adds a stream; old ones stay)."""
    query = sa.select(streams.c.agent_id, sa.func.sum(streams.c.acked_seq)).group_by(
        streams.c.agent_id
    )
    with engine.connect() as conn:
        return {str(agent): int(n or 0) for agent, n in conn.execute(query)}
