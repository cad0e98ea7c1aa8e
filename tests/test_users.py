"""The people store on a real SQLite file: ended sessions and failed logins past the lockout are
dropped as new ones are written, so neither table grows without a timer, and what still counts
is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.store.db import make_engine, migrate
from server.store.schema import login_failures, user_sessions
from server.users import store

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    made = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    migrate(made)
    with made.begin() as conn:
        store.add(conn, "wang", "keeper", "*", "a long password", "test", NOW)
    return made


def test_ended_sessions_are_dropped_when_a_new_one_opens(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        user = store.find(conn, "wang")
        idle, _ = store.open_session(conn, user, NOW - store.SESSION_IDLE - timedelta(minutes=1))
        live, _ = store.open_session(conn, user, NOW - timedelta(hours=1))
    with engine.begin() as conn:
        store.open_session(conn, user, NOW)
        kept = set(conn.execute(sa.select(user_sessions.c.token_hash)).scalars())
    assert store.digest(idle) not in kept, "idle past 8 hours: gone"
    assert store.digest(live) in kept, "an hour idle: still signed in"
    assert len(kept) == 2
    assert store.session_of(engine, live, NOW) is not None


def test_failed_logins_past_the_lockout_are_dropped_and_recent_ones_still_count(
    engine: sa.Engine,
) -> None:
    long_ago = NOW - store.LOCKOUT - timedelta(minutes=1)
    for _ in range(3):
        with pytest.raises(store.LoginRefused):
            store.authenticate(engine, "wang", "wrong", "10.0.0.9", long_ago)
    for _ in range(store.FAILURES_PER_NAME - 1):
        with pytest.raises(store.LoginRefused):
            store.authenticate(engine, "wang", "wrong", "10.0.0.9", NOW)
    with engine.connect() as conn:
        times = list(conn.execute(sa.select(login_failures.c.at)).scalars())
    assert len(times) == store.FAILURES_PER_NAME - 1, "the three from long ago are gone"
    with pytest.raises(store.LoginRefused):
        store.authenticate(engine, "wang", "wrong", "10.0.0.9", NOW)
    with pytest.raises(store.TooManyAttempts):
        store.authenticate(engine, "wang", "a long password", "10.0.0.9", NOW)
