"""Conditions only the server can see, looked at by the alerts' timer: no event says them.

- ``agent.offline``: nothing heard from an agent for ``offline_after_s`` (or its last will);
- ``agent.gap``: a gap in an agent's sequence not filled for ``gap_after_s``;
- ``agent.messages``: messages from an agent dead-lettered in the last hour, or journaled as
  not understood by this version;
- ``agent.commands``: a command sent to an agent ``UNANSWERED_AFTER`` ago, published at least
  ``UNANSWERED_ATTEMPTS`` times, still without a result (the agent cannot apply it: one too
  big for its outbox, say; the server goes on resending it, less and less often);
- ``climate.exposure``: a storeroom at or above ``exposure_c`` for ``exposure_hours`` within
  ``exposure_days`` (each record counts for its share of the time the storeroom's records span);
- ``stock.expiry``: stock on hand in a storeroom or box that has expired or expires within 30
  days;
- ``ledger.discrepancy`` and ``ledger.variance``: a box took stock the books did not show, or a
  count or stocktake found a difference, in the last day;
- ``box.shared``: one box id at one site reported by two agents (a copied configuration): the
  books know a box by site and id, so the two boxes' stock would be mixed.

Each round gives every key whose condition holds a signal that holds, and every open alert of a
rule looked at whose condition no longer holds one that does not. The slower looks (records,
stock) run every ``SLOW_EVERY``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa

from server.alerts.config import AlertsSection
from server.alerts.lifecycle import OPEN, State
from server.alerts.signals import Severity, Signal, signal
from server.climate.queries import storerooms
from server.entries import COUNTY_AGENT
from server.ledger.rules import OUTSIDE
from server.link import online
from server.store.db import utc
from server.store.schema import (
    agents,
    alerts,
    cabinet_slots,
    climate_records,
    commands,
    dead_letters,
    ledger_batches,
    ledger_discrepancies,
    ledger_movements,
    ledger_stock,
    streams,
)

SLOW_EVERY = timedelta(minutes=5)
FAST_RULES = frozenset({"agent.offline", "agent.gap", "agent.messages", "agent.commands"})
SLOW_RULES = frozenset({"climate.exposure", "stock.expiry", "ledger.discrepancy",
                        "ledger.variance", "box.shared"})  # fmt: skip
EXPIRY_WARN_DAYS = 30
RECENT_DEAD_LETTERS = timedelta(hours=1)
RECENT_LEDGER = timedelta(days=1)
UNANSWERED_AFTER = timedelta(hours=1)
UNANSWERED_ATTEMPTS = 3
SHARED_HEARD = timedelta(days=1)


def _hot_hours(count: int, hot_count: int | None, first: datetime, last: datetime) -> float:
    """Hours a sensor's records say it was hot: each record counts for its share of the time
    the records span."""
    if not hot_count or count < 2:
        return 0.0
    span = (utc(last) - utc(first)).total_seconds()
    return span * (count / (count - 1)) * hot_count / count / 3600


class Watch:
    def __init__(self, section: AlertsSection) -> None:
        self.section = section
        self._slow_next: datetime | None = None

    def signals(self, conn: sa.Connection, now: datetime) -> list[tuple[Signal, datetime]]:
        rules = set(FAST_RULES)
        found = [*self._offline(conn, now), *self._gaps(conn, now), *self._messages(conn, now),
                 *self._commands(conn, now)]  # fmt: skip
        if self._slow_next is None or now >= self._slow_next:
            self._slow_next = now + SLOW_EVERY
            rules |= SLOW_RULES
            found += [*self._exposure(conn, now), *self._expiry(conn, now),
                      *self._ledger(conn, now), *self._shared_boxes(conn, now)]  # fmt: skip
        holding = {s.key for s in found}
        a = alerts
        open_rows = conn.execute(
            sa.select(a.c.rule, a.c.key, a.c.site, a.c.subject, a.c.severity, a.c.detail).where(
                a.c.rule.in_(sorted(rules)),
                a.c.state.in_([str(State.PENDING), *(str(s) for s in OPEN)]),
            )
        ).all()
        gone = [
            Signal(r.rule, r.key, r.site, r.subject, False, Severity(r.severity),
                   json.loads(r.detail))
            for r in open_rows
            if r.key not in holding
        ]  # fmt: skip
        return [(s, now) for s in (*found, *gone)]

    def _offline(self, conn: sa.Connection, now: datetime) -> Iterator[Signal]:
        since = now - timedelta(seconds=self.section.offline_after_s)
        rows = conn.execute(
            sa.select(agents.c.agent_id, agents.c.site_id, agents.c.last_heard_at).where(
                agents.c.agent_id != COUNTY_AGENT,
                sa.or_(agents.c.last_heard_at < since, agents.c.online.is_(False)),
            )
        )
        for agent, site, heard in rows:
            yield signal("agent.offline", site, agent, True, Severity.CRITICAL,
                         last_heard=utc(heard).isoformat())  # fmt: skip

    def _gaps(self, conn: sa.Connection, now: datetime) -> Iterator[Signal]:
        since = now - timedelta(seconds=self.section.gap_after_s)
        rows = conn.execute(
            sa.select(agents.c.agent_id, agents.c.site_id, streams.c.acked_seq,
                      streams.c.highest_seq)
            .select_from(agents.join(streams, streams.c.id == agents.c.primary_stream))
            .where(streams.c.gap_since.is_not(None), streams.c.gap_since < since)
        )  # fmt: skip
        for agent, site, acked, highest in rows:
            yield signal("agent.gap", site, agent, True, Severity.WARNING,
                         missing_from=acked + 1, highest=highest)  # fmt: skip

    def _messages(self, conn: sa.Connection, now: datetime) -> Iterator[Signal]:
        d = dead_letters
        dead = {
            agent: int(n)
            for agent, n in conn.execute(
                sa.select(d.c.agent_id, sa.func.count())
                .where(d.c.received_at >= now - RECENT_DEAD_LETTERS, d.c.agent_id.is_not(None))
                .group_by(d.c.agent_id)
            )
        }
        unknown = {
            agent: int(n)
            for agent, n in conn.execute(
                sa.select(agents.c.agent_id, streams.c.not_understood)
                .select_from(agents.join(streams, streams.c.id == agents.c.primary_stream))
                .where(streams.c.not_understood > 0)
            )
        }
        if not dead and not unknown:
            return
        sites = {
            agent: site
            for agent, site in conn.execute(
                sa.select(agents.c.agent_id, agents.c.site_id).where(
                    agents.c.agent_id.in_(sorted({*dead, *unknown}))
                )
            )
        }
        for agent in sorted({*dead, *unknown}):
            yield signal("agent.messages", sites.get(agent, ""), agent, True, Severity.WARNING,
                         dead_lettered=int(dead.get(agent, 0)),
                         not_understood=int(unknown.get(agent, 0)))  # fmt: skip

    def _commands(self, conn: sa.Connection, now: datetime) -> Iterator[Signal]:
        """Of online agents only: one that went away with commands unanswered is
        ``agent.offline``, and is sent them when it is back."""
        c = commands
        rows = conn.execute(
            sa.select(c.c.agent_id, c.c.site_id, sa.func.count(), sa.func.min(c.c.created_at))
            .join(agents, agents.c.agent_id == c.c.agent_id)
            .where(c.c.result_at.is_(None), c.c.created_at < now - UNANSWERED_AFTER,
                   c.c.attempts >= UNANSWERED_ATTEMPTS,
                   online(now, timedelta(seconds=self.section.offline_after_s)))
            .group_by(c.c.agent_id, c.c.site_id)
        )  # fmt: skip
        for agent, site, n, oldest in rows:
            yield signal("agent.commands", site, agent, True, Severity.WARNING,
                         unanswered=int(n), since=utc(oldest).isoformat())  # fmt: skip

    def _exposure(self, conn: sa.Connection, now: datetime) -> Iterator[Signal]:
        """Room by room along the (site, storeroom, time) index: only the window's records
        are read, never the years before it."""
        s = self.section
        r = climate_records
        since = now - timedelta(days=s.exposure_days)
        hot = sa.case((r.c.temperature_c >= s.exposure_c, 1), else_=0)
        reporting = conn.execute(
            sa.select(agents.c.site_id).where(agents.c.agent_id != COUNTY_AGENT).distinct()
        ).scalars()
        for site in sorted(set(reporting)):
            for room in storerooms(conn, site):
                rows = conn.execute(
                    sa.select(sa.func.count(), sa.func.sum(hot), sa.func.min(r.c.occurred_at),
                              sa.func.max(r.c.occurred_at))
                    .where(r.c.site_id == site, r.c.storeroom == room, r.c.occurred_at >= since)
                    .group_by(r.c.sensor)
                ).all()  # fmt: skip
                hours = max((_hot_hours(*row) for row in rows), default=0.0)
                if hours >= s.exposure_hours:
                    yield signal("climate.exposure", site, room, True, Severity.CRITICAL,
                                 hours=round(hours, 1), threshold_c=s.exposure_c,
                                 days=s.exposure_days)  # fmt: skip

    def _expiry(self, conn: sa.Connection, now: datetime) -> Iterator[Signal]:
        today = now.date()
        st, b = ledger_stock, ledger_batches
        rows = conn.execute(
            sa.select(st.c.site, st.c.place, st.c.slot, st.c.product, st.c.batch,
                      sa.func.sum(st.c.quantity), b.c.expiry)
            .select_from(st.join(b, sa.and_(b.c.product == st.c.product,
                                            b.c.batch == st.c.batch)))
            .where(st.c.site != OUTSIDE, st.c.quantity > 0,
                   b.c.expiry <= today + timedelta(days=EXPIRY_WARN_DAYS))
            .group_by(st.c.site, st.c.place, st.c.slot, st.c.product, st.c.batch, b.c.expiry)
        )  # fmt: skip
        for site, place, slot, product, batch, quantity, expiry in rows:
            if not quantity:
                continue
            where = f"{place}#{slot}" if slot else place
            expired = expiry < today
            yield signal("stock.expiry", site, f"{where}/{product}/{batch}", True,
                         Severity.CRITICAL if expired else Severity.WARNING,
                         expiry=expiry.isoformat(), quantity=int(quantity),
                         days=(expiry - today).days)  # fmt: skip

    def _shared_boxes(self, conn: sa.Connection, now: datetime) -> Iterator[Signal]:
        """Among agents heard from within ``SHARED_HEARD``: a Pi replaced by one with a new
        agent id leaves its old rows behind, and must not hold the alert open for ever."""
        c = cabinet_slots
        pairs = conn.execute(
            sa.select(c.c.site_id, c.c.box, c.c.agent_id)
            .join(agents, agents.c.agent_id == c.c.agent_id)
            .where(agents.c.last_heard_at >= now - SHARED_HEARD)
            .distinct()
        ).all()
        agents_of: dict[tuple[str, str], set[str]] = {}
        for site, box, agent in pairs:
            agents_of.setdefault((site, box), set()).add(agent)
        for (site, box), held in sorted(agents_of.items()):
            if len(held) > 1:
                yield signal("box.shared", site, box, True, Severity.CRITICAL,
                             agents=sorted(held))  # fmt: skip

    def _ledger(self, conn: sa.Connection, now: datetime) -> Iterator[Signal]:
        since = now - RECENT_LEDGER
        d = ledger_discrepancies
        rows = conn.execute(
            sa.select(d.c.site, d.c.place, d.c.slot, sa.func.sum(d.c.needed - d.c.books))
            .where(d.c.occurred_at >= since)
            .group_by(d.c.site, d.c.place, d.c.slot)
        )  # fmt: skip
        for site, place, slot, short in rows:
            yield signal("ledger.discrepancy", site, f"{place}#{slot}" if slot else place, True,
                         Severity.WARNING, short=int(short or 0))  # fmt: skip
        m = ledger_movements
        difference: dict[tuple[str, str], int] = {}
        # Stock counted short went from its place to the variance bucket; found, the other way.
        for here, there, sign in (("from", "to", -1), ("to", "from", 1)):
            site, place = m.c[f"{here}_site"], m.c[f"{here}_place"]
            moved = conn.execute(
                sa.select(site, place, sa.func.sum(m.c.quantity))
                .where(m.c.occurred_at >= since, m.c[f"{there}_place"] == "variance",
                       site != OUTSIDE)
                .group_by(site, place)
            )  # fmt: skip
            for at, where, n in moved:
                difference[(at, where)] = difference.get((at, where), 0) + sign * int(n)
        for (site, place), n in sorted(difference.items()):
            yield signal("ledger.variance", site, place, True, Severity.WARNING, difference=n)
