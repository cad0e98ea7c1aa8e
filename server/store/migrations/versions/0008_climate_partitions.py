"""climate records partitioned by month on PostgreSQL

On PostgreSQL ``climate_records`` becomes a table partitioned by RANGE (``occurred_at``): one
partition per calendar month (UTC) from 2020-01 through twelve months after the migration, and
a DEFAULT partition for any other time (``server/climate/partitions.py``, whose
``ensure_partitions`` ``edge-server run`` calls once a day to stay twelve months ahead). A
window's query reads only its months' partitions and their indexes (partition pruning), so a
30-day series costs the same with five years or fifty stored, and old months could be moved
or archived whole. Every column is kept as it is, and so are the id sequence (now owned by the
new table) and the names of the primary key, the unique constraint and the indexes, which
become partitioned indexes. The rows are copied inside the migration (new table, INSERT …
SELECT, old table dropped), in the migration's one transaction: a county's five years take
minutes, so run ``edge-server db upgrade`` in a quiet hour; a failure leaves the old table.

On SQLite nothing changes: one county's store, whose indexes already keep a series a range
scan (``docs/benchmarks.md``).

Keys. PostgreSQL requires every unique constraint of a partitioned table to include the
partition key, so here:

- the primary key becomes ``(id, occurred_at)``; ids still come from the one sequence, so they
  stay distinct, and a lookup by id still finds one row;
- ``uq_climate_records_agent_epoch_seq`` becomes ``(agent_id, epoch, seq, occurred_at)``.

What keeps a record from being stored twice was never this constraint alone: an event is
journaled once per ``(stream_id, seq)`` (the journal's primary key), and each projection
applies it once, in the transaction that moves the projection's checkpoint past it, under the
agent's row lock (``server/projections.py``); ``ClimateProjection.apply`` inserts without
``ON CONFLICT``, so the constraint is the second guard, which turns a projection bug into a
failed transaction instead of a doubled record. The wider key still catches that bug: an event
applied twice gets the same ``occurred_at`` both times (its own time, or its boot's reference,
written once, applied to its monotonic seconds). What it no longer refuses is one sequence
number stored at two different times, which no code path writes: re-dating updates the row in
place (PostgreSQL moves it into its new month's partition), it never inserts. Rejected: no
unique key at all (no second guard); a trigger looking the key up in every partition (one
index probe per partition per record, on ingest's hot path); a side table of keys (a second
write per record, and one more table for replay to keep in step).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 09:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from server.climate.partitions import FIRST_MONTH, SCHEMA, ensure_partitions

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLE = "climate_records"
#: The table being replaced, while its rows are copied.
OLD = "climate_records_replaced"

#: Indexes other than the keys, the same on both shapes of the table (schema.py's names).
INDEXES = (
    "CREATE INDEX ix_climate_records_sensor_time ON climate_records (site_id, sensor, occurred_at)",
    "CREATE INDEX ix_climate_records_room_time ON climate_records "
    "(site_id, storeroom, occurred_at)",
    "CREATE INDEX ix_climate_records_undated ON climate_records (agent_id, boot_id) "
    "WHERE NOT clock_synced AND NOT time_corrected",
)


def _sequence(conn: sa.Connection) -> str | None:
    found = conn.execute(sa.text(f"SELECT pg_get_serial_sequence('{TABLE}', 'id')")).scalar()
    return str(found) if found is not None else None


def _replace(conn: sa.Connection, partitioned: bool) -> None:
    """Move ``climate_records`` into a new table of the other shape, rows and keys kept."""
    sequence = _sequence(conn)
    op.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
    if sequence is not None:
        # Kept when the old table is dropped: the new table's ids go on from it.
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
    op.execute(
        f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING COMMENTS INCLUDING STORAGE)"
        + (" PARTITION BY RANGE (occurred_at)" if partitioned else "")
    )
    if partitioned:
        ensure_partitions(conn, datetime.now(UTC), since=FIRST_MONTH)
    op.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
    op.execute(f"DROP TABLE {OLD}")  # on downgrade, its partitions with it
    if not partitioned:
        op.execute(f"DROP SCHEMA IF EXISTS {SCHEMA}")
    # Keys and indexes after the rows: built once per partition rather than row by row.
    at = ", occurred_at" if partitioned else ""
    op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id{at})")
    op.execute(
        f"ALTER TABLE {TABLE} ADD CONSTRAINT uq_climate_records_agent_epoch_seq "
        f"UNIQUE (agent_id, epoch, seq{at})"
    )
    for index in INDEXES:
        op.execute(index)
    if sequence is not None:
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {TABLE}.id")


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        _replace(conn, partitioned=True)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        _replace(conn, partitioned=False)
