"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/versions`` must match these."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")
Time = sa.DateTime(timezone=True)

#: One row per agent: where it is, how far its events are stored, what it last said of itself.
agents = sa.Table(
    "agents",
    metadata,
    sa.Column("agent_id", sa.String(64), primary_key=True),
    sa.Column("site_id", sa.String(64), nullable=False),
    #: The outbox life whose sequence numbers ``acked_seq`` and ``highest_seq`` count.
    sa.Column("epoch", sa.String(32), nullable=True),
    sa.Column("acked_seq", sa.BigInteger, nullable=False),
    sa.Column("highest_seq", sa.BigInteger, nullable=False, server_default="0"),
    #: Since when events after ``acked_seq`` are held back for a missing one, if they are.
    sa.Column("gap_since", Time, nullable=True),
    sa.Column("gap_reported_at", Time, nullable=True),
    sa.Column("first_seen_at", Time, nullable=False),
    sa.Column("last_seen_at", Time, nullable=False),
    sa.Column("online", sa.Boolean, nullable=True),
    sa.Column("status", sa.Text, nullable=True),
    sa.Column("status_at", Time, nullable=True),
)

#: Every event ever received, once per (agent, epoch, seq): the journal the rest derives from.
events = sa.Table(
    "events",
    metadata,
    sa.Column("agent_id", sa.String(64), primary_key=True),
    sa.Column("epoch", sa.String(32), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("span", sa.Integer, nullable=False, server_default="1"),
    #: Not indexed: (agent, epoch, seq) identifies an event here; an index on a random UUID
    #: would cost every insert a random B-tree write.
    sa.Column("event_id", sa.String(36), nullable=True),
    sa.Column("kind", sa.String(64), nullable=True),
    #: Corrected where the agent's clock was not set; the agent's own time is kept beside it.
    sa.Column("occurred_at", Time, nullable=True),
    sa.Column("agent_occurred_at", Time, nullable=True),
    sa.Column("clock_synced", sa.Boolean, nullable=True),
    sa.Column("time_corrected", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("boot_id", sa.String(64), nullable=True),
    sa.Column("mono_s", sa.Float, nullable=True),
    sa.Column("received_at", Time, nullable=False),
    #: "ok", or "rejected" with ``error`` saying why; a rejected event still fills its seq.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    #: Derived tables are written in sequence order; events after a gap wait here, unapplied.
    sa.Column("applied", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_events_boot", "agent_id", "boot_id"),
)

#: Sequence numbers that will never arrive (an agent's outbox was lost), so nobody waits.
lost_ranges = sa.Table(
    "lost_ranges",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("from_seq", sa.BigInteger, nullable=False),
    sa.Column("to_seq", sa.BigInteger, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("recorded_at", Time, nullable=False),
)

#: For each boot of an agent, one moment known in both clocks: server-trusted wall time and
#: the agent's monotonic seconds. Events of that boot from before the clock was set are re-dated
#: from it.
boot_refs = sa.Table(
    "boot_refs",
    metadata,
    sa.Column("agent_id", sa.String(64), primary_key=True),
    sa.Column("boot_id", sa.String(64), primary_key=True),
    sa.Column("wall_at", Time, nullable=False),
    sa.Column("mono_s", sa.Float, nullable=False),
)

climate_records = sa.Table(
    "climate_records",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False, server_default=""),
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
    sa.Column("occurred_at", Time, nullable=False),
    sa.Column("agent_occurred_at", Time, nullable=True),
    sa.Column("clock_synced", sa.Boolean, nullable=False),
    sa.Column("time_corrected", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_climate_records_agent_epoch_seq"),
    sa.Index("ix_climate_records_sensor_time", "site_id", "sensor", "occurred_at"),
)

#: Climate records an agent folded into min/mean/max when its outbox ran full.
climate_summaries = sa.Table(
    "climate_summaries",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("storeroom", sa.String(64), nullable=False),
    sa.Column("sensor", sa.String(64), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("first_at", Time, nullable=False),
    sa.Column("last_at", Time, nullable=False),
    sa.Column("temperature_min_c", sa.Float, nullable=False),
    sa.Column("temperature_mean_c", sa.Float, nullable=False),
    sa.Column("temperature_max_c", sa.Float, nullable=False),
    sa.Column("humidity_min_pct", sa.Float, nullable=False),
    sa.Column("humidity_mean_pct", sa.Float, nullable=False),
    sa.Column("humidity_max_pct", sa.Float, nullable=False),
    sa.Index("ix_climate_summaries_sensor_time", "site_id", "sensor", "first_at"),
)

#: Commands to agents, kept until the agent's result comes back.
commands = sa.Table(
    "commands",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("published_at", Time, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("result_ok", sa.Boolean, nullable=True),
    sa.Column("result_detail", sa.Text, nullable=True),
    sa.Column("result_at", Time, nullable=True),
    sa.Index("ix_commands_open", "agent_id", "result_at"),
)

#: Messages that could not be understood at all, kept for an operator to look at.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
)
