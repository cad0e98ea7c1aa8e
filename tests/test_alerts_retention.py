"""Pruning what alerts leave behind, on SQLite and PostgreSQL: old notices of settled alerts
and long-ended silences go, a few at a time; a notice still to send, those of an alert still
open (its escalation counts them as told) or resolved so lately that its resolution may still
be told, recent ones and live silences stay."""

from __future__ import annotations

from datetime import datetime, timedelta

import pydantic
import pytest
import sqlalchemy as sa

from server.alerts.config import AlertsSection
from server.alerts.retention import prune
from server.store.db import utc
from server.store.schema import alert_notices, alert_silences, alerts
from tests.test_ingest import NOW

KEEP = timedelta(days=400)
OLD = NOW - timedelta(days=600)
RECENT = NOW - timedelta(days=10)


def alert(conn: sa.Connection, subject: str, state: str, resolved_at: datetime | None) -> int:
    inserted = conn.execute(alerts.insert().values(
        key=f"climate.range:county:{subject}", rule="climate.range", site="county",
        subject=subject, severity="critical", state=state, condition=False, since=OLD,
        fired_at=OLD, resolved_at=resolved_at, refires="[]", detail="{}", seen_at=OLD,
    ))  # fmt: skip
    assert inserted.inserted_primary_key is not None
    return int(inserted.inserted_primary_key[0])


def notice(conn: sa.Connection, alert_id: int, status: str, told_at: datetime, i: int) -> None:
    conn.execute(alert_notices.insert().values(
        key=f"{alert_id}:1:fired:{i}:hook:", alert_id=alert_id, level=1, reason="fired",
        channel="hook", recipient="", text="【紧急】", status=status, attempts=1,
        told_at=told_at, next_at=told_at,
    ))  # fmt: skip


def test_old_notices_of_settled_alerts_and_ended_silences_go(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        settled = alert(conn, "no1", "resolved", NOW - timedelta(days=500))
        for i, status in enumerate(["sent", "failed", "unreachable"]):
            notice(conn, settled, status, OLD, i)
        notice(conn, settled, "pending", OLD, 3)
        notice(conn, settled, "sent", RECENT, 4)
        notice(conn, 999, "sent", OLD, 0)  # of a pending alert that never fired, gone since
        firing = alert(conn, "no2", "firing", None)
        notice(conn, firing, "sent", OLD, 0)
        acked = alert(conn, "no3", "acknowledged", None)
        notice(conn, acked, "sent", OLD, 0)
        lately = alert(conn, "no4", "resolved", NOW - timedelta(hours=2))
        notice(conn, lately, "sent", OLD, 0)
        for until in (OLD, RECENT, NOW + timedelta(hours=1)):
            conn.execute(alert_silences.insert().values(match="climate.range:county:",
                                                        until=until, by="王", at=OLD))  # fmt: skip

    assert prune(engine, NOW, KEEP, chunk=2) == 5

    with engine.connect() as conn:
        n = alert_notices
        left = conn.execute(sa.select(n.c.alert_id, n.c.status).order_by(n.c.id)).all()
        untils = conn.execute(sa.select(alert_silences.c.until)).scalars()
        assert sorted(utc(u) for u in untils) == [RECENT, NOW + timedelta(hours=1)]
    assert [tuple(r) for r in left] == [(settled, "pending"), (settled, "sent"), (firing, "sent"),
                                        (acked, "sent"), (lately, "sent")]  # fmt: skip
    assert prune(engine, NOW, KEEP) == 0, "nothing more"


def test_how_long_notices_are_kept_is_bounded() -> None:
    assert AlertsSection().keep_notices_days == 400
    assert AlertsSection(keep_notices_days=30).keep_notices_days == 30
    for days in (29, 3651):
        with pytest.raises(pydantic.ValidationError, match="keep_notices_days"):
            AlertsSection(keep_notices_days=days)
