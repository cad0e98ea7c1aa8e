"""journal of messages, streams per epoch, projection checkpoints, climate notices

The per-event ``events`` table becomes the message journal (``messages``: events carried over
are grouped by stream into messages of origin "migrated") with its narrow index (``journal``);
each (agent, epoch) becomes a ``streams`` row, the agent's current one primary. What the old
ingest had applied is marked applied in ``projection_checkpoints``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 03:30:00
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)
UNDATED_SQLITE = sa.text("clock_synced = 0 AND time_corrected = 0")
UNDATED_PG = sa.text("NOT clock_synced AND NOT time_corrected")
NOTICE_KINDS = (
    "climate.state",
    "climate.sensor_fault",
    "climate.sensor_recovered",
    "climate.alarm_silenced",
    "climate.disagreement",
    "climate.calibration",
)
CHUNK = 500


def _create_tables() -> None:
    op.create_table(
        "streams",
        sa.Column("id", Id, nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("acked_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("highest_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("gap_since", Time, nullable=True),
        sa.Column("gap_reported_at", Time, nullable=True),
        sa.Column("first_received_at", Time, nullable=False),
        sa.Column("last_received_at", Time, nullable=False),
        sa.Column("not_understood", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("malformed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("conflicts", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent_id", "epoch", name="uq_streams_agent_epoch"),
    )
    op.create_table(
        "messages",
        sa.Column("id", Id, nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("received_at", Time, nullable=False),
        sa.Column("origin", sa.String(length=16), server_default="mqtt", nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "journal",
        sa.Column("stream_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("span", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", "seq"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "journal_conflicts",
        sa.Column("id", Id, nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("received_at", Time, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_journal_conflicts_stream", "journal_conflicts", ["stream_id", "seq"])
    op.create_table(
        "projection_checkpoints",
        sa.Column("projection", sa.String(length=32), nullable=False),
        sa.Column("stream_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("applied_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("projection", "stream_id"),
    )
    op.create_table(
        "climate_notices",
        sa.Column("id", Id, nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("storeroom", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("occurred_at", Time, nullable=False),
        sa.Column("agent_occurred_at", Time, nullable=True),
        sa.Column("clock_synced", sa.Boolean(), nullable=False),
        sa.Column("time_corrected", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=True),
        sa.Column("mono_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_climate_notices_agent_epoch_seq"),
    )
    op.create_index("ix_climate_notices_site_time", "climate_notices", ["site_id", "occurred_at"])
    op.create_index(
        "ix_climate_notices_undated",
        "climate_notices",
        ["agent_id", "boot_id"],
        sqlite_where=UNDATED_SQLITE,
        postgresql_where=UNDATED_PG,
    )


def _alter_tables() -> None:
    with op.batch_alter_table("climate_records") as b:
        b.add_column(sa.Column("boot_id", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("mono_s", sa.Float(), nullable=True))
    op.create_index(
        "ix_climate_records_undated",
        "climate_records",
        ["agent_id", "boot_id"],
        sqlite_where=UNDATED_SQLITE,
        postgresql_where=UNDATED_PG,
    )
    with op.batch_alter_table("climate_summaries") as b:
        b.add_column(sa.Column("agent_occurred_at", Time, nullable=True))
        b.add_column(
            sa.Column("clock_synced", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        b.add_column(
            sa.Column("time_corrected", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        b.add_column(sa.Column("boot_id", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("mono_s", sa.Float(), nullable=True))
    op.create_index(
        "ix_climate_summaries_stream", "climate_summaries", ["agent_id", "epoch", "seq"]
    )
    op.create_index(
        "ix_climate_summaries_undated",
        "climate_summaries",
        ["agent_id", "boot_id"],
        sqlite_where=UNDATED_SQLITE,
        postgresql_where=UNDATED_PG,
    )
    with op.batch_alter_table("commands") as b:
        b.add_column(sa.Column("result_epoch", sa.String(length=32), nullable=True))
        b.add_column(sa.Column("result_seq", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("dead_letters") as b:
        b.add_column(sa.Column("agent_id", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("epoch", sa.String(length=32), nullable=True))
        b.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
    op.create_index("ix_dead_letters_agent", "dead_letters", ["agent_id", "received_at"])


def _utc(value: Any) -> datetime:
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _carry_data(conn: sa.Connection) -> None:
    """Old events become messages and journal rows; old agent progress becomes streams."""
    md = sa.MetaData()
    old_events = sa.Table("events", md, autoload_with=conn)
    old_agents = sa.Table("agents", md, autoload_with=conn)
    streams = sa.Table("streams", md, autoload_with=conn)
    messages = sa.Table("messages", md, autoload_with=conn)
    journal = sa.Table("journal", md, autoload_with=conn)
    checkpoints = sa.Table("projection_checkpoints", md, autoload_with=conn)
    notices = sa.Table("climate_notices", md, autoload_with=conn)
    records = sa.Table("climate_records", md, autoload_with=conn)

    primary: dict[str, int] = {}
    agent_rows: dict[str, Any] = {r.agent_id: r for r in conn.execute(sa.select(old_agents))}
    epochs: dict[tuple[str, str], int] = {}
    for agent, epoch, top in conn.execute(
        sa.select(
            old_events.c.agent_id,
            old_events.c.epoch,
            sa.func.max(old_events.c.seq + old_events.c.span - 1),
        ).group_by(old_events.c.agent_id, old_events.c.epoch)
    ):
        epochs[(agent, epoch)] = int(top)
    for agent, row in agent_rows.items():
        epochs.setdefault((agent, row.epoch or ""), 0)
    for (agent, epoch), top in sorted(epochs.items()):
        row = agent_rows.get(agent)
        current = row is not None and (row.epoch or "") == epoch
        seen = _utc(row.last_seen_at) if row is not None else datetime.now(UTC)
        stream_id = conn.execute(
            streams.insert().values(
                agent_id=agent,
                epoch=epoch,
                state="primary" if current else "closed",
                acked_seq=int(row.acked_seq) if current and row is not None else top,
                highest_seq=max(int(row.highest_seq), top) if current and row is not None else top,
                gap_since=row.gap_since if current and row is not None else None,
                first_received_at=_utc(row.first_seen_at) if row is not None else seen,
                last_received_at=seen,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        if current:
            primary[agent] = int(stream_id)
        _carry_stream(conn, old_events, messages, journal, agent, epoch, int(stream_id))
        acked = conn.execute(
            sa.select(streams.c.acked_seq).where(streams.c.id == stream_id)
        ).scalar_one()
        for name in ("climate", "commands"):
            conn.execute(
                checkpoints.insert().values(projection=name, stream_id=stream_id, applied_seq=acked)
            )
    _carry_notices(conn, old_events, old_agents, notices)
    for fix in conn.execute(
        sa.select(old_events.c.agent_id, old_events.c.epoch, old_events.c.seq,
                  old_events.c.boot_id, old_events.c.mono_s)
        .where(old_events.c.kind == "climate.record")
    ).all():  # fmt: skip
        conn.execute(
            records.update()
            .where(
                records.c.agent_id == fix.agent_id,
                records.c.epoch == fix.epoch,
                records.c.seq == fix.seq,
            )
            .values(boot_id=fix.boot_id, mono_s=fix.mono_s)
        )
    op.execute(sa.text("DROP TABLE events"))
    with op.batch_alter_table("agents") as b:
        b.add_column(sa.Column("primary_stream", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("last_heard_at", Time, nullable=True))
        b.add_column(sa.Column("identity_conflict_at", Time, nullable=True))
        b.add_column(sa.Column("identity_conflict", sa.Text(), nullable=True))
        b.add_column(
            sa.Column("dead_lettered", sa.BigInteger(), server_default="0", nullable=False)
        )
        b.add_column(
            sa.Column("dead_letters_dropped", sa.BigInteger(), server_default="0", nullable=False)
        )
    agents = sa.Table("agents", sa.MetaData(), autoload_with=conn)
    conn.execute(agents.update().values(last_heard_at=agents.c.last_seen_at))
    for agent, stream_id in primary.items():
        conn.execute(
            agents.update().where(agents.c.agent_id == agent).values(primary_stream=stream_id)
        )
    with op.batch_alter_table("agents") as b:
        b.alter_column("last_heard_at", existing_type=Time, nullable=False)
        for column in ("epoch", "acked_seq", "highest_seq", "gap_since", "gap_reported_at",
                       "last_seen_at"):  # fmt: skip
            b.drop_column(column)


def _carry_stream(
    conn: sa.Connection,
    old_events: sa.Table,
    messages: sa.Table,
    journal: sa.Table,
    agent: str,
    epoch: str,
    stream_id: int,
) -> None:
    after = 0
    while True:
        rows = conn.execute(
            sa.select(old_events.c.seq, old_events.c.span, old_events.c.kind,
                      old_events.c.status, old_events.c.body, old_events.c.received_at)
            .where(old_events.c.agent_id == agent, old_events.c.epoch == epoch,
                   old_events.c.seq > after)
            .order_by(old_events.c.seq)
            .limit(CHUNK)
        ).all()  # fmt: skip
        if not rows:
            return
        bodies = [json.loads(r.body) for r in rows]
        payload = json.dumps(
            {"v": 1, "agent_id": agent, "epoch": epoch or "0" * 8,
             "sent_at": _utc(rows[0].received_at).isoformat(), "events": bodies},
            ensure_ascii=False, separators=(",", ":"),
        ).encode()  # fmt: skip
        message_id = conn.execute(
            messages.insert().values(
                stream_id=stream_id,
                received_at=_utc(rows[-1].received_at),
                origin="migrated",
                payload=payload,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        conn.execute(
            journal.insert(),
            [
                {"stream_id": stream_id, "seq": r.seq, "span": r.span, "message_id": message_id,
                 "idx": i, "kind": r.kind or "", "status": "ok" if r.status == "ok" else "rejected"}
                for i, r in enumerate(rows)
            ],
        )  # fmt: skip
        after = rows[-1].seq


def _carry_notices(
    conn: sa.Connection, old_events: sa.Table, old_agents: sa.Table, notices: sa.Table
) -> None:
    query = (
        sa.select(old_events, old_agents.c.site_id)
        .join(old_agents, old_agents.c.agent_id == old_events.c.agent_id)
        .where(
            old_events.c.kind.in_(NOTICE_KINDS),
            old_events.c.status == "ok",
            old_events.c.applied.is_(True),
        )
        .order_by(old_events.c.received_at, old_events.c.seq)
    )
    batch = []
    for r in conn.execute(query):
        payload = json.loads(r.body)["payload"]
        batch.append(
            {
                "agent_id": r.agent_id,
                "epoch": r.epoch,
                "seq": r.seq,
                "site_id": r.site_id,
                "kind": r.kind,
                "storeroom": str(payload.get("storeroom", "")),
                "payload": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                "occurred_at": _utc(r.occurred_at),
                "agent_occurred_at": _utc(r.agent_occurred_at),
                "clock_synced": bool(r.clock_synced),
                "time_corrected": bool(r.time_corrected),
                "boot_id": r.boot_id,
                "mono_s": r.mono_s,
            }
        )
    if batch:
        conn.execute(notices.insert(), batch)


def upgrade() -> None:
    _create_tables()
    _alter_tables()
    _carry_data(op.get_bind())


def downgrade() -> None:
    raise NotImplementedError("the journal cannot be folded back into per-event rows")
