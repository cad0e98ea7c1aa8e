"""Two PostgreSQL transactions raising the first alert of one key at once (two ingest
processes, or ingest and the notifier's timer): the second waits for the first's lock on the
key, then finds its alert, so the key has one alert and people are told once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from server.alerts.notify import OBSERVER_LOCK
from server.alerts.projection import POLICIES, AlertsProjection, key_lock, observe_signals
from server.alerts.signals import Severity, signal
from server.ingest.core import Ingestor
from server.store.db import migrate
from server.store.schema import alerts
from simulators.broker import Postgres
from tests.conftest import fresh_database
from tests.support import wait_for
from tests.test_alerts_projection import events, record
from tests.test_ingest import NOW, TOPIC

KEY = "climate.range:county:no2"
HOT = signal("climate.range", "county", "no2", True, Severity.CRITICAL, storeroom="no2",
             temperature_c=31.5, humidity_pct=55.0)  # fmt: skip
LATER = NOW + timedelta(seconds=1)


@pytest.fixture
def pg(postgres: Postgres) -> Iterator[sa.Engine]:
    with fresh_database(postgres) as engine:
        migrate(engine)
        yield engine


def observing(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        observe_signals(conn, [(HOT, LATER)], POLICIES)


def ingesting(engine: sa.Engine) -> None:
    feed = Ingestor(engine, "fp", projections=[AlertsProjection(now=lambda: NOW)])
    feed.handle(TOPIC, events(1, record(31.5, LATER)), NOW)


def waiting(engine: sa.Engine) -> int:
    """Transactions of this database waiting for an advisory lock."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )).scalar_one())  # fmt: skip


@pytest.mark.parametrize("second", [observing, ingesting], ids=["timer", "ingest"])
def test_a_new_key_raised_at_once_by_two_transactions_is_one_alert(
    pg: sa.Engine, second: Callable[[sa.Engine], None]
) -> None:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            second(pg)
        except Exception as exc:  # noqa: BLE001 - the thread reports to the test
            failures.append(exc)

    other = threading.Thread(target=run)
    with pg.begin() as first:
        assert observe_signals(first, [(HOT, NOW)], POLICIES) == 1
        other.start()
        wait_for(lambda: waiting(pg) >= 1 or not other.is_alive(), timeout=30,
                 what="the second transaction to wait for the key")  # fmt: skip
        went_ahead = not other.is_alive()
    other.join(30)
    assert not other.is_alive()
    assert failures == []
    with pg.connect() as conn:
        states = conn.execute(sa.select(alerts.c.state).where(alerts.c.key == KEY)).scalars()
        assert list(states) == ["firing"]
    assert not went_ahead, "the second waited for the first"


def test_a_keys_lock_is_the_same_everywhere_and_apart_from_the_timers() -> None:
    assert key_lock(KEY) == key_lock(KEY) != key_lock("climate.range:county:no1")
    assert -(2**63) <= key_lock(KEY) < 2**63
    assert OBSERVER_LOCK not in {key_lock(KEY), key_lock("alerts.channel:county:sms")}
