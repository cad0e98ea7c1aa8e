"""commands.next_at and an index on result_at: commands resent with a growing wait, and
answered ones pruned; alert_channels: each channel's health, shared by every server process

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("commands") as batch:
        batch.add_column(sa.Column("next_at", Time, nullable=True))
    op.create_index("ix_commands_result_at", "commands", ["result_at"], unique=False)
    op.create_index("ix_alert_notices_told", "alert_notices", ["told_at"], unique=False)
    op.create_table(
        "alert_channels",
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_sent_at", Time, nullable=True),
        sa.Column("last_failed_at", Time, nullable=True),
        sa.PrimaryKeyConstraint("channel"),
    )


def downgrade() -> None:
    op.drop_table("alert_channels")
    op.drop_index("ix_alert_notices_told", table_name="alert_notices")
    op.drop_index("ix_commands_result_at", table_name="commands")
    with op.batch_alter_table("commands") as batch:
        batch.drop_column("next_at")
