"""alerts: one row per alert, the newest of a key its live one

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", Id, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("condition", sa.Boolean(), nullable=False),
        sa.Column("since", Time, nullable=False),
        sa.Column("fired_at", Time, nullable=True),
        sa.Column("acked_at", Time, nullable=True),
        sa.Column("acked_by", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", Time, nullable=True),
        sa.Column("clear_since", Time, nullable=True),
        sa.Column("refires", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("seen_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerts_key", "alerts", ["key", "id"], unique=False)
    op.create_index("ix_alerts_state", "alerts", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_state", table_name="alerts")
    op.drop_index("ix_alerts_key", table_name="alerts")
    op.drop_table("alerts")
