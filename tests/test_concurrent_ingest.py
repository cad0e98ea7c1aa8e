"""Two ingest processes on one PostgreSQL, sharing one MQTT shared subscription (issue 8).

Real processes throughout: a Mosquitto with the shipped ACL, two ``edge-server run`` with their
own client ids in one shared group, three ``edge-agent run``, and a raw client replaying
captured batches with an agent's own account. The broker hands the batches of one agent to
both processes in turn, and every replayed batch twice, so the two processes store and
deduplicate the same agents' events at the same time; one of them is killed with SIGKILL in the
middle of the stream and restarted with its session. Every event must be journaled and applied
exactly once, without a gap, a deadlock or a serialisation failure.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.wire import ServerStatus
from server.ingest.core import Ingestor
from server.store.db import make_engine, migrate
from simulators.broker import Postgres
from tests.site import SERVER_USER, Site
from tests.support import BIN, Processes, wait_for
from tests.test_ingest import batch

AGENTS = ["station-1", "station-2", "station-3"]
INGEST = ["ingest-a", "ingest-b"]
STORED = re.compile(r"agent (\S+): (\d+) stored")
#: What must never appear in an ingest process's log during this test.
TROUBLE = re.compile(
    r"deadlock|could not serialize| ERROR |Traceback|failed|cannot store", re.IGNORECASE
)


@pytest.fixture
def pg_url(postgres: Postgres) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (as for the ``engine`` fixture), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield postgres.url(name)
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@dataclass
class PgSite:
    """A ``Site`` whose server is two ingest processes on one PostgreSQL database."""

    site: Site
    url: str
    engine: sa.Engine
    #: PostgreSQL's own log, and its size when the test began.
    pg_log: Path
    pg_log_start: int

    def pg_log_since_start(self) -> str:
        if not self.pg_log.exists():
            return ""
        with self.pg_log.open("rb") as f:
            f.seek(self.pg_log_start)
            return f.read().decode(errors="replace")

    def toml(self, name: str) -> Path:
        return self.site.root / f"{name}.toml"

    def write_configs(self) -> None:
        for name in INGEST:
            extra = f'client_id = "{name}"\nshared_group = "ingest"'
            self.toml(name).write_text(self.site.server_config(self.url, extra))

    def start(self, name: str) -> None:
        self.site.processes.start(name, "edge-server", "--config", str(self.toml(name)), "run")

    def rows(self, sql: str, **params: object) -> list[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def scalar(self, sql: str, **params: object) -> int:
        rows = self.rows(sql, **params)
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0  # type: ignore[call-overload]

    def acked(self, agent: str) -> int:
        return self.scalar(
            "SELECT s.acked_seq FROM streams s JOIN agents a ON a.primary_stream = s.id "
            "WHERE a.agent_id = :agent",
            agent=agent,
        )

    def wait_all_delivered(self, agent: str, timeout: float = 40) -> None:
        """Wait until the database acknowledges everything the agent's outbox has numbered."""
        wait_for(
            lambda: self.acked(agent) >= self.site.last_seq(agent),
            timeout,
            interval=0.2,
            what=f"{agent} fully acknowledged (acked {self.acked(agent)})",
        )

    def seqs(self, agent: str) -> list[int]:
        rows = self.rows(
            "SELECT j.seq, j.span FROM journal j JOIN agents a ON a.primary_stream = j.stream_id "
            "WHERE a.agent_id = :agent ORDER BY j.seq",
            agent=agent,
        )
        return [int(s) + i for s, span in rows for i in range(int(span))]  # type: ignore[call-overload]

    def assert_complete(self, last_seq: int, agent: str) -> None:
        """``Site.assert_complete`` on PostgreSQL, and the stream's bookkeeping agrees."""
        assert self.seqs(agent) == list(range(1, last_seq + 1)), f"{agent}: journal not 1..last"
        stream = self.rows(
            "SELECT s.acked_seq, s.highest_seq, s.gap_since, s.state, s.conflicts, s.malformed "
            "FROM streams s JOIN agents a ON a.primary_stream = s.id WHERE a.agent_id = :agent",
            agent=agent,
        )
        assert stream == [(last_seq, last_seq, None, "primary", 0, 0)], f"{agent}: {stream}"
        applied = [
            int(s)  # type: ignore[call-overload]
            for (s,) in self.rows(
                "SELECT seq FROM climate_records WHERE agent_id = :agent AND epoch = "
                "(SELECT s.epoch FROM streams s JOIN agents a ON a.primary_stream = s.id "
                "WHERE a.agent_id = :agent) ORDER BY id",
                agent=agent,
            )
        ]
        assert applied == sorted(applied), f"{agent}: climate records applied out of order"
        assert len(applied) == len(set(applied)), f"{agent}: a climate record applied twice"
        journaled = self.scalar(
            "SELECT count(*) FROM journal j JOIN agents a ON a.primary_stream = j.stream_id "
            "WHERE a.agent_id = :agent AND j.kind = 'climate.record'",
            agent=agent,
        )
        assert len(applied) == journaled, f"{agent}: every journaled record applied once"
        behind = self.scalar(
            "SELECT count(*) FROM projection_checkpoints c JOIN streams s ON s.id = c.stream_id "
            "JOIN agents a ON a.primary_stream = s.id "
            "WHERE a.agent_id = :agent AND c.applied_seq <> s.acked_seq",
            agent=agent,
        )
        assert behind == 0, f"{agent}: every projection has applied every acknowledged event"


def stored_by(log: str) -> dict[str, int]:
    """Events stored per agent, as one ingest process's log says."""
    counts: dict[str, int] = {}
    for agent, n in STORED.findall(log):
        counts[agent] = counts.get(agent, 0) + int(n)
    return counts


def raw_client(client_id: str, user: str, password: str, port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(user, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


@pytest.fixture
def pg_site(
    tmp_path: Path, processes: Processes, postgres: Postgres, pg_url: str
) -> Iterator[PgSite]:
    site = Site(tmp_path, processes, agents=AGENTS, batch_max_events=50)
    engine = sa.create_engine(pg_url)
    pg_log = postgres.workdir / "log"
    pg = PgSite(site, pg_url, engine, pg_log, pg_log.stat().st_size if pg_log.exists() else 0)
    yield pg
    processes.stop_all()
    site.broker.stop()
    engine.dispose()


def test_two_ingest_processes_on_postgres_apply_every_event_once(pg_site: PgSite) -> None:
    site, processes = pg_site.site, pg_site.site.processes
    port = site.broker.port
    pg_site.write_configs()
    # Migrate once, so the two processes do not race on it.
    upgrade = subprocess.run(
        [str(BIN / "edge-server"), "--config", str(pg_site.toml(INGEST[0])), "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgrade.returncode == 0, upgrade.stderr

    # A spy with the server's account: every batch (a plain subscription) and server statuses.
    seen: dict[str, list[bytes]] = {agent: [] for agent in AGENTS}
    online: set[str] = set()
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        levels = m.topic.split("/")
        if levels[-1] == "events" and levels[3] in seen:
            with lock:  # the replays come back here too: keep each batch once
                if bytes(m.payload) not in seen[levels[3]]:
                    seen[levels[3]].append(bytes(m.payload))
        elif levels[2] == "server" and m.payload:
            status = ServerStatus.model_validate_json(m.payload)
            with lock:
                (online.add if status.online else online.discard)(status.server_id)

    spy = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spy")
    spy.username_pw_set(SERVER_USER, site.passwords[SERVER_USER])
    spy.on_message = on_message
    spy.connect("127.0.0.1", port)
    spy.subscribe([("fp/v1/+/+/events", 1), ("fp/v1/server/+", 1)])
    spy.loop_start()
    replayers = {
        agent: raw_client(f"replayer-{agent}", agent, site.passwords[agent], port)
        for agent in AGENTS
    }
    try:
        for name in INGEST:
            pg_site.start(name)
        # A process publishes its status right after subscribing: then nothing is missed.
        wait_for(lambda: online >= set(INGEST), 30, what="both ingest processes online")
        for agent in AGENTS:
            site.start_agent(agent)

        replayed = 0

        def replay(every: int) -> None:
            """Publish captured batches again, the agents in turn, each batch twice (so both
            processes may get it), paced so as not to be a flood (``ingest.queue_share``)."""
            nonlocal replayed
            with lock:
                batches = {agent: seen[agent][::every] for agent in AGENTS}
            for i in range(max(len(b) for b in batches.values())):
                for agent in AGENTS:
                    if i < len(batches[agent]):
                        for _ in range(2):
                            replayers[agent].publish(
                                f"fp/v1/county/{agent}/events", batches[agent][i], qos=1
                            ).wait_for_publish(5)
                            replayed += 1
                time.sleep(0.02)  # pace

        under_way = threading.Event()
        failures: list[BaseException] = []

        def feed(rounds: int, count: int) -> None:
            try:
                for _ in range(rounds):
                    for agent in AGENTS:  # interleaved: each agent a little in turn
                        site.inject(count, agent=agent)
                    under_way.set()
                    replay(every=4)
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)
                raise

        # Both processes up: interleaved batches of three agents, and duplicates.
        feed(3, 200)
        wait_for(
            lambda: all(stored_by(processes.log(n)) for n in INGEST),
            30,
            what="both ingest processes storing",
        )

        # SIGKILL one process in the middle of the stream, restart it with its session.
        under_way.clear()
        feeding = threading.Thread(target=feed, args=(6, 150))
        feeding.start()
        assert under_way.wait(30), "the stream is under way"
        processes.stop(INGEST[1], signal.SIGKILL)
        before = len(STORED.findall(processes.log(INGEST[0])))
        wait_for(
            lambda: len(STORED.findall(processes.log(INGEST[0]))) >= before + 5,
            30,
            what="the survivor storing on while the other is down",
        )
        pg_site.start(INGEST[1])
        wait_for(
            lambda: "(resumed session)" in processes.log(INGEST[1]),
            30,
            what="the restarted process resuming its broker session",
        )
        wait_for(
            lambda: STORED.search(processes.log(INGEST[1]).split("(resumed session)")[-1]),
            30,
            what="the restarted process storing again",
        )
        feeding.join(60)
        assert not feeding.is_alive()
        assert not failures, failures

        # Everything captured once more, after the restart.
        replay(every=1)
        for agent in AGENTS:
            pg_site.wait_all_delivered(agent)
    finally:
        for client in [spy, *replayers.values()]:
            client.loop_stop()
            client.disconnect()

    total = 0
    for agent in AGENTS:
        last = site.last_seq(agent)
        assert last > 1500
        pg_site.assert_complete(last, agent)
        total += last
    assert pg_site.scalar("SELECT count(*) FROM streams") == len(AGENTS), "no second epoch"
    for table in ("journal_conflicts", "lost_ranges", "dead_letters"):
        assert pg_site.scalar(f"SELECT count(*) FROM {table}") == 0, table
    assert pg_site.scalar("SELECT count(*) FROM agents WHERE identity_conflict IS NOT NULL") == 0

    logs = {name: processes.log(name) for name in INGEST}
    for name, log in logs.items():
        trouble = [line for line in log.splitlines() if TROUBLE.search(line)]
        assert not trouble, f"{name}: {trouble[:5]}"
        assert processes.procs[name].poll() is None, f"{name} is still running"
    # PostgreSQL's side: no deadlock detected, no serialisation failure, no lock timeout.
    pg_trouble = [
        line
        for line in pg_site.pg_log_since_start().splitlines()
        if re.search(r"deadlock|could not serialize|lock timeout", line, re.IGNORECASE)
    ]
    assert not pg_trouble, pg_trouble[:5]
    counts = [stored_by(log) for log in logs.values()]
    for agent in AGENTS:
        # The same agent's batches went to both processes.
        assert all(c.get(agent, 0) > 0 for c in counts), (agent, counts)
    # Each event stored once: the logs never claim more than the journal holds (a log line
    # may be missing for a group committed just before the SIGKILL).
    assert sum(sum(c.values()) for c in counts) <= total
    assert replayed > 0
    assert any("duplicate" in log for log in logs.values())


def test_refused_messages_lock_their_agents_in_order_too(pg_url: str) -> None:
    """Two processes, each with a group of one agent's batch and garbage from the other agent:
    the garbage counts on its agent's row, so that row too is locked in sorted order, never
    after another agent's lock (PostgreSQL detected a deadlock here in every round)."""
    engine = make_engine(pg_url)
    migrate(engine)
    try:
        first = Ingestor(engine, "fp")
        for agent in ("station-a", "station-b"):
            events = batch(1, agent=agent, agent_id=agent)
            first.handle(f"fp/v1/county/{agent}/events", events, datetime.now(UTC))
        errors: list[Exception] = []
        both = threading.Barrier(2)

        def process(me: str, other: str) -> None:
            ingestor = Ingestor(engine, "fp")
            for n in range(10):
                events = batch(*range(2 + n * 20, 22 + n * 20), agent=me, agent_id=me)
                group = [
                    (f"fp/v1/county/{me}/events", events),
                    (f"fp/v1/county/{other}/events", b"not json"),
                ]
                both.wait(30)
                try:
                    ingestor.handle_many(group, datetime.now(UTC))
                except sa.exc.SQLAlchemyError as exc:
                    errors.append(exc)

        threads = [
            threading.Thread(target=process, args=("station-a", "station-b")),
            threading.Thread(target=process, args=("station-b", "station-a")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, f"{len(errors)} groups failed: {errors[0]}"
        with engine.connect() as conn:
            counted = conn.execute(
                sa.text(
                    "SELECT a.agent_id, a.dead_lettered + a.dead_letters_dropped, s.acked_seq "
                    "FROM agents a JOIN streams s ON s.id = a.primary_stream ORDER BY a.agent_id"
                )
            ).all()
        assert [tuple(r) for r in counted] == [("station-a", 10, 201), ("station-b", 10, 201)]
    finally:
        engine.dispose()
