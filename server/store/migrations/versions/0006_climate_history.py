"""climate history: indexes for a storeroom's records and summaries over a time window

Series, mean kinetic temperature and export read one storeroom of one site between two times;
these indexes make that a range scan however many years of records the store holds.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_climate_records_room_time",
        "climate_records",
        ["site_id", "storeroom", "occurred_at"],
    )
    op.create_index(
        "ix_climate_summaries_room_time",
        "climate_summaries",
        ["site_id", "storeroom", "first_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_climate_summaries_room_time", table_name="climate_summaries")
    op.drop_index("ix_climate_records_room_time", table_name="climate_records")
