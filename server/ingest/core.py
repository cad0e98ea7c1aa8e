"""Ingest: the only writer of the journal.

For each message: validate (``validate``), lock the agent, find its stream (one outbox epoch;
``sequence.judge_candidate`` decides what a new epoch is), sort the batch's events into fresh,
duplicate, conflicting, too far ahead and malformed (``sequence.plan``), journal the message as
received and one index row per fresh event, re-date what a new boot reference allows
(``timefix``), move the stream's acknowledged number over what became contiguous
(``sequence.advance``), and hand those events, in order, to every projection that is caught up
(``server.projections``). What cannot be accepted is dead-lettered with its reason.

Ingest never learns what an event means: that is the projections' business.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from edge_agent.wire import Channel, Event, Refusal, topic
from server import projections as proj
from server.entries import (
    COUNTY_AGENT,
    COUNTY_BOOT,
    COUNTY_EPOCH,
    COUNTY_SITE,
    server_models,
)
from server.ingest import journal
from server.ingest.journal import AgentRow, StreamRow
from server.ingest.limits import RefusalLimit
from server.ingest.sequence import (
    Claim,
    EpochView,
    Stored,
    StreamState,
    advance,
    judge_candidate,
    lost_holes,
    plan,
)
from server.ingest.timefix import BootRefs
from server.ingest.validate import (
    Batch,
    Cleared,
    Incoming,
    Prepared,
    Refused,
    Status,
    classify,
    prepare,
)
from server.store.schema import agents, lost_ranges, streams

log = logging.getLogger(__name__)

#: Held-back journal rows read at a time when a filled gap lets the acknowledgement move on.
WALK_CHUNK = 5000

#: The kinds a new outbox begins with: how a new epoch announces itself.
EPOCH_OPENERS = frozenset({"agent.outbox_reset", "agent.started"})


@dataclass(frozen=True)
class IngestResult:
    site_id: str | None = None
    #: The topic the message came on (where a negative acknowledgement goes).
    topic: str | None = None
    agent_id: str | None = None
    epoch: str | None = None
    stored: int = 0
    duplicates: int = 0
    not_understood: int = 0
    conflicts: int = 0
    #: Each event refused and kept: the negative acknowledgement.
    refused: tuple[Refusal, ...] = ()
    #: The whole message was refused; ``reason`` says why.
    dead_lettered: bool = False
    reason: str | None = None
    #: The refusal was kept and logged (False: beyond the agent's refusal limit, only counted).
    kept: bool = True
    acked_seq: int | None = None
    highest_seq: int | None = None


@dataclass
class Settings:
    gap_report_after: timedelta = timedelta(hours=1)
    #: How far above its acknowledged number an agent can plausibly send (its in-flight window).
    max_ahead: int = 1_000_000
    #: How long a new epoch waits, with the old one silent, before it is adopted.
    epoch_proof: timedelta = timedelta(seconds=120)
    #: Old-epoch messages this soon after a new epoch appeared may be in flight still.
    epoch_grace: timedelta = timedelta(seconds=15)
    #: Refusals kept (dead letter, log line, negative acknowledgement) per agent per minute.
    refusals_per_min: int = 30


@dataclass
class _Outcome:
    fresh: list[int] = field(default_factory=list)
    duplicates: int = 0
    conflicts: list[tuple[int, int, str]] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


class Ingestor:
    def __init__(
        self,
        engine: sa.Engine,
        topic_prefix: str,
        *,
        settings: Settings | None = None,
        projections: Sequence[proj.Projection] | None = None,
        models: dict[str, type[BaseModel]] | None = None,
        committed: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.prefix = topic_prefix
        #: Called after each group of messages is committed (the server wakes what waits on the
        #: projections' new rows); ingest does not know who listens.
        self.committed = committed
        self.settings = settings or Settings()
        self.projections = list(proj.default_projections() if projections is None else projections)
        self.models = models if models is not None else server_models()
        self.limit = RefusalLimit(self.settings.refusals_per_min)

    # --- entry points ------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, now: datetime) -> IngestResult:
        """Process one message from the broker; raise only on database failure."""
        return self.handle_many([(topic, payload)], now)[0]

    def handle_many(self, messages: list[tuple[str, bytes]], now: datetime) -> list[IngestResult]:
        """Process several messages in one transaction (one disk flush), in order.

        Validation happens before the transaction. Raises only on database failure, and then
        nothing of the group is stored.
        """
        prepared = [prepare(self.prefix, t, p, self.models) for t, p in messages]
        try:
            with self.engine.begin() as conn:
                results = self._commit(conn, prepared, now)
        except sa.exc.SQLAlchemyError:
            raise
        except Exception as exc:  # a bug meeting odd input must cost one message, not ingest
            if len(prepared) > 1:
                log.warning("a group failed (%r); storing its messages one by one", exc)
                return [r for t, p in messages for r in self.handle_many([(t, p)], now)]
            topic, payload = messages[0]
            log.exception("message from %s could not be processed; dead-lettered", topic)
            with self.engine.begin() as conn:
                journal.dead_letter(conn, topic, None, payload, f"processing failed: {exc!r}", now)
            return [IngestResult(dead_lettered=True, reason="processing failed")]
        if self.committed is not None:
            self.committed()
        return results

    def enter(
        self, make: Callable[[sa.Connection], Sequence[tuple[str, BaseModel]]], now: datetime
    ) -> list[int]:
        """Journal the county's own entries (``server.entries``): ``make`` runs under the county
        stream's lock, so it sees the books as no other entry is changing them, and returns the
        entries (kind, payload) to journal, or raises to enter nothing. Their numbers back."""
        with self.engine.begin() as conn:
            locked = journal.lock_agents(conn, {COUNTY_AGENT: COUNTY_SITE}, now)
            agent = locked[COUNTY_AGENT]
            entries = list(make(conn))
            if not entries:
                return []
            stream = self._stream_for(conn, agent, COUNTY_EPOCH, now)
            first = stream.highest + 1
            raws = [
                {
                    "id": str(uuid.uuid4()), "agent_id": COUNTY_AGENT, "seq": first + i,
                    "kind": kind, "occurred_at": now.isoformat(), "clock_synced": True,
                    "boot_id": COUNTY_BOOT, "mono_s": 0.0,
                    "payload": payload.model_dump(mode="json", exclude_none=True),
                }
                for i, (kind, payload) in enumerate(entries)
            ]  # fmt: skip
            incoming = [classify(i, raw, COUNTY_AGENT, self.models) for i, raw in enumerate(raws)]
            bad = [i for i in incoming if not isinstance(i, Incoming) or i.event is None]
            if bad:
                raise ValueError(f"an entry does not validate: {bad[0]}")
            body = {"v": 1, "agent_id": COUNTY_AGENT, "epoch": COUNTY_EPOCH,
                    "sent_at": now.isoformat(), "events": raws}  # fmt: skip
            payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            where = topic(self.prefix, COUNTY_SITE, COUNTY_AGENT, Channel.EVENTS)
            batch = Batch(where, COUNTY_SITE, COUNTY_AGENT, COUNTY_EPOCH, payload, [])
            batch.incoming = [i for i in incoming if isinstance(i, Incoming)]
            result = self._batch(conn, agent, batch, now)
            if result.acked_seq != first + len(entries) - 1:
                raise RuntimeError(f"county entries not journaled in order: {result}")
            return [first + i for i in range(len(entries))]

    def _commit(
        self, conn: sa.Connection, prepared: list[Prepared], now: datetime
    ) -> list[IngestResult]:
        sites: dict[str, str] = {}
        refused: set[str] = set()  # a refusal counts on its agent's row: lock it in order too
        for item in prepared:
            if isinstance(item, Batch | Status):
                sites.setdefault(item.agent, item.site)
            elif isinstance(item, Refused) and item.agent is not None:
                refused.add(item.agent)
        locked = journal.lock_agents(conn, sites, now, known=refused)
        return [self._one(conn, item, locked, now) for item in prepared]

    def _one(
        self, conn: sa.Connection, item: Prepared, locked: dict[str, AgentRow], now: datetime
    ) -> IngestResult:
        if isinstance(item, Cleared):
            return IngestResult(item.site, item.agent)
        if isinstance(item, Refused):
            return self._refuse(conn, item, now)
        agent = locked[item.agent]
        if agent.site_id != item.site:
            reason = f"agent {item.agent!r} belongs to site {agent.site_id!r}, not {item.site!r}"
            return self._refuse(conn, Refused(item.topic, item.agent, item.payload, reason), now)
        journal.heard(conn, agent.agent_id, now)
        if isinstance(item, Status):
            self._status(conn, agent, item, now)
            return IngestResult(item.site, item.agent)
        return self._batch(conn, agent, item, now)

    def _refuse(self, conn: sa.Connection, item: Refused, now: datetime) -> IngestResult:
        kept = self._dead_letter(conn, item.topic, item.agent, item.payload, item.reason, now)
        if kept:
            log.error("dead letter from %s: %s", item.topic, item.reason)
        return IngestResult(
            topic=item.topic,
            agent_id=item.agent,
            dead_lettered=True,
            reason=item.reason,
            kept=kept,
        )

    def _dead_letter(
        self,
        conn: sa.Connection,
        topic: str,
        agent: str | None,
        payload: bytes,
        reason: str,
        now: datetime,
        epoch: str | None = None,
        seq: int | None = None,
    ) -> bool:
        """Keep a refusal, or only count it once ``agent`` is beyond its limit; True if kept."""
        kept = self.limit.allow(agent or "", now)
        if kept:
            journal.dead_letter(conn, topic, agent, payload, reason, now, epoch, seq)
        if agent is not None:
            journal.count_dead_letter(conn, agent, kept=kept)
        return kept

    def report_limits(self, now: datetime) -> None:
        """Log, once per window, how many refusals of each agent were only counted."""
        for agent, dropped in self.limit.closed(now).items():
            log.error(
                "agent %s: %d more refused messages or events not kept (limit %d a minute)",
                agent or "(no agent)",
                dropped,
                self.settings.refusals_per_min,
            )

    # --- status ---------------------------------------------------------------------------------

    def _status(self, conn: sa.Connection, agent: AgentRow, item: Status, now: datetime) -> None:
        conn.execute(
            agents.update()
            .where(agents.c.agent_id == agent.agent_id)
            .values(online=item.status.online, status=item.status.model_dump_json(), status_at=now)
        )
        if item.status.epoch is None:
            return
        stream = journal.stream_by_epoch(conn, agent.agent_id, item.status.epoch)
        if stream is not None:
            journal.update_stream(conn, stream.id, last_received_at=now)
            self._settle(conn, agent, now)

    # --- batches --------------------------------------------------------------------------------

    def _batch(
        self, conn: sa.Connection, agent: AgentRow, item: Batch, now: datetime
    ) -> IngestResult:
        stream = self._stream_for(conn, agent, item.epoch, now)
        claims = [Claim(i.seq, i.span) for i in item.incoming]
        held: dict[int, journal.JournalRow] = {}
        above = [c for c in claims if c.seq > stream.acked]
        if stream.highest > stream.acked and above:
            lo, hi = min(c.seq for c in above), max(c.last for c in above)
            held = {r.seq: r for r in journal.near(conn, stream.id, stream.acked, lo, hi)}
        below = journal.stored(conn, stream.id, [c.seq for c in claims if c.seq <= stream.acked])
        p = plan(
            claims,
            stream.acked,
            {s: Stored(r.seq, r.span) for s, r in held.items()},
            below,
            self.settings.max_ahead,
        )
        out = _Outcome(fresh=p.fresh)
        self._compare(conn, item, [*p.seen], {**below, **held}, out)
        for pos in p.covered:
            i = item.incoming[pos]
            out.conflicts.append((i.seq, i.idx, f"seq {i.seq} is already covered by another event"))
        for pos in p.too_far:
            i = item.incoming[pos]
            reason = f"seq {i.seq} span {i.span} is too far beyond acked seq {stream.acked}"
            if self._dead_letter(
                conn, item.topic, agent.agent_id, b"", reason, now, item.epoch, i.seq
            ):
                event_id = i.event.id if i.event is not None else None
                out.refused.append(Refusal(seq=i.seq, id=event_id, code="too_far", reason=reason))
        for bad in item.malformed:
            if self._dead_letter(
                conn, item.topic, agent.agent_id, bad.body, bad.reason, now, item.epoch, bad.seq
            ):
                out.refused.append(
                    Refusal(seq=bad.seq, id=bad.event_id, code="malformed", reason=bad.reason[:500])
                )
        if out.refused:
            log.error(
                "agent %s: %d events refused: %s",
                agent.agent_id,
                len(out.refused),
                out.refused[0].reason,
            )
        fresh = [item.incoming[pos] for pos in out.fresh]
        unknown = sum(1 for i in fresh if i.event is None)
        if fresh or out.conflicts:
            message_id = journal.insert_message(conn, stream.id, item.payload, now)
            journal.insert_events(
                conn,
                [
                    (
                        stream.id,
                        i.seq,
                        i.span,
                        message_id,
                        i.idx,
                        i.kind,
                        "ok" if i.event else "unknown",
                    )
                    for i in fresh
                ],
            )
            journal.insert_conflicts(conn, stream.id, message_id, out.conflicts, now)
        for i in fresh:
            if i.event is None:
                log.warning(
                    "agent %s seq %d not yet understood: %s", agent.agent_id, i.seq, i.reason
                )
        if out.conflicts:
            seq, _, reason = out.conflicts[0]
            log.error(
                "agent %s epoch %s: %d conflicting events (seq %d: %s)",
                agent.agent_id,
                stream.epoch,
                len(out.conflicts),
                seq,
                reason,
            )
            journal.raise_identity_conflict(
                conn, agent.agent_id, f"epoch {stream.epoch}: another event claims seq {seq}", now
            )
        if stream.state == StreamState.CLOSED and fresh:
            self._closed_speaks(conn, agent, stream, now)
        refs = BootRefs(agent.agent_id)
        refs.learn(conn, [i.event for i in fresh if i.event is not None])
        for boot, ref in refs.settle().items():
            for projection in self.projections:
                projection.redate(conn, agent.agent_id, boot, ref)
        waiting = {r.seq: r.span for r in held.values()}
        waiting.update({i.seq: i.span for i in fresh})
        acked, passed = advance(stream.acked, waiting)
        while passed and acked < stream.highest:
            # The batch filled a gap: walk on over what was held back behind it, in chunks.
            more = journal.read(conn, stream.id, acked, stream.highest, WALK_CHUNK)
            if not more or more[0].seq != acked + 1:
                break
            held.update({r.seq: r for r in more})
            waiting.update({r.seq: r.span for r in more})
            acked, moved = advance(acked, waiting)
            passed += moved
        if passed and stream.state == StreamState.PRIMARY:
            ready = self._ready(conn, passed, {i.seq: i for i in fresh}, held)
            self._apply(conn, agent, stream, acked, ready, refs)
        highest = max([stream.highest, acked, *(i.seq + i.span - 1 for i in fresh)])
        self._progress(conn, agent.agent_id, stream, acked, highest, now)
        journal.count_on_stream(
            conn,
            stream.id,
            not_understood=unknown,
            malformed=len(item.malformed),
            conflicts=len(out.conflicts),
        )
        if stream.state in (StreamState.PRIMARY, StreamState.CANDIDATE):
            self._settle(conn, agent, now)
        return IngestResult(
            site_id=item.site,
            topic=item.topic,
            agent_id=agent.agent_id,
            epoch=stream.epoch,
            stored=len(fresh) - unknown,
            duplicates=out.duplicates,
            not_understood=unknown,
            conflicts=len(out.conflicts),
            refused=tuple(out.refused),
            acked_seq=acked,
            highest_seq=highest,
        )

    def _compare(
        self,
        conn: sa.Connection,
        item: Batch,
        seen: list[int],
        stored: dict[int, journal.JournalRow],
        out: _Outcome,
    ) -> None:
        """Same number, same content: a duplicate. Same number, other content: a conflict."""
        if not seen:
            return
        mine: list[Any] = json.loads(item.payload)["events"]
        theirs = journal.load_raw(conn, {stored[item.incoming[pos].seq].message_id for pos in seen})
        for pos in seen:
            i = item.incoming[pos]
            row = stored[i.seq]
            if mine[i.idx] == theirs[row.message_id][row.idx]:
                out.duplicates += 1
            else:
                out.conflicts.append(
                    (i.seq, i.idx, f"differs from the event stored at seq {i.seq}")
                )

    def _ready(
        self,
        conn: sa.Connection,
        passed: list[int],
        fresh: dict[int, Any],
        held: dict[int, journal.JournalRow],
    ) -> list[Event]:
        """The understood events among ``passed``, in order, from this batch or the journal."""
        from_journal = [held[s] for s in passed if s not in fresh]
        parsed: dict[int, Event] = {}
        if from_journal:
            raws = journal.load_raw(conn, {r.message_id for r in from_journal})
            parsed = {r.seq: e for r, e in proj.understood(from_journal, raws, self.models)}
        out = []
        for seq in passed:
            event = fresh[seq].event if seq in fresh else parsed.get(seq)
            if event is not None:
                out.append(event)
        return out

    def _apply(
        self,
        conn: sa.Connection,
        agent: AgentRow,
        stream: StreamRow,
        acked: int,
        ready: list[Event],
        refs: BootRefs,
    ) -> None:
        """Hand the events now in order to every projection that is caught up."""
        done = proj.checkpoints(conn, stream.id)
        for projection in self.projections:
            if done.get(projection.name, 0) != stream.acked:
                continue  # lagging: it catches up from the journal instead
            mine = [e for e in ready if e.kind in projection.kinds]
            if mine:
                projection.apply(
                    conn, proj.Run(agent.site_id, agent.agent_id, stream.epoch, mine, refs)
                )
            proj.set_checkpoint(conn, projection.name, stream.id, acked)

    def _progress(
        self,
        conn: sa.Connection,
        agent: str,
        stream: StreamRow,
        acked: int,
        highest: int,
        now: datetime,
    ) -> None:
        gap_since = stream.gap_since if acked < highest else None
        if acked < highest and gap_since is None:
            gap_since = now
        values: dict[str, Any] = {
            "acked_seq": acked,
            "highest_seq": highest,
            "gap_since": gap_since,
            "last_received_at": now,
        }
        if gap_since is None:
            values["gap_reported_at"] = None
        elif now - gap_since > self.settings.gap_report_after:
            log.error(
                "agent %s epoch %s: seq %d missing for %s; %d later numbers held back",
                agent,
                stream.epoch,
                acked + 1,
                now - gap_since,
                highest - acked,
            )
            values["gap_reported_at"] = now
        journal.update_stream(conn, stream.id, **values)
        stream.acked, stream.highest, stream.gap_since = acked, highest, gap_since
        stream.last_received_at = now

    # --- epochs -------------------------------------------------------------------------------

    def _stream_for(
        self, conn: sa.Connection, agent: AgentRow, epoch: str, now: datetime
    ) -> StreamRow:
        stream = journal.stream_by_epoch(conn, agent.agent_id, epoch)
        if stream is not None:
            return stream
        primary = journal.stream_by_id(conn, agent.primary_stream) if agent.primary_stream else None
        if primary is None:
            stream = journal.create_stream(conn, agent.agent_id, epoch, StreamState.PRIMARY, now)
            journal.set_primary(conn, agent.agent_id, stream.id)
            agent.primary_stream = stream.id
            return stream
        if primary.epoch == "":
            # An agent from before epochs: its first epoch carries its numbering on.
            journal.update_stream(conn, primary.id, epoch=epoch)
            primary.epoch = epoch
            return primary
        log.warning(
            "agent %s: new outbox epoch %s while %s is current; kept apart until proven",
            agent.agent_id,
            epoch,
            primary.epoch,
        )
        return journal.create_stream(conn, agent.agent_id, epoch, StreamState.CANDIDATE, now)

    def _closed_speaks(
        self, conn: sa.Connection, agent: AgentRow, stream: StreamRow, now: datetime
    ) -> None:
        what = f"closed outbox epoch {stream.epoch} sends new events"
        log.error("agent %s: %s; duplicate agent identity, kept apart", agent.agent_id, what)
        journal.update_stream(conn, stream.id, state=StreamState.QUARANTINED)
        stream.state = StreamState.QUARANTINED
        journal.raise_identity_conflict(conn, agent.agent_id, what, now)

    def _settle(self, conn: sa.Connection, agent: AgentRow, now: datetime) -> None:
        """Decide on the agent's candidate epochs (caller holds the agent's lock)."""
        candidates = [
            s
            for s in journal.agent_streams(conn, agent.agent_id)
            if s.state == StreamState.CANDIDATE
        ]
        if not candidates:
            return
        primary = journal.stream_by_id(conn, agent.primary_stream) if agent.primary_stream else None
        for cand in candidates:
            opener = journal.stored(conn, cand.id, [1]).get(1)
            verdict = judge_candidate(
                _view(primary) if primary else None,
                _view(cand),
                opener is not None and opener.kind in EPOCH_OPENERS,
                now,
                self.settings.epoch_proof,
                self.settings.epoch_grace,
            )
            if verdict == "quarantine":
                what = (
                    f"outbox epochs {primary.epoch if primary else '?'} and {cand.epoch} both alive"
                )
                log.error(
                    "agent %s: %s; duplicate agent identity, %s kept apart",
                    agent.agent_id,
                    what,
                    cand.epoch,
                )
                journal.update_stream(conn, cand.id, state=StreamState.QUARANTINED)
                journal.raise_identity_conflict(conn, agent.agent_id, what, now)
            elif verdict == "adopt":
                self._adopt(conn, agent, primary, cand, now)
                primary = cand

    def _adopt(
        self,
        conn: sa.Connection,
        agent: AgentRow,
        old: StreamRow | None,
        new: StreamRow,
        now: datetime,
    ) -> None:
        if old is not None:
            held = journal.read(conn, old.id, old.acked, max(old.highest, old.acked), 10**7)
            holes, final = lost_holes(old.acked, [Stored(r.seq, r.span) for r in held])
            reason = "agent started a new outbox epoch; these events of the old one are lost"
            rows: list[tuple[int, int | None, str]] = [(a, b, reason) for a, b in holes]
            rows.append((final + 1, None, "agent started a new outbox epoch; later events lost"))
            conn.execute(
                lost_ranges.insert(),
                [
                    {
                        "agent_id": agent.agent_id,
                        "epoch": old.epoch,
                        "from_seq": a,
                        "to_seq": b,
                        "reason": r,
                        "recorded_at": now,
                    }
                    for a, b, r in rows
                ],
            )
            journal.update_stream(
                conn,
                old.id,
                state=StreamState.CLOSED,
                acked_seq=final,
                highest_seq=max(final, old.highest),
                gap_since=None,
                gap_reported_at=None,
            )
            log.warning(
                "agent %s: outbox epoch %s adopted; epoch %s closed at seq %d",
                agent.agent_id,
                new.epoch,
                old.epoch,
                final,
            )
        journal.update_stream(conn, new.id, state=StreamState.PRIMARY)
        journal.set_primary(conn, agent.agent_id, new.id)
        agent.primary_stream = new.id
        for stream_id in ([old.id] if old else []) + [new.id]:
            stream = journal.stream_by_id(conn, stream_id)
            for projection in self.projections:
                proj.catch_up(conn, projection, stream, agent.site_id, self.models)

    def settle_epochs(self, now: datetime) -> None:
        """Adopt or quarantine waiting epochs whose agents have gone quiet (a timer calls this)."""
        with self.engine.connect() as conn:
            waiting = sorted(
                set(
                    conn.execute(
                        sa.select(streams.c.agent_id).where(
                            streams.c.state == StreamState.CANDIDATE
                        )
                    ).scalars()
                )
            )
        for agent_id in waiting:
            with self.engine.begin() as conn:
                self._settle(conn, journal.lock_agent(conn, agent_id), now)

    def catch_up(self, limit: int = 5000) -> int:
        """Let lagging projections apply some of what they missed; return numbers moved."""
        moved = 0
        for projection in self.projections:
            with self.engine.connect() as conn:
                behind = proj.lagging(conn, projection)
            for stream_id in behind:
                with self.engine.begin() as conn:
                    agent_id = journal.stream_by_id(conn, stream_id).agent_id
                    site = journal.lock_agent(conn, agent_id).site_id
                    stream = journal.stream_by_id(conn, stream_id)
                    moved += proj.catch_up(conn, projection, stream, site, self.models, limit)
                if moved >= limit:
                    return moved
        return moved


def _view(stream: StreamRow) -> EpochView:
    return EpochView(stream.epoch, stream.first_received_at, stream.last_received_at)
