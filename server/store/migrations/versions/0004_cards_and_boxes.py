"""the card registry, what was sent to the boxes, the cabinet projection

The registry (``card_registry``, ``cards``, ``card_holders``, ``quota_rules``, ``card_changes``)
and the sync's bookkeeping (``card_sync_clock``, ``card_sync_agents``) start empty; the cabinet
tables are a projection, filled from the journal by catch-up (its checkpoints start at 0).

``card_holders`` is the one table to close to everyone but the administrators on PostgreSQL
(see its definition in ``server/store/schema.py``); this migration leaves privileges to the
operator, as it runs as the owner.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)
UNDATED_SQLITE = sa.text("clock_synced = 0 AND time_corrected = 0")
UNDATED_PG = sa.text("NOT clock_synced AND NOT time_corrected")


def _registry() -> None:
    op.create_table(
        "card_registry",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rules_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("guest_mode", sa.String(length=8), server_default="refuse", nullable=False),
        sa.Column("guest_quantity", sa.Integer(), server_default="1", nullable=False),
        sa.Column("guest_period_days", sa.Integer(), server_default="30", nullable=False),
        sa.Column("guest_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", Time, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "cards",
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("card_group", sa.String(length=64), nullable=False),
        sa.Column("issued_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pseudonym"),
    )
    op.create_index("ix_cards_version", "cards", ["version"])
    op.create_index("ix_cards_group", "cards", ["card_group", "status"])
    op.create_table(
        "card_holders",
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("pseudonym"),
    )
    op.create_table(
        "quota_rules",
        sa.Column("card_group", sa.String(length=64), nullable=False),
        sa.Column("product_group", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("period_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("card_group", "product_group", "site"),
    )
    op.create_table(
        "card_changes",
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("changed_at", Time, nullable=False),
        sa.Column("change", sa.String(length=32), nullable=False),
        sa.Column("card", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "card_sync_clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_round", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "card_sync_agents",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("usage_round", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("usage_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("usage_command", sa.String(length=36), nullable=True),
        sa.Column("usage_from_round", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("usage_from_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("usage_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", Time, nullable=True),
        sa.PrimaryKeyConstraint("agent_id"),
    )


def _source() -> list[sa.Column[Any]]:
    return [
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("box", sa.String(length=64), nullable=False),
    ]


def _dating() -> list[sa.Column[Any]]:
    return [
        sa.Column("agent_occurred_at", Time, nullable=True),
        sa.Column("clock_synced", sa.Boolean(), nullable=False),
        sa.Column("time_corrected", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=True),
        sa.Column("mono_s", sa.Float(), nullable=True),
    ]


def _undated_index(table: str) -> None:
    op.create_index(
        f"ix_{table}_undated",
        table,
        ["agent_id", "boot_id"],
        sqlite_where=UNDATED_SQLITE,
        postgresql_where=UNDATED_PG,
    )


def _cabinet() -> None:
    op.create_table(
        "cabinet_slot_log",
        sa.Column("id", Id, nullable=False),
        *_source(),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("batch", sa.String(length=64), nullable=True),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("occurred_at", Time, nullable=False),
        *_dating(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_cabinet_slot_log_agent_epoch_seq"),
    )
    op.create_index(
        "ix_cabinet_slot_log_slot",
        "cabinet_slot_log",
        ["agent_id", "box", "slot", "stream_id", "seq"],
    )
    op.create_index("ix_cabinet_slot_log_site_time", "cabinet_slot_log", ["site_id", "occurred_at"])
    _undated_index("cabinet_slot_log")
    op.create_table(
        "cabinet_slots",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("box", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("batch", sa.String(length=64), nullable=True),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("changed_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "box", "slot"),
    )
    op.create_table(
        "cabinet_box_log",
        sa.Column("id", Id, nullable=False),
        *_source(),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=64), nullable=True),
        sa.Column("product_group", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", Time, nullable=False),
        *_dating(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_cabinet_box_log_agent_epoch_seq"),
    )
    op.create_index(
        "ix_cabinet_box_log_box",
        "cabinet_box_log",
        ["agent_id", "box", "kind", "stream_id", "seq"],
    )
    op.create_index("ix_cabinet_box_log_site_time", "cabinet_box_log", ["site_id", "occurred_at"])
    _undated_index("cabinet_box_log")
    op.create_table(
        "cabinet_faults",
        sa.Column("id", Id, nullable=False),
        *_source(),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", Time, nullable=False),
        sa.Column("cleared_at", Time, nullable=True),
        sa.Column("cleared_epoch", sa.String(length=32), nullable=True),
        sa.Column("cleared_seq", sa.BigInteger(), nullable=True),
        *_dating(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_cabinet_faults_agent_epoch_seq"),
    )
    op.create_index("ix_cabinet_faults_open", "cabinet_faults", ["agent_id", "box", "cleared_at"])
    _undated_index("cabinet_faults")
    op.create_table(
        "cabinet_usage",
        sa.Column("id", Id, nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        *_source(),
        sa.Column("card", sa.String(length=64), nullable=False),
        sa.Column("product_group", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("occurred_at", Time, nullable=False),
        sa.Column("sync_round", sa.BigInteger(), nullable=True),
        *_dating(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("transaction_id", name="uq_cabinet_usage_transaction"),
    )
    op.create_index("ix_cabinet_usage_stream", "cabinet_usage", ["agent_id", "epoch", "seq"])
    op.create_index("ix_cabinet_usage_round", "cabinet_usage", ["sync_round", "id"])
    op.create_index(
        "ix_cabinet_usage_unstamped",
        "cabinet_usage",
        ["id"],
        sqlite_where=sa.text("sync_round IS NULL"),
        postgresql_where=sa.text("sync_round IS NULL"),
    )
    _undated_index("cabinet_usage")


def upgrade() -> None:
    _registry()
    _cabinet()


def downgrade() -> None:
    for table in (
        "cabinet_usage", "cabinet_faults", "cabinet_box_log", "cabinet_slots",
        "cabinet_slot_log", "card_sync_agents", "card_sync_clock", "card_changes",
        "quota_rules", "card_holders", "cards", "card_registry",
    ):  # fmt: skip
        op.drop_table(table)
    op.execute(sa.text("DELETE FROM projection_checkpoints WHERE projection = 'cabinet'"))
