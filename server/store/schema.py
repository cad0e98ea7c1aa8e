"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/versions`` must match these.

Three layers, written in this order inside one ingest transaction:

- the journal: ``messages`` (every accepted message exactly as received) and ``journal`` (one
  narrow row per event: where it sits in its message, whether it is understood), per
  ``streams`` row (one agent, one outbox epoch);
- ingest's own bookkeeping: ``agents``, ``streams``, ``boot_refs``, ``lost_ranges``,
  ``journal_conflicts``, ``dead_letters``, and each projection's ``projection_checkpoints``;
- the projections, each owned by its domain (``climate_*``, ``commands``, ``cabinet_*``),
  rebuilt from the journal by ``edge-server events replay``;
- the card registry (``card_*``, ``cards``, ``quota_rules``), written by operators, never by
  ingest, and the bookkeeping of what was sent to the boxes (``card_sync_*``).
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
    #: The agent's hash chain over its messages (``server/integrity``): the last position and
    #: its hash, moved on under the agent's row lock with each message stored.
    sa.Column("chain_pos", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("chain_head", sa.String(64), nullable=True),
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

#: Every accepted message, exactly as received, sealed by its agent's hash chain.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("stream_id", sa.BigInteger, nullable=False),
    sa.Column("received_at", Time, nullable=False),
    #: "mqtt", or "migrated" for events carried over from an older schema.
    sa.Column("origin", sa.String(16), nullable=False, server_default="mqtt"),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    #: The message's link in its agent's hash chain (``server/integrity/chain.py``): its
    #: position (1, 2, … per agent), the previous link's hash and its own.
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("chain_pos", sa.BigInteger, nullable=False),
    sa.Column("chain_prev", sa.String(64), nullable=False),
    sa.Column("chain_hash", sa.String(64), nullable=False),
    sa.Index("ix_messages_chain", "agent_id", "chain_pos", unique=True),
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
    #: On PostgreSQL the table is partitioned by month of ``occurred_at`` (migration 0008,
    #: ``server/climate/partitions.py``), and PostgreSQL requires the partition key in every
    #: unique key: there this is (agent_id, epoch, seq, occurred_at) and the primary key is
    #: (id, occurred_at). The migration's docstring says why that still refuses a record
    #: stored twice.
    sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_climate_records_agent_epoch_seq"),
    sa.Index("ix_climate_records_sensor_time", "site_id", "sensor", "occurred_at"),
    #: A storeroom's records over a window (climate history: series, MKT, export).
    sa.Index("ix_climate_records_room_time", "site_id", "storeroom", "occurred_at"),
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
    sa.Index("ix_climate_summaries_room_time", "site_id", "storeroom", "first_at"),
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
    #: When to publish again without a result: the wait grows with each attempt (None: due).
    sa.Column("next_at", Time, nullable=True),
    sa.Column("result_ok", sa.Boolean, nullable=True),
    sa.Column("result_detail", sa.Text, nullable=True),
    sa.Column("result_at", Time, nullable=True),
    #: Where in the journal the result came from, so a replay of that stream redoes it.
    sa.Column("result_epoch", sa.String(32), nullable=True),
    sa.Column("result_seq", sa.BigInteger, nullable=True),
    sa.Index("ix_commands_open", "agent_id", "result_at"),
    #: Those still waiting (``IS NULL``) and those answered long ago (pruned).
    sa.Index("ix_commands_result_at", "result_at"),
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


# --- the card registry (written by operators; ``server/cards``) -------------------------------
#
# Cards are kept by pseudonym only (``edge_agent/pseudonym.py``): no raw card UID or ID number is
# ever stored. Every change takes the next registry version (``card_registry.version``, a counter
# row that writers lock, so versions are given out in commit order by any number of processes);
# ``card_changes`` logs each one, and the agents are sent what changed after the version they hold.

#: One row (id 1): the registry's version counter, and the guest policy. Locked by every writer.
card_registry = sa.Table(
    "card_registry",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    #: The version of the last change of the quota rules (0: never set; agents keep their own).
    sa.Column("rules_version", sa.BigInteger, nullable=False, server_default="0"),
    #: What an unregistered card may take: ``refuse``, or ``quota`` (quantity per period).
    sa.Column("guest_mode", sa.String(8), nullable=False, server_default="refuse"),
    sa.Column("guest_quantity", sa.Integer, nullable=False, server_default="1"),
    sa.Column("guest_period_days", sa.Integer, nullable=False, server_default="30"),
    sa.Column("guest_version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", Time, nullable=True),
)

#: One row per card, by pseudonym (64 hex digits); ``version`` is that of its last change.
cards = sa.Table(
    "cards",
    metadata,
    sa.Column("pseudonym", sa.String(64), primary_key=True),
    #: active, lost, revoked
    sa.Column("status", sa.String(16), nullable=False),
    #: villager, technician
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("card_group", sa.String(64), nullable=False),
    sa.Column("issued_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Index("ix_cards_version", "version"),
    sa.Index("ix_cards_group", "card_group", "status"),
)

#: Who holds a card, for follow-up visits: apart from ``cards`` so that it can be closed to all
#: but the administrators. On PostgreSQL grant this table to the administrators' role only
#: (``REVOKE ALL ON card_holders FROM PUBLIC; GRANT SELECT, INSERT, UPDATE ON card_holders TO
#: edge_admin``) and run ingest as a role that does not own it; ingest and sync never read it,
#: only ``edge-server cards holder`` and ``cards issue --name`` do.
card_holders = sa.Table(
    "card_holders",
    metadata,
    sa.Column("pseudonym", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("phone", sa.String(32), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("updated_at", Time, nullable=False),
)

#: At most ``quantity`` units of ``product_group`` per ``period_days`` for a card of
#: ``card_group``, at ``site`` ('' : county-wide).
quota_rules = sa.Table(
    "quota_rules",
    metadata,
    sa.Column("card_group", sa.String(64), primary_key=True),
    sa.Column("product_group", sa.String(64), primary_key=True),
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("period_days", sa.Integer, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

#: Every registry change, by the version it took: what a delta is checked against.
card_changes = sa.Table(
    "card_changes",
    metadata,
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("changed_at", Time, nullable=False),
    #: issued, reissued, status, role, group (comma-joined when several), rule, guest
    sa.Column("change", sa.String(32), nullable=False),
    sa.Column("card", sa.String(64), nullable=True),
    sa.Column("detail", sa.String(200), nullable=True),
)

#: One row (id 1): the last usage round (``cabinet_usage.sync_round``) given out.
card_sync_clock = sa.Table(
    "card_sync_clock",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_round", sa.BigInteger, nullable=False, server_default="0"),
)

#: Per agent with boxes: the lock its sync takes, and how far its usage has been queued to it
#: (the last (round, usage id) sent).
card_sync_agents = sa.Table(
    "card_sync_agents",
    metadata,
    sa.Column("agent_id", sa.String(64), primary_key=True),
    sa.Column("usage_round", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("usage_id", sa.BigInteger, nullable=False, server_default="0"),
    #: The last ``cards.usage`` queued, and the watermark before it: if the agent answers it
    #: failed, the watermark goes back there and its takes are sent again.
    sa.Column("usage_command", sa.String(36), nullable=True),
    sa.Column("usage_from_round", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("usage_from_id", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("usage_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", Time, nullable=True),
)


# --- the cabinet projection (``server/cabinet``) ----------------------------------------------
#
# Rows carry the stream id and seq of the event they come from: "later" is (stream, seq) order,
# which holds across an agent's outbox epochs whatever its clock said.


def _source() -> list[sa.Column[Any]]:
    return [
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("stream_id", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("box", sa.String(64), nullable=False),
    ]


#: One row per event that touched a slot, with the slot's state after it (a restock adds to the
#: count before it): the slots' history, and what ``cabinet_slots`` is rebuilt from.
cabinet_slot_log = sa.Table(
    "cabinet_slot_log",
    metadata,
    sa.Column("id", Id, primary_key=True),
    *_source(),
    sa.Column("slot", sa.Integer, nullable=False),
    #: dispense, vend_failed, vend_unknown, slot, restock, remove, count
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=True),
    #: After the event; NULL where not known.
    sa.Column("state", sa.String(16), nullable=True),
    sa.Column("count", sa.Integer, nullable=True),
    sa.Column("batch", sa.String(64), nullable=True),
    sa.Column("expiry", sa.Date, nullable=True),
    sa.Column("occurred_at", Time, nullable=False),
    *_dating("cabinet_slot_log"),
    sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_cabinet_slot_log_agent_epoch_seq"),
    sa.Index("ix_cabinet_slot_log_slot", "agent_id", "box", "slot", "stream_id", "seq"),
    sa.Index("ix_cabinet_slot_log_site_time", "site_id", "occurred_at"),
)

#: Each slot as its newest event left it (the last row of ``cabinet_slot_log`` for it).
cabinet_slots = sa.Table(
    "cabinet_slots",
    metadata,
    sa.Column("agent_id", sa.String(64), primary_key=True),
    sa.Column("box", sa.String(64), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("stream_id", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=True),
    sa.Column("count", sa.Integer, nullable=True),
    sa.Column("batch", sa.String(64), nullable=True),
    sa.Column("expiry", sa.Date, nullable=True),
    sa.Column("changed_at", Time, nullable=False),
)

#: Box events that are not a slot's: refusals, door, tamper, the main board's state.
cabinet_box_log = sa.Table(
    "cabinet_box_log",
    metadata,
    sa.Column("id", Id, primary_key=True),
    *_source(),
    #: refused, door, tamper, board
    sa.Column("kind", sa.String(16), nullable=False),
    #: refusal reason, door opened/closed, tamper reason, board state
    sa.Column("value", sa.String(32), nullable=False),
    #: door: opened or closed with a technician's card; board: firmware; tamper: seconds open.
    sa.Column("detail", sa.String(64), nullable=True),
    sa.Column("product_group", sa.String(64), nullable=True),
    sa.Column("occurred_at", Time, nullable=False),
    *_dating("cabinet_box_log"),
    sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_cabinet_box_log_agent_epoch_seq"),
    sa.Index("ix_cabinet_box_log_box", "agent_id", "box", "kind", "stream_id", "seq"),
    sa.Index("ix_cabinet_box_log_site_time", "site_id", "occurred_at"),
)

#: Faults a technician must see: vend failures, unknown outcomes, tamper, board offline or its
#: drop sensor faulty. Open until a later event clears them (``cleared_*``).
cabinet_faults = sa.Table(
    "cabinet_faults",
    metadata,
    sa.Column("id", Id, primary_key=True),
    *_source(),
    sa.Column("slot", sa.Integer, nullable=True),
    #: vend_failed, vend_unknown, tamper, board_offline, drop_sensor
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("occurred_at", Time, nullable=False),
    sa.Column("cleared_at", Time, nullable=True),
    #: The event that cleared it, so that a replay of that stream opens it again first.
    sa.Column("cleared_epoch", sa.String(32), nullable=True),
    sa.Column("cleared_seq", sa.BigInteger, nullable=True),
    *_dating("cabinet_faults"),
    sa.UniqueConstraint("agent_id", "epoch", "seq", name="uq_cabinet_faults_agent_epoch_seq"),
    sa.Index("ix_cabinet_faults_open", "agent_id", "box", "cleared_at"),
)

#: One row per card dispense (each ``transaction_id`` once): what other boxes must count against the
#: card's quota. ``sync_round`` is stamped by the sync once the row is visible (``cards/sync.py``).
cabinet_usage = sa.Table(
    "cabinet_usage",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("transaction_id", sa.String(36), nullable=False),
    *_source(),
    sa.Column("card", sa.String(64), nullable=False),
    sa.Column("product_group", sa.String(64), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("occurred_at", Time, nullable=False),
    sa.Column("sync_round", sa.BigInteger, nullable=True),
    *_dating("cabinet_usage"),
    sa.UniqueConstraint("transaction_id", name="uq_cabinet_usage_transaction"),
    sa.Index("ix_cabinet_usage_stream", "agent_id", "epoch", "seq"),
    sa.Index("ix_cabinet_usage_round", "sync_round", "id"),
    sa.Index(
        "ix_cabinet_usage_unstamped",
        "id",
        sqlite_where=sa.text("sync_round IS NULL"),
        postgresql_where=sa.text("sync_round IS NULL"),
    ),
)


# --- the stock ledger (``server/ledger``) ------------------------------------------------------
#
# A projection of the county's entries and the boxes' events. ``ledger_movements`` is the
# append-only book of what moved where (one row per movement; no path updates or deletes one,
# only a replay rebuilds them); ``ledger_stock`` is what each bucket holds, always the sum of the
# movements in and out of it; master data is the latest entry of each product, batch and site.

ledger_products = sa.Table(
    "ledger_products",
    metadata,
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("name_zh", sa.String(64), nullable=False),
    sa.Column("name_en", sa.String(64), nullable=False),
    sa.Column("unit_zh", sa.String(16), nullable=False),
    sa.Column("unit_en", sa.String(16), nullable=False),
    sa.Column("storeroom", sa.String(8), nullable=False),
    sa.Column("product_group", sa.String(64), nullable=False),
)

ledger_batches = sa.Table(
    "ledger_batches",
    metadata,
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("batch", sa.String(64), primary_key=True),
    sa.Column("expiry", sa.Date, nullable=False),
    sa.Column("manufacturer", sa.String(200), nullable=True),
    sa.Index("ix_ledger_batches_expiry", "expiry"),
)

ledger_sites = sa.Table(
    "ledger_sites",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("parent", sa.String(64), nullable=True),
    sa.Index("ix_ledger_sites_parent", "parent"),
)

#: Every event the ledger applied (those that moved nothing too): applying one again is a no-op.
ledger_events = sa.Table(
    "ledger_events",
    metadata,
    sa.Column("stream_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Index("ix_ledger_events_stream", "agent_id", "epoch"),
)


def _bucket(side: str) -> list[sa.Column[Any]]:
    return [
        sa.Column(f"{side}_site", sa.String(64), nullable=False),
        sa.Column(f"{side}_place", sa.String(64), nullable=False),
        sa.Column(f"{side}_slot", sa.Integer, nullable=False),
        sa.Column(f"{side}_zone", sa.String(16), nullable=False),
    ]


ledger_movements = sa.Table(
    "ledger_movements",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("stream_id", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("batch", sa.String(64), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    *_bucket("from"),
    *_bucket("to"),
    sa.Column("reason", sa.String(200), nullable=True),
    sa.Column("entered_by", sa.String(64), nullable=True),
    sa.Column("occurred_at", Time, nullable=False),
    *_dating("ledger_movements"),
    sa.UniqueConstraint("stream_id", "seq", "line", name="uq_ledger_movements_place"),
    sa.Index("ix_ledger_movements_stream", "agent_id", "epoch"),
    #: A site's movements over a window (the CSV export), and the last days' dispenses (restock).
    sa.Index("ix_ledger_movements_from_time", "from_site", "occurred_at"),
    sa.Index("ix_ledger_movements_to_time", "to_site", "occurred_at"),
    sa.Index("ix_ledger_movements_kind_time", "kind", "occurred_at"),
    sa.Index("ix_ledger_movements_time", "occurred_at"),
)

ledger_stock = sa.Table(
    "ledger_stock",
    metadata,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("place", sa.String(64), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("zone", sa.String(16), primary_key=True),
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("batch", sa.String(64), primary_key=True),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Index("ix_ledger_stock_product", "product", "batch"),
)

#: A box's event that took what the books did not show: kept for people to settle.
ledger_discrepancies = sa.Table(
    "ledger_discrepancies",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("stream_id", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("what", sa.String(16), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("place", sa.String(64), nullable=False),
    sa.Column("slot", sa.Integer, nullable=False),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("batch", sa.String(64), nullable=False),
    sa.Column("books", sa.BigInteger, nullable=False),
    sa.Column("needed", sa.BigInteger, nullable=False),
    sa.Column("occurred_at", Time, nullable=False),
    *_dating("ledger_discrepancies"),
    sa.Index("ix_ledger_discrepancies_stream", "agent_id", "epoch"),
    sa.Index("ix_ledger_discrepancies_site", "site", "occurred_at"),
)

#: Alerts (``server/alerts/``): one row per alert; the newest row of a key is its live alert.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("site", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    #: The condition as last seen: the timer goes on observing it (holds and clear times).
    sa.Column("condition", sa.Boolean, nullable=False),
    sa.Column("since", Time, nullable=False),
    sa.Column("fired_at", Time, nullable=True),
    sa.Column("acked_at", Time, nullable=True),
    sa.Column("acked_by", sa.String(64), nullable=True),
    sa.Column("action", sa.String(200), nullable=True),
    sa.Column("resolved_at", Time, nullable=True),
    sa.Column("clear_since", Time, nullable=True),
    #: JSON: when the key fired again soon after resolving (flapping).
    sa.Column("refires", sa.Text, nullable=False),
    #: JSON: the values of the last signal, for the message people read.
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("seen_at", Time, nullable=False),
    sa.Index("ix_alerts_key", "key", "id"),
    sa.Index("ix_alerts_state", "state"),
)

#: One row per person (or hook) told of an alert over one channel: the key is the delivery's
#: idempotency key, so two server processes cannot tell the same thing twice, and a receiver
#: that gets a retry can tell it is one.
alert_notices = sa.Table(
    "alert_notices",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("key", sa.String(400), nullable=False),
    sa.Column("alert_id", Id, nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("recipient", sa.String(128), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    #: pending (to send, at ``next_at``), sent, or failed (given up).
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("told_at", Time, nullable=False),
    sa.Column("next_at", Time, nullable=False),
    sa.Column("sent_at", Time, nullable=True),
    sa.Column("error", sa.String(300), nullable=True),
    sa.UniqueConstraint("key", name="uq_alert_notices_key"),
    sa.Index("ix_alert_notices_alert", "alert_id"),
    sa.Index("ix_alert_notices_due", "status", "next_at"),
    sa.Index("ix_alert_notices_told", "told_at"),
)

#: Each channel's health as every server process sees it: rounds in a row that delivered
#: nothing (``failures``), and when it last delivered and last failed.
alert_channels = sa.Table(
    "alert_channels",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_sent_at", Time, nullable=True),
    sa.Column("last_failed_at", Time, nullable=True),
)

#: Alerts whose key starts with ``match`` are told to nobody until ``until`` (they still fire,
#: resolve and are listed).
alert_silences = sa.Table(
    "alert_silences",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("match", sa.String(200), nullable=False),
    sa.Column("until", Time, nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(200), nullable=True),
    sa.Column("at", Time, nullable=False),
)

#: The people (and scripts) who use the dashboard and the API: a role, and a place in the four
#: levels they are scoped to (``*`` for the whole service). Server state, written by
#: ``edge-server users`` and administrators, never by ingest; a replay leaves it alone.
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("display", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(64), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.UniqueConstraint("name", name="uq_users_name"),
)

#: A browser's login: the cookie holds a random token, this table only its SHA-256, so a copy of
#: the database logs nobody in.
user_sessions = sa.Table(
    "user_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("seen_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Index("ix_user_sessions_user", "user_id"),
)

#: A script's key to the API, shown once when made; revoked, never deleted.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_used_at", Time, nullable=True),
    sa.Column("revoked_at", Time, nullable=True),
    sa.UniqueConstraint("token_hash", name="uq_api_tokens_hash"),
)

#: Failed logins, by name and by address, so that every web process limits guessing alike.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("address", sa.String(64), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Index("ix_login_failures_name", "name", "at"),
    sa.Index("ix_login_failures_address", "address", "at"),
)

#: Who changed what outside the journal (users, tokens, card registry through the web).
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("detail", sa.String(400), nullable=True),
)
