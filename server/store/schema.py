"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/versions`` must match these.

Three layers, written in this order inside one ingest transaction:

- the journal: ``messages`` (every accepted message exactly as received) and ``journal`` (one
  narrow row per event: where it sits in its message, whether it is understood), per
  ``streams`` row (one agent, one outbox epoch);
- ingest's own bookkeeping: ``agents``, ``streams``, ``boot_refs``, ``lost_ranges``,
  ``journal_conflicts``, ``dead_letters``, and each projection's ``projection_checkpoints``;
- the projections, each owned by its domain (``climate_*``, ``commands``), rebuilt from the
  journal by ``edge-server events replay``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")
Time = sa.DateTime(timezone=True)

#: One row per agent: where it is and what is known of its liveness and identity.
agents = sa.Table(
    "agents",
    metadata,
    sa.Column("agent_id", sa.String(64), primary_key=True),
    sa.Column("site_id", sa.String(64), nullable=False),
    #: The stream (outbox epoch) whose events are applied; others are kept apart.
    sa.Column("primary_stream", sa.BigInteger, nullable=True),
    sa.Column("first_seen_at", Time, nullable=False),
    #: Anything at all received from the agent (events, status): the liveness clock.
    sa.Column("last_heard_at", Time, nullable=False),
    sa.Column("online", sa.Boolean, nullable=True),
    sa.Column("status", sa.Text, nullable=True),
    sa.Column("status_at", Time, nullable=True),
    #: Set when two outbox lives (or two boxes) speak as this agent at once.
    sa.Column("identity_conflict_at", Time, nullable=True),
    sa.Column("identity_conflict", sa.Text, nullable=True),
    #: Messages refused whole, and those of them only counted (over the dead-letter rate).
    sa.Column("dead_lettered", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("dead_letters_dropped", sa.BigInteger, nullable=False, server_default="0"),
)

#: One outbox life (epoch) of one agent. Sequence numbers count within a stream.
streams = sa.Table(
    "streams",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    #: primary (applied), candidate (a new epoch not yet proven), closed (superseded),
    #: quarantined (a second live epoch: kept and acknowledged, never applied).
    sa.Column("state", sa.String(16), nullable=False),
    #: Every number up to here is in the journal (or declared lost): what the agent is acked.
    sa.Column("acked_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("highest_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("gap_since", Time, nullable=True),
    sa.Column("gap_reported_at", Time, nullable=True),
    sa.Column("first_received_at", Time, nullable=False),
    sa.Column("last_received_at", Time, nullable=False),
    sa.Column("not_understood", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("malformed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("conflicts", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("agent_id", "epoch", name="uq_streams_agent_epoch"),
)

#: Every accepted message, exactly as received: the record that tamper evidence will seal.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("stream_id", sa.BigInteger, nullable=False),
    sa.Column("received_at", Time, nullable=False),
    #: "mqtt", or "migrated" for events carried over from an older schema.
    sa.Column("origin", sa.String(16), nullable=False, server_default="mqtt"),
    sa.Column("payload", sa.LargeBinary, nullable=False),
)

#: One narrow row per event of a stream, once per sequence number: the journal's index.
journal = sa.Table(
    "journal",
    metadata,
    sa.Column("stream_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("span", sa.Integer, nullable=False),
    sa.Column("message_id", sa.BigInteger, nullable=False),
    #: Position in the message's ``events`` list.
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    #: "ok", "unknown" (not yet understood: applied after an upgrade by ``events replay``),
    #: "rejected" (carried over from schema 0002, where malformed events filled their seq).
    sa.Column("status", sa.String(16), nullable=False),
    sqlite_with_rowid=False,
)

#: An event claiming a sequence number already taken by a different event: kept, never applied.
journal_conflicts = sa.Table(
    "journal_conflicts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("stream_id", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("message_id", sa.BigInteger, nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Index("ix_journal_conflicts_stream", "stream_id", "seq"),
)

#: How far each projection has applied each stream, in sequence order.
projection_checkpoints = sa.Table(
    "projection_checkpoints",
    metadata,
    sa.Column("projection", sa.String(32), primary_key=True),
    sa.Column("stream_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("applied_seq", sa.BigInteger, nullable=False),
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

#: Rows not yet re-dated: only these are in the partial boot indexes, so they cost synced rows
#: nothing.
_UNDATED_SQLITE = sa.text("clock_synced = 0 AND time_corrected = 0")
_UNDATED_PG = sa.text("NOT clock_synced AND NOT time_corrected")


def _dating(table: str, synced_default: bool = False) -> list[sa.Column[Any] | sa.Index]:
    """What re-dating a projection's row needs: the agent's own time and clock, the boot and
    its monotonic seconds, and an index of the rows still waiting for their boot's reference."""
    return [
        sa.Column("agent_occurred_at", Time, nullable=True),
        sa.Column(
            "clock_synced",
            sa.Boolean,
            nullable=False,
            server_default=sa.true() if synced_default else None,
        ),
        sa.Column("time_corrected", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("boot_id", sa.String(64), nullable=True),
        sa.Column("mono_s", sa.Float, nullable=True),
        sa.Index(
            f"ix_{table}_undated",
            "agent_id",
            "boot_id",
            sqlite_where=_UNDATED_SQLITE,
            postgresql_where=_UNDATED_PG,
        ),
    ]


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
    *_dating("climate_records"),
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
    #: The summary event's own time and clock, to shift ``first_at``/``last_at`` when re-dated.
    *_dating("climate_summaries", synced_default=True),
    sa.Index("ix_climate_summaries_sensor_time", "site_id", "sensor", "first_at"),
    sa.Index("ix_climate_summaries_stream", "agent_id", "epoch", "seq"),
)

#: Climate events a person should see: room states, sensor faults, silencing, calibration.
climate_notices = sa.Table(
    "climate_notices",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("storeroom", sa.String(64), nullable=False),
    #: The event's payload as JSON.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("occurred_at", Time, nullable=False),
    *_dating("climate_notices"),
    sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_climate_notices_agent_epoch_seq"),
    sa.Index("ix_climate_notices_site_time", "site_id", "occurred_at"),
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
    #: Where in the journal the result came from, so a replay of that stream redoes it.
    sa.Column("result_epoch", sa.String(32), nullable=True),
    sa.Column("result_seq", sa.BigInteger, nullable=True),
    sa.Index("ix_commands_open", "agent_id", "result_at"),
)

#: Messages and events that could not be accepted, kept for an operator to look at.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    #: The agent the topic names, when it names one.
    sa.Column("agent_id", sa.String(64), nullable=True),
    #: For one refused event of a batch: the epoch and sequence number it claimed.
    sa.Column("epoch", sa.String(32), nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Index("ix_dead_letters_agent", "agent_id", "received_at"),
)
