"""What alerts leave behind that nobody needs any more: notices told long ago, silences long
over. Alerts themselves stay (one row per alert, the record of what happened), and so does
whatever the notifier still reads: the notices of an alert not yet resolved, or resolved so
lately that its resolution may still be told, are what its escalation counts as told
(``Notifier._told``); pruned, they would be told again (or the resolution to nobody).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from server.alerts.lifecycle import OPEN, State
from server.alerts.notify import TELL_RESOLVED_WITHIN
from server.store.schema import alert_notices, alert_silences, alerts

#: Rows deleted in one transaction.
CHUNK = 5000


def prune(engine: sa.Engine, now: datetime, keep: timedelta, chunk: int = CHUNK) -> int:
    """Delete the notices told before ``now - keep`` (none still to send, none the notifier
    still reads) and the silences that ended before it, ``chunk`` rows at a time, each chunk
    in its own transaction, so a first prune of years never holds the database; return how
    many rows went. Takes the engine, not a connection, to commit each chunk."""
    cutoff = now - keep
    n, s, a = alert_notices, alert_silences, alerts
    live = sa.select(a.c.id).where(
        sa.or_(
            a.c.state.in_(sorted(str(x) for x in {State.PENDING, *OPEN})),
            sa.and_(a.c.state == str(State.RESOLVED),
                    a.c.resolved_at >= now - TELL_RESOLVED_WITHIN),
        )
    )  # fmt: skip
    old_notices = (
        sa.select(n.c.id)
        .where(n.c.told_at < cutoff, n.c.status != "pending", n.c.alert_id.not_in(live))
        .limit(chunk)
    )
    ended = sa.select(s.c.id).where(s.c.until < cutoff).limit(chunk)
    return _delete(engine, n, old_notices) + _delete(engine, s, ended)


def _delete(engine: sa.Engine, table: sa.Table, chunk: sa.Select[tuple[int]]) -> int:
    """Delete the rows ``chunk`` picks, one transaction per chunk, until it picks none."""
    deleted = 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(chunk).scalars())
            if not ids:
                return deleted
            conn.execute(table.delete().where(table.c.id.in_(ids)))
        deleted += len(ids)
