"""Alerts as a projection: the agents' events, in the ingest transaction that stores them,
become signals (``signals.py``) and move their keys' alerts (``lifecycle.py``); ``tick``, run by
a timer, goes on observing each live alert's last known condition, so a hold ends in a firing
and a clear time in a resolution even when no event comes.

Alerts are live state, not history to rebuild: an event older than ``max_age`` (a backfill of
the whole journal, a replay) moves nothing, and a replay's reset forgets nothing, so nobody is
told again of what was settled long ago. An agent's backlog after an outage is recent enough to
count: what happened while it was offline still raises its alert.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.alerts.config import AlertsSection
from server.alerts.entries import Acknowledgement
from server.alerts.lifecycle import OPEN, Alert, AlertError, Policy, State, acknowledge, observe
from server.alerts.signals import Range, Severity, Signal, of_event
from server.ingest.timefix import BootRef
from server.projections import Run
from server.store.db import utc
from server.store.schema import alerts

KINDS = frozenset({
    "climate.record", "climate.state", "climate.sensor_fault", "climate.sensor_recovered",
    "climate.calibration", "cabinet.slot", "cabinet.vend_failed", "cabinet.tamper",
    "cabinet.board", "agent.storage_alarm", "alerts.ack",
})  # fmt: skip

#: How each rule holds and clears, unless configured otherwise.
POLICIES: dict[str, Policy] = {
    "climate.range": Policy(for_s=0, clear_s=600),
    "climate.room": Policy(for_s=0, clear_s=600),
    "climate.sensor": Policy(for_s=120, clear_s=300),
    "climate.calibration": Policy(clear_s=0),
    "box.slot": Policy(clear_s=0),
    "box.jam": Policy(clear_s=3600),
    "box.tamper": Policy(clear_s=1800),
    "box.offline": Policy(for_s=300, clear_s=300),
    "box.shared": Policy(clear_s=0),
    "agent.storage": Policy(clear_s=600),
    "agent.offline": Policy(for_s=300, clear_s=300),
    "agent.gap": Policy(clear_s=0),
    "agent.messages": Policy(clear_s=0),
    "agent.commands": Policy(clear_s=0),
    "climate.exposure": Policy(clear_s=3600),
    "stock.expiry": Policy(clear_s=0),
    "ledger.discrepancy": Policy(clear_s=0),
    "ledger.variance": Policy(clear_s=0),
    "alerts.channel": Policy(clear_s=300),
}


@dataclass
class Live:
    """A key's newest alert as stored (``id`` None: not stored yet)."""

    id: int | None
    alert: Alert
    signal: Signal
    condition: bool
    seen_at: datetime
    changed: bool = False
    #: A pending alert that never fired, no longer pending: its row goes.
    gone: bool = False


@dataclass
class AlertsProjection:
    name: str = "alerts"
    kinds: frozenset[str] = KINDS
    rebuilt: bool = False
    ranges: Callable[[str, str], Range] = field(default=lambda site, room: Range())
    policies: dict[str, Policy] = field(default_factory=lambda: dict(POLICIES))
    max_age: timedelta = timedelta(days=7)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    #: Set when an alert's state moved (someone may have to be told); the server's notifier
    #: takes it once the transaction has committed.
    moved: bool = False

    @classmethod
    def configured(cls, section: AlertsSection) -> AlertsProjection:
        return cls(ranges=section.range_for, policies=section.policies(POLICIES))

    def apply(self, conn: sa.Connection, run: Run) -> None:
        oldest = self.now() - self.max_age
        said: list[tuple[datetime, Acknowledgement | list[Signal]]] = []
        for event in run.events:
            at, _ = run.when(event)
            if at < oldest:
                continue
            payload = getattr(event, "payload", None)
            if isinstance(payload, Acknowledgement):
                said.append((at, payload))
            elif signals := of_event(run.site_id, event, self.ranges):
                said.append((at, signals))
        if not said:
            return
        keys = {k for _, x in said for k in ([x.key] if isinstance(x, Acknowledgement)
                                             else [s.key for s in x])}  # fmt: skip
        live: dict[str, Live | None] = dict.fromkeys(keys)
        live.update(load_locked(conn, keys))
        #: What each key's stored alert has already seen: a replay moves nothing again.
        seen = {k: x.seen_at for k, x in live.items() if x is not None}
        states = {k: x.alert.state for k, x in live.items() if x is not None}
        for at, what in said:
            if isinstance(what, Acknowledgement):
                live[what.key] = _acknowledged(live[what.key], what, at)
                continue
            for signal in what:
                if signal.key in seen and at <= seen[signal.key]:
                    continue
                live[signal.key] = seen_signal(live[signal.key], signal, at, self.policies)
        # A key whose pending alert was forgotten in this run: its stored row goes too.
        changed = [x for x in live.values() if x is not None and x.changed]
        save(conn, changed)
        if any(x.id is None or x.alert.state != states.get(x.alert.key) for x in changed):
            self.moved = True

    def redate(self, conn: sa.Connection, agent_id: str, boot_id: str, ref: BootRef) -> int:
        return 0

    def reset(self, conn: sa.Connection, agent_id: str, epoch: str) -> None:
        """Nothing is forgotten (see the module's docstring)."""


def policy_of(policies: dict[str, Policy], site: str, rule: str) -> Policy:
    """A rule's timing at ``site``: the site's own (``SITE:rule``), else the rule's."""
    return policies.get(f"{site}:{rule}") or policies.get(rule) or Policy()


def seen_signal(
    found: Live | None, signal: Signal, at: datetime, policies: dict[str, Policy]
) -> Live | None:
    """What ``signal`` seen at ``at`` makes of its key's alert as stored (``found``)."""
    policy = policy_of(policies, signal.site, signal.rule)
    before = None if found is None or found.gone else found.alert
    condition = signal.active and policy.enabled
    alert, _ = observe(before, signal.key, condition, at, policy)
    if signal.instant and signal.active and alert is not None:
        alert, _ = observe(alert, signal.key, False, at, policy)
        condition = False
    row_id = None if found is None else found.id
    if alert is None:
        # A pending alert that never fired is forgotten, and so is its row.
        return None if found is None or row_id is None else _dropped(found)
    if before is not None and before.state is State.RESOLVED and alert.state is not State.RESOLVED:
        row_id = None  # the key's next alert: a row of its own
    # The latest values and the time seen are kept, one write per key and message, so a
    # replay knows what the alert has already seen.
    changed = found is None or found.changed or at > found.seen_at or alert != before
    return Live(row_id, alert, signal, condition, at, changed)


def observe_signals(
    conn: sa.Connection, signals: Iterable[tuple[Signal, datetime]], policies: dict[str, Policy]
) -> int:
    """Signals the server finds itself (an agent gone quiet, a failing channel, stock near
    expiry) move their keys' alerts as an agent's events do; one seen before its key's stored
    alert last saw anything moves nothing. Return how many alerts changed."""
    seen = list(signals)
    live: dict[str, Live | None] = dict.fromkeys(s.key for s, _ in seen)
    if live:
        live.update(load_locked(conn, live))
    for signal, at in seen:
        found = live[signal.key]
        if found is not None and not found.changed and at <= found.seen_at:
            continue
        if found is not None and found.alert.state is State.RESOLVED and not signal.active:
            continue  # still clear: nothing to write
        live[signal.key] = seen_signal(found, signal, at, policies)
    changed = [x for x in live.values() if x is not None and x.changed]
    save(conn, changed)
    return len(changed)


def _acknowledged(found: Live | None, ack: Acknowledgement, at: datetime) -> Live | None:
    """Checked when entered (``check_ack``); one that finds its alert no longer open (settled
    meanwhile, or on a copy where it never fired) changes nothing."""
    if found is None or found.gone or found.alert.state not in OPEN:
        return found
    alert, _ = acknowledge(found.alert, ack.by, ack.action, at)
    return Live(found.id, alert, found.signal, found.condition, found.seen_at, True)


def check_ack(conn: sa.Connection, ack: Acknowledgement) -> None:
    """``AlertError`` unless the key has an open alert to acknowledge."""
    found = load(conn, ack.key)
    if found is None:
        raise AlertError("alert.unknown", alert=ack.key)
    acknowledge(found.alert, ack.by, ack.action, found.seen_at)


def _dropped(found: Live) -> Live:
    return Live(found.id, found.alert, found.signal, False, found.seen_at, changed=True,
                gone=True)  # fmt: skip


def tick(conn: sa.Connection, now: datetime, policies: dict[str, Policy] | None = None) -> int:
    """Observe every live alert's last known condition at ``now``; return how many changed."""
    policies = policies if policies is not None else POLICIES
    live = sa.select(alerts).where(alerts.c.state.in_([State.PENDING, *OPEN]))
    # Rows ingest is moving now are left to the next tick.
    rows = conn.execute(live.with_for_update(skip_locked=True)).all()
    changed = []
    for row in rows:
        found = live_of(row)
        policy = policy_of(policies, row.site, row.rule)
        alert, _ = observe(found.alert, found.alert.key, found.condition and policy.enabled,
                           now, policy)  # fmt: skip
        if alert is None:
            changed.append(_dropped(found))
        elif alert != found.alert:
            changed.append(Live(row.id, alert, found.signal, found.condition, found.seen_at, True))
    save(conn, (x for x in changed if x.changed))
    return len(changed)


def load(conn: sa.Connection, key: str, lock: bool = False) -> Live | None:
    """The key's newest alert; ``lock``: held until the transaction ends (PostgreSQL), so the
    timer and ingest do not both move it at once."""
    query = sa.select(alerts).where(alerts.c.key == key).order_by(alerts.c.id.desc()).limit(1)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return None if row is None else live_of(row)


def load_many(conn: sa.Connection, keys: Iterable[str], lock: bool = False) -> dict[str, Live]:
    """Each key's newest alert, in one query (``lock``: as ``load``)."""
    wanted = sorted(keys)
    newest = sa.select(sa.func.max(alerts.c.id)).where(alerts.c.key.in_(wanted))
    query = sa.select(alerts).where(alerts.c.id.in_(newest.group_by(alerts.c.key)))
    rows = conn.execute(query.with_for_update() if lock else query).all()
    return {row.key: live_of(row) for row in rows}


#: Sets the keys' advisory locks apart from any other use of PostgreSQL's advisory locks.
KEY_LOCKS = b"edge-server alerts key "


def key_lock(key: str) -> int:
    """A key's PostgreSQL advisory lock: the same number in every process."""
    digest = hashlib.sha256(KEY_LOCKS + key.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def load_locked(conn: sa.Connection, keys: Iterable[str]) -> dict[str, Live]:
    """Each key's newest alert, locked for this transaction, and on PostgreSQL the advisory
    lock of each key that has none yet: ``FOR UPDATE`` locks only a row that exists, so two
    processes could otherwise both find a key without an alert and both insert its first.
    Once a key's lock is held it is read again (another process may have inserted and
    committed meanwhile). Only new keys are locked so (a few per round, not the thousands a
    county's expiry look may name: PostgreSQL's lock table is shared and bounded), by number.
    Two transactions can still wait on each other (ingest applies several agents' runs in one
    transaction, each locking its own keys): PostgreSQL then ends one, whose messages are
    stored again one by one (``IngestService._store_group``) or whose round is tried again.
    SQLite needs none of it: one writer at a time holds its write lock, taken before these
    reads (ingest's first statement writes, the timer's transactions begin ``IMMEDIATE``)."""
    wanted = set(keys)
    found = load_many(conn, wanted, lock=True)
    new = wanted - set(found)
    if new and conn.dialect.name == "postgresql":
        numbers = sorted({key_lock(k) for k in new})
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), [{"k": k} for k in numbers])
        found.update(load_many(conn, new, lock=True))
    return found


def save(conn: sa.Connection, changed: Iterable[Live]) -> None:
    """Write the changed alerts: one statement each for the rows gone, new and changed."""
    gone, new, updated = [], [], []
    for x in changed:
        if x.gone:
            if x.id is not None:
                gone.append(x.id)
            continue
        a, s = x.alert, x.signal
        values: dict[str, Any] = {
            "key": a.key, "rule": s.rule, "site": s.site, "subject": s.subject,
            "severity": str(s.severity), "state": str(a.state), "condition": x.condition,
            "since": a.since, "fired_at": a.fired_at, "acked_at": a.acked_at,
            "acked_by": a.acked_by, "action": a.action, "resolved_at": a.resolved_at,
            "clear_since": a.clear_since,
            "refires": json.dumps([t.isoformat() for t in a.refires]),
            "detail": json.dumps(s.detail, ensure_ascii=False), "seen_at": x.seen_at,
        }  # fmt: skip
        if x.id is None:
            new.append(values)
        else:
            updated.append({**values, "row_id": x.id})
    if gone:
        conn.execute(alerts.delete().where(alerts.c.id.in_(gone)))
    if new:
        conn.execute(alerts.insert(), new)
    if updated:
        conn.execute(_UPDATE, updated)


_UPDATE = alerts.update().where(alerts.c.id == sa.bindparam("row_id"))


def live_of(row: Any) -> Live:
    def t(value: Any) -> datetime | None:
        return None if value is None else utc(value)

    alert = Alert(
        row.key, State(row.state), since=utc(row.since), fired_at=t(row.fired_at),
        acked_at=t(row.acked_at), acked_by=row.acked_by, action=row.action,
        resolved_at=t(row.resolved_at), clear_since=t(row.clear_since),
        refires=tuple(datetime.fromisoformat(x) for x in json.loads(row.refires)),
    )  # fmt: skip
    signal = Signal(row.rule, row.key, row.site, row.subject, row.condition,
                    Severity(row.severity), json.loads(row.detail))  # fmt: skip
    return Live(row.id, alert, signal, bool(row.condition), utc(row.seen_at))
