"""the journal's hash chains (tamper evidence)

Every message becomes a link in its agent's chain (``server/integrity/chain.py``): the agent,
its position, the previous link's hash and its own; each agent row keeps its chain's last
position and hash. Messages already stored are chained here, in id order per agent (the order
ingest stored them in), so ``edge-server verify`` holds for them as for new ones.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from server.integrity.chain import GENESIS, Link, link_hash

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Time = sa.DateTime(timezone=True)
CHUNK = 1000
CHAIN_COLUMNS = (
    ("agent_id", sa.String(length=64)),
    ("chain_pos", sa.BigInteger()),
    ("chain_prev", sa.String(length=64)),
    ("chain_hash", sa.String(length=64)),
)


def upgrade() -> None:
    op.add_column(
        "agents", sa.Column("chain_pos", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column("agents", sa.Column("chain_head", sa.String(length=64), nullable=True))
    for name, type_ in CHAIN_COLUMNS:
        op.add_column("messages", sa.Column(name, type_, nullable=True))
    _chain_stored_messages(op.get_bind())
    with op.batch_alter_table("messages") as b:
        for name, type_ in CHAIN_COLUMNS:
            b.alter_column(name, existing_type=type_, nullable=False)
        b.create_index("ix_messages_chain", ["agent_id", "chain_pos"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("messages") as b:
        b.drop_index("ix_messages_chain")
        for name, _ in CHAIN_COLUMNS:
            b.drop_column(name)
    with op.batch_alter_table("agents") as b:
        b.drop_column("chain_head")
        b.drop_column("chain_pos")


def _chain_stored_messages(conn: sa.Connection) -> None:
    """Link every stored message, in id order per agent, ``CHUNK`` at a time."""
    messages = sa.table(
        "messages",
        sa.column("id", sa.BigInteger()),
        sa.column("stream_id", sa.BigInteger()),
        sa.column("received_at", Time),
        sa.column("origin", sa.String()),
        sa.column("payload", sa.LargeBinary()),
        *(sa.column(name, type_) for name, type_ in CHAIN_COLUMNS),
    )
    streams = sa.table(
        "streams", sa.column("id", sa.BigInteger()), sa.column("agent_id"), sa.column("epoch")
    )
    agents = sa.table(
        "agents", sa.column("agent_id"), sa.column("chain_pos"), sa.column("chain_head")
    )
    of_stream = {
        int(i): (str(a), str(e))
        for i, a, e in conn.execute(sa.select(streams.c.id, streams.c.agent_id, streams.c.epoch))
    }
    heads: dict[str, tuple[int, str]] = {}
    link = (
        messages.update()
        .where(messages.c.id == sa.bindparam("m_id"))
        .values(
            agent_id=sa.bindparam("m_agent"),
            chain_pos=sa.bindparam("m_pos"),
            chain_prev=sa.bindparam("m_prev"),
            chain_hash=sa.bindparam("m_hash"),
        )
    )
    after = 0
    while True:
        rows = conn.execute(
            sa.select(
                messages.c.id,
                messages.c.stream_id,
                messages.c.received_at,
                messages.c.origin,
                messages.c.payload,
            )
            .where(messages.c.id > after)
            .order_by(messages.c.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            break
        updates: list[dict[str, Any]] = []
        for row in rows:
            agent, epoch = of_stream[int(row.stream_id)]
            position, prev = heads.get(agent, (0, GENESIS))
            position += 1
            digest = link_hash(
                Link(agent, epoch, position, row.received_at, row.origin, bytes(row.payload)), prev
            )
            heads[agent] = (position, digest)
            updates.append(
                {"m_id": row.id, "m_agent": agent, "m_pos": position, "m_prev": prev,
                 "m_hash": digest}
            )  # fmt: skip
        conn.execute(link, updates)
        after = int(rows[-1].id)
    for agent, (position, digest) in sorted(heads.items()):
        conn.execute(
            agents.update()
            .where(agents.c.agent_id == agent)
            .values(chain_pos=position, chain_head=digest)
        )
