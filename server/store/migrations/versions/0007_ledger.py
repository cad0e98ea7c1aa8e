"""the stock ledger: master data, movements, stock per bucket, discrepancies

A projection of the county's entries and the boxes' events: the tables start empty and are
filled from the journal by catch-up (the ledger's checkpoints start at 0), so the boxes' events
already journaled come into the books at the first start.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_batches",
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("batch", sa.String(length=64), nullable=False),
        sa.Column("expiry", sa.Date(), nullable=False),
        sa.Column("manufacturer", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("product", "batch"),
    )
    op.create_index("ix_ledger_batches_expiry", "ledger_batches", ["expiry"], unique=False)
    op.create_table(
        "ledger_discrepancies",
        sa.Column("id", Id, nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("what", sa.String(length=16), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("place", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("batch", sa.String(length=64), nullable=False),
        sa.Column("books", sa.BigInteger(), nullable=False),
        sa.Column("needed", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clock_synced", sa.Boolean(), nullable=False),
        sa.Column("time_corrected", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=True),
        sa.Column("mono_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_ledger_discrepancies_site",
        "ledger_discrepancies",
        ["site", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_ledger_discrepancies_stream",
        "ledger_discrepancies",
        ["agent_id", "epoch"],
        unique=False,
    )
    op.create_index(
        "ix_ledger_discrepancies_undated",
        "ledger_discrepancies",
        ["agent_id", "boot_id"],
        unique=False,
        sqlite_where=sa.text("clock_synced = 0 AND time_corrected = 0"),
        postgresql_where=sa.text("NOT clock_synced AND NOT time_corrected"),
    )
    op.create_table(
        "ledger_events",
        sa.Column("stream_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", "seq"),
    )
    op.create_index("ix_ledger_events_stream", "ledger_events", ["agent_id", "epoch"], unique=False)
    op.create_table(
        "ledger_movements",
        sa.Column("id", Id, nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("batch", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("from_site", sa.String(length=64), nullable=False),
        sa.Column("from_place", sa.String(length=64), nullable=False),
        sa.Column("from_slot", sa.Integer(), nullable=False),
        sa.Column("from_zone", sa.String(length=16), nullable=False),
        sa.Column("to_site", sa.String(length=64), nullable=False),
        sa.Column("to_place", sa.String(length=64), nullable=False),
        sa.Column("to_slot", sa.Integer(), nullable=False),
        sa.Column("to_zone", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("entered_by", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clock_synced", sa.Boolean(), nullable=False),
        sa.Column("time_corrected", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("boot_id", sa.String(length=64), nullable=True),
        sa.Column("mono_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stream_id", "seq", "line", name="uq_ledger_movements_place"),
    )
    op.create_index(
        "ix_ledger_movements_from",
        "ledger_movements",
        ["from_site", "from_place", "from_slot", "stream_id"],
        unique=False,
    )
    op.create_index(
        "ix_ledger_movements_stream", "ledger_movements", ["agent_id", "epoch"], unique=False
    )
    op.create_index("ix_ledger_movements_time", "ledger_movements", ["occurred_at"], unique=False)
    op.create_index(
        "ix_ledger_movements_to",
        "ledger_movements",
        ["to_site", "to_place", "to_slot", "stream_id"],
        unique=False,
    )
    op.create_index(
        "ix_ledger_movements_undated",
        "ledger_movements",
        ["agent_id", "boot_id"],
        unique=False,
        sqlite_where=sa.text("clock_synced = 0 AND time_corrected = 0"),
        postgresql_where=sa.text("NOT clock_synced AND NOT time_corrected"),
    )
    op.create_table(
        "ledger_products",
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=64), nullable=False),
        sa.Column("unit_zh", sa.String(length=16), nullable=False),
        sa.Column("unit_en", sa.String(length=16), nullable=False),
        sa.Column("storeroom", sa.String(length=8), nullable=False),
        sa.Column("product_group", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("product"),
    )
    op.create_table(
        "ledger_sites",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("parent", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("site"),
    )
    op.create_index("ix_ledger_sites_parent", "ledger_sites", ["parent"], unique=False)
    op.create_table(
        "ledger_stock",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("place", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("zone", sa.String(length=16), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("batch", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "place", "slot", "zone", "product", "batch"),
    )
    op.create_index("ix_ledger_stock_product", "ledger_stock", ["product", "batch"], unique=False)


def downgrade() -> None:
    op.drop_table("ledger_stock")
    op.drop_table("ledger_sites")
    op.drop_table("ledger_products")
    op.drop_table("ledger_movements")
    op.drop_table("ledger_events")
    op.drop_table("ledger_discrepancies")
    op.drop_table("ledger_batches")
