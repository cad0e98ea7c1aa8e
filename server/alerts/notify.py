"""Telling people: the alerts' timer and their deliveries.

Each round (``Notifier.step``), woken by ingest's commits and by a timer:

1. **observe**: the live alerts' holds and clear times (``projection.tick``), and what only the
   server can see (``watch``: an agent gone quiet, a gap not filled, messages it could not use,
   cumulative heat, stock near expiry, a ledger discrepancy);
2. **plan**: for each fired alert, what is due now (``escalation.due``) to which level's
   contacts, over each channel, unless silenced: one ``alert_notices`` row per recipient and
   channel, its key the delivery's idempotency key, inserted once whichever server process
   plans it;
3. **deliver**: the due rows are leased (``next_at`` moved on, so another process leaves them)
   and sent, each channel in its own thread so a dead one does not hold the others up; a
   failure is retried later with a growing wait, up to ``attempts`` times (one the receiver
   refuses for good, a 4xx answer, is given up at once); a channel whose rounds keep failing,
   counted in ``alert_channels`` by every server process, is an alert of its own, told over
   the others.

Told before sent: a restart never tells twice what it already planned, and a lease that runs
out (a process killed mid-send) is sent again under the same key.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from server.alerts import watch
from server.alerts.channels import Channel, ChannelError, Delivery, make
from server.alerts.config import MIN_CONTACTS, AlertsSection, Contact
from server.alerts.escalation import Escalation, Reason, Told, due
from server.alerts.lifecycle import OPEN, Policy, State
from server.alerts.projection import POLICIES, Live, live_of, observe_signals, tick
from server.alerts.signals import Severity, Signal, signal
from server.alerts.text import notice_text
from server.entries import COUNTY_AGENT
from server.i18n import Language
from server.ingest.journal import insert_ignore
from server.store.db import utc
from server.store.schema import (
    agents,
    alert_channels,
    alert_notices,
    alert_silences,
    alerts,
    ledger_sites,
)

log = logging.getLogger(__name__)

#: How long a leased delivery is left to the process sending it, beyond each send's timeout.
LEASE = timedelta(seconds=60)
#: How long after resolving an alert its resolution may still be told.
TELL_RESOLVED_WITHIN = timedelta(days=1)
#: Deliveries a channel leases at once.
LEASE_ROWS = 20


@dataclass(frozen=True)
class Step:
    changed: int
    planned: int
    sent: int
    failed: int


class Notifier:
    """One per server process; several processes share the work through the database."""

    def __init__(
        self,
        engine: sa.Engine,
        section: AlertsSection,
        zone: ZoneInfo,
        language: Language = "zh",
        channels: Sequence[Channel] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        policies: dict[str, Policy] | None = None,
    ) -> None:
        self.engine = engine
        self.section = section
        self.language = language
        self.channels = {c.name: c for c in (channels or [make(c) for c in section.channels])}
        self.now = now
        self.policies = policies if policies is not None else section.policies(POLICIES)
        self.escalation: Escalation = section.escalation(zone)
        self.watch = watch.Watch(section)
        self._pool = ThreadPoolExecutor(max(1, len(self.channels)), "alerts-channel")
        #: Channels whose thread is delivering now.
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self.wake = threading.Event()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- one round ----------------------------------------------------------------------------

    def step(self, observe: bool = True, wait: bool = True) -> Step:
        """One round; ``observe`` False (woken by ingest): only plan and deliver. ``wait``
        False (the server): deliveries go on in the channels' threads, and a dead gateway
        never holds up the next round."""
        now = self.now()
        changed = 0
        if observe:
            with self.engine.connect() as conn:
                seen = self.watch.signals(conn, now)
            with self.engine.begin() as conn:
                if observer_lock(conn):
                    changed = tick(conn, now, self.policies)
                    changed += observe_signals(conn, seen, self.policies)
        with self.engine.begin() as conn:
            writing_first(conn)
            planned = self.plan(conn, now)
        sent, failed = self.deliver(wait)
        return Step(changed, planned, sent, failed)

    def run(self, stopping: threading.Event) -> None:
        """Rounds until ``stopping``: a whole one every ``tick_s``, and a plan and delivery as
        soon as woken (ingest committed a change people are told of)."""
        next_round = time.monotonic()
        while not stopping.is_set():
            self.wake.wait(max(0.0, next_round - time.monotonic()))
            self.wake.clear()
            observe = time.monotonic() >= next_round
            if observe:
                next_round = time.monotonic() + self.section.tick_s
            try:
                self.step(observe, wait=False)
            except sa.exc.SQLAlchemyError as exc:
                log.error("alerts: a round failed, tried again at the next: %s", exc)
                stopping.wait(1.0)
            except Exception:  # a bug must cost a round, never every alert from now on
                log.exception("alerts: a round failed on a defect, tried again at the next")
                stopping.wait(1.0)
        self.close()

    # --- plan ---------------------------------------------------------------------------------

    def plan(self, conn: sa.Connection, now: datetime) -> int:
        """Insert the notices due now; return how many rows were new."""
        a = alerts
        rows = conn.execute(
            sa.select(a).where(
                a.c.fired_at.is_not(None),
                sa.or_(
                    a.c.state.in_([str(s) for s in OPEN]),
                    sa.and_(a.c.state == str(State.RESOLVED),
                            a.c.resolved_at >= now - TELL_RESOLVED_WITHIN),
                ),
            )
        ).all()  # fmt: skip
        if not rows:
            return 0
        told = self._told(conn, [r.id for r in rows])
        silences = self._silences(conn, now)
        parents, names = sites(conn)
        new = []
        for row in rows:
            live = live_of(row)
            if any(silenced(row.key, m) for m in silences):
                continue
            # With nobody configured, the log and the hooks are still told.
            contacts = self.section.contacts_of(_chain(row.site, parents)) or {1: []}
            notices = due(live.alert, row.severity == str(Severity.CRITICAL), told[row.id],
                          list(contacts), now, self.escalation)  # fmt: skip
            for notice in notices:
                n = sum(
                    1 for t in told[row.id] if (t.level, t.reason) == (notice.level, notice.reason)
                )
                text = notice_text(self.language, live, notice.reason, names.get(row.site),
                                   row.id)  # fmt: skip
                new += self._rows(row, live, notice.level, notice.reason, n, text,
                                  contacts.get(notice.level, []), now)  # fmt: skip
        if not new:
            return 0
        conn.execute(_insert_ignoring_twins(conn), new)
        return len(new)

    def _rows(self, row: Any, live: Live, level: int, reason: Reason, n: int, text: str,
              people: list[Contact], now: datetime) -> list[dict[str, Any]]:  # fmt: skip
        out = []
        for channel in self.channels.values():
            if row.rule == "alerts.channel" and row.subject == channel.name:
                continue  # a channel's own failure is told over the others
            for recipient in channel.recipients(people):
                out.append({
                    "key": f"{row.id}:{level}:{reason}:{n}:{channel.name}:{recipient}",
                    "alert_id": row.id, "level": level, "reason": str(reason),
                    "channel": channel.name, "recipient": recipient, "text": text,
                    "status": "pending", "attempts": 0, "told_at": now, "next_at": now,
                })  # fmt: skip
        if not out:
            # Nobody at this level can be reached over these channels (no phone for the SMS
            # gateway): said once, and the level counts as told, so escalation goes on.
            log.error("alerts: nobody at level %d of %s can be reached over %s", level,
                      row.site, ", ".join(self.channels) or "no channel")  # fmt: skip
            out.append({
                "key": f"{row.id}:{level}:{reason}:{n}:-:", "alert_id": row.id, "level": level,
                "reason": str(reason), "channel": "-", "recipient": "", "text": text,
                "status": "unreachable", "attempts": 0, "told_at": now, "next_at": now,
            })  # fmt: skip
        return out

    def _told(self, conn: sa.Connection, ids: list[int]) -> dict[int, list[Told]]:
        n = alert_notices
        query = (
            sa.select(n.c.alert_id, n.c.level, n.c.reason, n.c.told_at)
            .where(n.c.alert_id.in_(ids))
            .distinct()
        )
        out: dict[int, list[Told]] = defaultdict(list)
        for alert_id, level, reason, at in conn.execute(query):
            out[alert_id].append(Told(level, Reason(reason), utc(at)))
        return out

    def _silences(self, conn: sa.Connection, now: datetime) -> list[str]:
        s = alert_silences
        return list(conn.execute(sa.select(s.c.match).where(s.c.until > now)).scalars())

    # --- deliver ------------------------------------------------------------------------------

    def deliver(self, wait: bool = True) -> tuple[int, int]:
        """Each configured channel leases what is due for it and sends it, in its own thread
        (one at a time per channel); with ``wait``, until they are done: (sent, failed)."""
        futures = []
        with self._busy_lock:
            for name in self.channels:
                if name not in self._busy:
                    self._busy.add(name)
                    futures.append(self._pool.submit(self._deliver_channel, name))
        if not wait:
            return 0, 0
        done = [f.result() for f in futures]
        return sum(d[0] for d in done), sum(d[1] for d in done)

    def _deliver_channel(self, name: str) -> tuple[int, int]:
        try:
            leased = self._lease(name)
            if not leased:
                return 0, 0
            results = self._send_all(name, leased)
            self._record(name, results)
            return sum(e is None for _, e in results), sum(e is not None for _, e in results)
        except sa.exc.SQLAlchemyError as exc:
            log.error("alerts: delivering over %s failed, tried again later: %s", name, exc)
        except Exception:  # a defect costs this channel's round, not the notifier
            log.exception("alerts: delivering over %s failed on a defect", name)
        finally:
            with self._busy_lock:
                self._busy.discard(name)
        return 0, 0

    def _lease(self, name: str) -> list[Any]:
        """Take up to ``LEASE_ROWS`` due rows of one channel for long enough to send them all
        (another process leaves them until then, and takes them over after)."""
        now = self.now()
        n = alert_notices
        timeout = getattr(self.channels[name], "timeout_s", 10.0)
        with self.engine.begin() as conn:
            writing_first(conn)
            query = (
                sa.select(n.c.id, n.c.key, n.c.channel, n.c.recipient, n.c.text, n.c.attempts,
                          n.c.alert_id, n.c.level, n.c.reason)
                .where(n.c.status == "pending", n.c.channel == name, n.c.next_at <= now)
                .order_by(n.c.next_at, n.c.id)
                .limit(LEASE_ROWS)
                .with_for_update(skip_locked=True)
            )  # fmt: skip
            leased = conn.execute(query).all()
            if not leased:
                return []
            lease = LEASE + timedelta(seconds=timeout * len(leased))
            conn.execute(
                n.update()
                .where(n.c.id.in_([r.id for r in leased]))
                .values(next_at=now + lease, attempts=n.c.attempts + 1)
            )
            data = self._data(conn, {r.alert_id for r in leased})
        return [(row, data.get(row.alert_id, {})) for row in leased]

    def _send_all(self, name: str, leased: list[Any]) -> list[tuple[Any, ChannelError | None]]:
        channel = self.channels[name]
        out: list[tuple[Any, ChannelError | None]] = []
        for row, data in leased:
            delivery = Delivery(row.key, name, row.recipient, row.text,
                                {**data, "level": row.level, "reason": row.reason})  # fmt: skip
            try:
                channel.send(delivery)
            except ChannelError as exc:
                out.append((row, exc))
                continue
            except Exception as exc:  # a channel's defect is its failure, not the round's
                log.exception("alerts: %s over %s failed on a defect", row.key, name)
                out.append((row, ChannelError(f"defect: {exc!r}")))
                continue
            out.append((row, None))
        return out

    def _record(self, name: str, results: list[tuple[Any, ChannelError | None]]) -> None:
        """Each result, on the row as this process leased it (one taken over after its lease
        ran out is another's to record); the channel's health from the whole round."""
        now = self.now()
        n = alert_notices
        with self.engine.begin() as conn:
            for row, error in results:
                mine = sa.and_(n.c.id == row.id, n.c.status == "pending",
                               n.c.attempts == row.attempts + 1)  # fmt: skip
                if error is None:
                    conn.execute(n.update().where(mine).values(status="sent", sent_at=now,
                                                               error=None))  # fmt: skip
                    continue
                attempts = row.attempts + 1
                gave_up = error.permanent or attempts >= self.section.attempts
                wait = min(self.section.retry_s * 2 ** (attempts - 1), 3600.0)
                conn.execute(
                    n.update().where(mine).values(
                        status="failed" if gave_up else "pending", error=str(error)[:300],
                        next_at=now + timedelta(seconds=wait),
                    )
                )  # fmt: skip
                if error.permanent:
                    log.error("alerts: gave up telling %s over %s at once, the request is "
                              "refused: %s", row.key, name, error)  # fmt: skip
                    continue
                log.warning("alerts: %s over %s failed (try %d): %s", row.key, name, attempts,
                            error)  # fmt: skip
                if gave_up:
                    log.error("alerts: gave up telling %s over %s", row.key, name)
            failures = count_round(conn, name, any(e is None for _, e in results), now)
        self._channel_health(name, failures < self.section.channel_failures, now)

    def _channel_health(self, name: str, ok: bool, now: datetime) -> None:
        with self.engine.begin() as conn:
            observer_lock(conn, wait=True)
            if observe_signals(conn, [(self._channel_signal(name, ok), now)], self.policies):
                self.wake.set()  # a channel's alert to tell at once

    def _channel_signal(self, name: str, ok: bool) -> Signal:
        return signal("alerts.channel", self.section.home_site, name, not ok, Severity.CRITICAL,
                      channel=name)  # fmt: skip

    def _data(self, conn: sa.Connection, ids: set[int]) -> dict[int, dict[str, Any]]:
        a = alerts
        rows = conn.execute(
            sa.select(a.c.id, a.c.key, a.c.rule, a.c.site, a.c.subject, a.c.severity,
                      a.c.state, a.c.detail).where(a.c.id.in_(ids))
        ).all()  # fmt: skip
        return {
            r.id: {"alert": r.id, "alert_key": r.key, "rule": r.rule, "site": r.site,
                   "subject": r.subject, "severity": r.severity, "state": r.state,
                   "detail": json.loads(r.detail)}
            for r in rows
        }  # fmt: skip


def count_round(conn: sa.Connection, channel: str, delivered: bool, now: datetime) -> int:
    """Count a channel's round in ``alert_channels``, shared by every server process: one
    that delivered anything ends its failures, one that delivered nothing adds one (in the
    database, so two processes failing at once both count). Return its failures in a row."""
    c = alert_channels
    conn.execute(insert_ignore(conn, c).values(channel=channel))
    counted = (
        c.update().values(failures=0, last_sent_at=now)
        if delivered
        else c.update().values(failures=c.c.failures + 1, last_failed_at=now)
    )
    conn.execute(counted.where(c.c.channel == channel))
    return int(conn.execute(sa.select(c.c.failures).where(c.c.channel == channel)).scalar_one())


#: The PostgreSQL advisory lock that lets one process at a time move alerts from the timer.
OBSERVER_LOCK = 0x616C657274  # "alert"


def observer_lock(conn: sa.Connection, wait: bool = False) -> bool:
    """Take the right to move alerts outside ingest for this transaction: on SQLite the write
    lock now (so nothing read here changes before it is written back), on PostgreSQL an
    advisory lock (one process's timer at a time; ``wait`` False: another process has it,
    this round leaves the observing to it)."""
    if conn.dialect.name == "sqlite":
        writing_first(conn)
        return True
    if wait:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": OBSERVER_LOCK})
        return True
    got = conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": OBSERVER_LOCK})
    return bool(got.scalar())


def writing_first(conn: sa.Connection) -> None:
    """On SQLite, take the write lock before reading (pysqlite would take it at the first
    write, after the reads another connection may have made stale); PostgreSQL's row locks do
    this there."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _chain(site: str, parents: dict[str, str | None]) -> list[str]:
    """The site and its parents up the levels (a loop in the sites stops the climb)."""
    out = [site]
    while (parent := parents.get(out[-1])) and parent not in out:
        out.append(parent)
    return out


def _insert_ignoring_twins(conn: sa.Connection) -> Any:
    """An insert that skips a key another process inserted first."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(alert_notices).on_conflict_do_nothing(index_elements=["key"])
    return sqlite.insert(alert_notices).on_conflict_do_nothing(index_elements=["key"])


def contacts_warnings(section: AlertsSection, sites: Sequence[str],
                      parents: dict[str, str | None]) -> list[str]:  # fmt: skip
    """Sites whose alerts reach fewer than ``MIN_CONTACTS`` people (warned of at start)."""
    out = []
    for site in sites:
        people = {(c.name, c.phone, c.email) for level in
                  section.contacts_of(_chain(site, parents)).values() for c in level}  # fmt: skip
        if len(people) < MIN_CONTACTS:
            out.append(f"site {site}: alerts reach {len(people)} people, "
                       f"the rules ask for at least {MIN_CONTACTS}")  # fmt: skip
    return out


def sites(conn: sa.Connection) -> tuple[dict[str, str | None], dict[str, str]]:
    """Each site of the levels with its parent, and its name."""
    rows = conn.execute(sa.select(ledger_sites.c.site, ledger_sites.c.parent,
                                  ledger_sites.c.name)).all()  # fmt: skip
    return {r.site: r.parent for r in rows}, {r.site: r.name for r in rows}


def known_sites(conn: sa.Connection, home: str) -> tuple[list[str], dict[str, str | None]]:
    """The sites alerts can be about (those in the levels, those agents report from, the home
    site) and each one's parent."""
    parents, _ = sites(conn)
    reporting = conn.execute(
        sa.select(agents.c.site_id).where(agents.c.agent_id != COUNTY_AGENT).distinct()
    ).scalars()
    return sorted({home, *parents, *reporting}), parents


def silenced(key: str, match: str) -> bool:
    """A silence names one key, or, ending in ':', every key that starts with it."""
    return key == match or (match.endswith(":") and key.startswith(match))


def silence(conn: sa.Connection, match: str, until: datetime, by: str, reason: str | None,
            at: datetime) -> None:  # fmt: skip
    """Tell nobody of alerts whose key starts with ``match`` until ``until`` (they still fire,
    resolve and are listed); who and why are kept."""
    conn.execute(alert_silences.insert().values(match=match, until=until, by=by, reason=reason,
                                                at=at))  # fmt: skip
