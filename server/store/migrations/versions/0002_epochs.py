"""epochs, ordered apply, time correction, summaries, commands

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 04:39:50.209000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "boot_refs",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=False),
        sa.Column("wall_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mono_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "boot_id"),
    )
    op.create_table(
        "climate_summaries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("storeroom", sa.String(length=64), nullable=False),
        sa.Column("sensor", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("temperature_min_c", sa.Float(), nullable=False),
        sa.Column("temperature_mean_c", sa.Float(), nullable=False),
        sa.Column("temperature_max_c", sa.Float(), nullable=False),
        sa.Column("humidity_min_pct", sa.Float(), nullable=False),
        sa.Column("humidity_mean_pct", sa.Float(), nullable=False),
        sa.Column("humidity_max_pct", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("climate_summaries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_climate_summaries_sensor_time", ["site_id", "sensor", "first_at"], unique=False
        )

    op.create_table(
        "commands",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("result_ok", sa.Boolean(), nullable=True),
        sa.Column("result_detail", sa.Text(), nullable=True),
        sa.Column("result_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.create_index("ix_commands_open", ["agent_id", "result_at"], unique=False)

    op.create_table(
        "lost_ranges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("from_seq", sa.BigInteger(), nullable=False),
        sa.Column("to_seq", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("highest_seq", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("gap_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("gap_reported_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("climate_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("epoch", sa.String(length=32), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("agent_occurred_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("time_corrected", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.drop_constraint(batch_op.f("uq_climate_records_agent_seq"), type_="unique")
        batch_op.create_unique_constraint(
            "uq_climate_records_agent_epoch_seq", ["agent_id", "epoch", "seq"]
        )

    # The primary key gains the epoch, which no ALTER can do on SQLite: build the new table,
    # copy the rows (they belong to the unnamed epoch ''), and swap.
    op.create_table(
        "events_v2",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("span", sa.Integer(), server_default="1", nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent_occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clock_synced", sa.Boolean(), nullable=True),
        sa.Column("time_corrected", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=True),
        sa.Column("mono_s", sa.Float(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("applied", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "epoch", "seq"),
    )
    op.execute(
        "INSERT INTO events_v2 (agent_id, epoch, seq, event_id, kind, occurred_at, "
        "agent_occurred_at, clock_synced, received_at, status, error, applied, body) "
        "SELECT agent_id, '', seq, event_id, kind, occurred_at, occurred_at, clock_synced, "
        "received_at, status, error, (status = 'ok'), body FROM events"
    )
    op.drop_table("events")
    op.rename_table("events_v2", "events")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_boot", ["agent_id", "boot_id"], unique=False)


def downgrade() -> None:
    op.create_table(
        "events_v1",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clock_synced", sa.Boolean(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "seq"),
        sa.UniqueConstraint("event_id"),
    )
    op.execute(
        "INSERT INTO events_v1 SELECT agent_id, seq, event_id, kind, occurred_at, clock_synced, "
        "received_at, status, error, body FROM events WHERE epoch = ''"
    )
    op.drop_table("events")
    op.rename_table("events_v1", "events")

    with op.batch_alter_table("climate_records", schema=None) as batch_op:
        batch_op.drop_constraint("uq_climate_records_agent_epoch_seq", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_climate_records_agent_seq"), ["agent_id", "seq"]
        )
        batch_op.drop_column("time_corrected")
        batch_op.drop_column("agent_occurred_at")
        batch_op.drop_column("epoch")

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("gap_reported_at")
        batch_op.drop_column("gap_since")
        batch_op.drop_column("highest_seq")
        batch_op.drop_column("epoch")

    op.drop_table("lost_ranges")
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.drop_index("ix_commands_open")

    op.drop_table("commands")
    with op.batch_alter_table("climate_summaries", schema=None) as batch_op:
        batch_op.drop_index("ix_climate_summaries_sensor_time")

    op.drop_table("climate_summaries")
    op.drop_table("boot_refs")
