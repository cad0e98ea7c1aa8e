"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/versions`` must match these."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: One row per agent: where it is, how far its events are stored, what it last said of itself.
agents = sa.Table(
    "agents",
    metadata,
    sa.Column("agent_id", sa.String(64), primary_key=True),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("acked_seq", sa.BigInteger, nullable=False),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("online", sa.Boolean, nullable=True),
    sa.Column("status", sa.Text, nullable=True),
    sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
)

#: Every event ever received, once per (agent, seq): the journal the rest is derived from.
events = sa.Table(
    "events",
    metadata,
    sa.Column("agent_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.String(36), nullable=True, unique=True),
    sa.Column("kind", sa.String(64), nullable=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("clock_synced", sa.Boolean, nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    #: "ok", or "rejected" with ``error`` saying why; a rejected event still fills its seq.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("body", sa.Text, nullable=False),
)

climate_records = sa.Table(
    "climate_records",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("storeroom", sa.String(64), nullable=False),
    sa.Column("sensor", sa.String(64), nullable=False),
    sa.Column("serial", sa.String(64), nullable=True),
    sa.Column("temperature_c", sa.Float, nullable=False),
    sa.Column("humidity_pct", sa.Float, nullable=False),
    sa.Column("raw_temperature_c", sa.Float, nullable=False),
    sa.Column("raw_humidity_pct", sa.Float, nullable=False),
    sa.Column("quality", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("clock_synced", sa.Boolean, nullable=False),
    sa.UniqueConstraint("agent_id", "seq", name="uq_climate_records_agent_seq"),
    sa.Index("ix_climate_records_sensor_time", "site_id", "sensor", "occurred_at"),
)

#: Messages that could not be understood at all, kept for an operator to look at.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
)
