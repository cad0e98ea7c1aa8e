"""ledger: movements found by time (a site's month, the last 30 days' dispenses)

The movements export of one site over a month and the restock proposal (each slot's dispenses
over the last days) read a window of time; with only the bucket indexes, SQLite's planner scanned
five years of movements for them (1.2 s and 0.3 s over a county's million movements in
``bench/ledger.py``). The bucket indexes served no query and are replaced.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 12:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_ledger_movements_from", table_name="ledger_movements")
    op.drop_index("ix_ledger_movements_to", table_name="ledger_movements")
    op.create_index(
        "ix_ledger_movements_from_time", "ledger_movements", ["from_site", "occurred_at"]
    )
    op.create_index("ix_ledger_movements_to_time", "ledger_movements", ["to_site", "occurred_at"])
    op.create_index("ix_ledger_movements_kind_time", "ledger_movements", ["kind", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_ledger_movements_kind_time", table_name="ledger_movements")
    op.drop_index("ix_ledger_movements_to_time", table_name="ledger_movements")
    op.drop_index("ix_ledger_movements_from_time", table_name="ledger_movements")
    op.create_index(
        "ix_ledger_movements_to",
        "ledger_movements",
        ["to_site", "to_place", "to_slot", "stream_id"],
    )
    op.create_index(
        "ix_ledger_movements_from",
        "ledger_movements",
        ["from_site", "from_place", "from_slot", "stream_id"],
    )
