"""alert_notices: who was told of which alert, over which channel, delivered or not;
alert_silences: keys nobody is told of until a time

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_notices",
        sa.Column("id", Id, nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("alert_id", Id, nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("told_at", Time, nullable=False),
        sa.Column("next_at", Time, nullable=False),
        sa.Column("sent_at", Time, nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", name="uq_alert_notices_key"),
    )
    op.create_index("ix_alert_notices_alert", "alert_notices", ["alert_id"], unique=False)
    op.create_index("ix_alert_notices_due", "alert_notices", ["status", "next_at"], unique=False)
    op.create_table(
        "alert_silences",
        sa.Column("id", Id, nullable=False),
        sa.Column("match", sa.String(length=200), nullable=False),
        sa.Column("until", Time, nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("alert_silences")
    op.drop_index("ix_alert_notices_due", table_name="alert_notices")
    op.drop_index("ix_alert_notices_alert", table_name="alert_notices")
    op.drop_table("alert_notices")
