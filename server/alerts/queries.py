"""What people do with alerts, for the command line now and the HTTP API later: list them, find
one by its number or key, acknowledge it with the action taken, silence a key for a while, and
read who was told of it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.alerts.config import RULES
from server.alerts.entries import Acknowledgement
from server.alerts.lifecycle import OPEN, AlertError
from server.alerts.notify import silence, silenced
from server.alerts.projection import check_ack
from server.ingest.core import Ingestor
from server.store.schema import alert_notices, alert_silences, alerts

DURATION = re.compile(r"^(\d+)([mhd])$")
UNITS = {"m": 60, "h": 3600, "d": 86400}
#: The longest silence: a key forgotten behind one would hide a real problem for good.
LONGEST_SILENCE = timedelta(days=30)


def listed(conn: sa.Connection, everything: bool = False, site: str | None = None,
           limit: int = 200) -> Sequence[Any]:  # fmt: skip
    """Open alerts (all, with ``everything``), the most severe and oldest first."""
    a = alerts
    query = sa.select(a)
    if not everything:
        query = query.where(a.c.state.in_([str(s) for s in OPEN]))
    if site is not None:
        query = query.where(a.c.site == site)
    return conn.execute(query.order_by(a.c.severity, a.c.since, a.c.id).limit(limit)).all()


def key_of(conn: sa.Connection, given: str) -> str:
    """An alert's key from what a person typed: its number (as a message shows it) or its key."""
    if given.isdigit():
        key = conn.execute(sa.select(alerts.c.key).where(alerts.c.id == int(given))).scalar()
        if key is None:
            raise AlertError("alert.unknown", alert=given)
        return str(key)
    return given


def site_of(conn: sa.Connection, alert_id: int) -> str | None:
    """The site of alert number ``alert_id``, or None when there is no such alert."""
    found = conn.execute(sa.select(alerts.c.site).where(alerts.c.id == alert_id)).scalar()
    return None if found is None else str(found)


def acknowledge(ingestor: Ingestor, given: str, by: str, action: str | None,
                now: datetime) -> tuple[str, int]:  # fmt: skip
    """Journal the acknowledgement of the open alert ``given`` (number or key); return its key
    and the entry's number. ``AlertError`` when there is no open alert to acknowledge,
    ``ValueError`` for a name or action the entry refuses."""
    found: list[str] = []

    def make(conn: sa.Connection) -> list[tuple[str, Acknowledgement]]:
        entry = Acknowledgement(key=key_of(conn, given), by=by, action=action)
        check_ack(conn, entry)
        found.append(entry.key)
        return [("alerts.ack", entry)]

    [number] = ingestor.enter(make, now)
    return found[0], number


def duration(text: str) -> timedelta:
    """``30m``, ``2h``, ``3d``; ``ValueError`` for anything else or longer than 30 days."""
    matched = DURATION.match(text.strip())
    if matched is None or int(matched[1]) == 0:
        raise ValueError(text)
    length = timedelta(seconds=int(matched[1]) * UNITS[matched[2]])
    if length > LONGEST_SILENCE:
        raise ValueError(text)
    return length


@dataclass(frozen=True)
class Silenced:
    match: str
    until: datetime
    #: Open alerts it silences now.
    covers: int


def silence_for(conn: sa.Connection, given: str, length: timedelta, by: str, reason: str | None,
                now: datetime) -> Silenced:  # fmt: skip
    """Silence an alert (by number or key) or every key starting with ``given`` ending in ':'
    (``climate.range:town:`` is every storeroom of the township); it starts with a rule.
    ``ValueError`` for anything else, a name of more than 64 or a reason of more than 200."""
    match = key_of(conn, given)
    if (
        match.split(":")[0] not in RULES
        or len(match) > 200
        or not by.strip()
        or len(by) > 64
        or len(reason or "") > 200
    ):
        raise ValueError(given)
    silence(conn, match, now + length, by.strip(), reason, now)
    a = alerts
    keys = conn.execute(
        sa.select(a.c.key).where(a.c.key.startswith(match, autoescape=True),
                                 a.c.state.in_([str(s) for s in OPEN]))
    ).scalars()  # fmt: skip
    covers = sum(1 for key in keys if silenced(key, match))
    return Silenced(match, now + length, int(covers))


def silences(conn: sa.Connection, now: datetime) -> Sequence[Any]:
    s = alert_silences
    return conn.execute(sa.select(s).where(s.c.until > now).order_by(s.c.until)).all()


def told(conn: sa.Connection, alert_id: int) -> Sequence[Any]:
    """Who was told of an alert, when, why and over what, delivered or not: its escalation."""
    n = alert_notices
    return conn.execute(
        sa.select(n).where(n.c.alert_id == alert_id).order_by(n.c.told_at, n.c.level, n.c.id)
    ).all()


def open_counts(conn: sa.Connection) -> list[tuple[str, str, str, str, int]]:
    """(site, rule, severity, state, how many) of the open alerts, for metrics."""
    a = alerts
    query = (
        sa.select(a.c.site, a.c.rule, a.c.severity, a.c.state, sa.func.count())
        .where(a.c.state.in_([str(s) for s in OPEN]))
        .group_by(a.c.site, a.c.rule, a.c.severity, a.c.state)
    )
    return [(str(s), str(r), str(v), str(t), int(n)) for s, r, v, t, n in conn.execute(query)]
