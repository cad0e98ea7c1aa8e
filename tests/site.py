"""A site for failure tests: a secured Mosquitto, an ingest process and agents, all real."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import BIN, Broker, Processes, query_sqlite, secure_broker, wait_for

SERVER_USER = "edge-server"


@dataclass
class Site:
    root: Path
    processes: Processes
    agents: list[str] = field(default_factory=lambda: ["station-1", "station-2"])
    agent_extra: str = ""
    #: The agents' ``link.batch_max_events`` (smaller: more, smaller batches).
    batch_max_events: int = 200
    #: MQTT over TLS only, with certificates from ``edge-server broker make-certs``.
    tls: bool = False
    broker: Broker = field(init=False)
    passwords: dict[str, str] = field(init=False)
    #: Lines for the agents' and the server's ``[mqtt]`` sections (TLS settings).
    mqtt_tls: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.broker, self.passwords = secure_broker(
            self.root / "broker", [SERVER_USER, *self.agents]
        )
        if self.tls:
            from server.broker import make_certs

            certs = make_certs(self.root / "tls", ["localhost", "127.0.0.1"], days=30)
            # After the broker's only listener line, so they make that listener TLS.
            self.broker.extra_config += (
                f"certfile {certs.broker_cert}\nkeyfile {certs.broker_key}\n"
            )
            self.mqtt_tls = f'tls = true\nca_file = "{certs.ca_cert}"\n'
        self.broker.start()
        self.server_toml.write_text(self.server_config(f"sqlite:///{self.db}"))
        for agent in self.agents:
            self.agent_toml(agent).write_text(
                f"""
[agent]
id = "{agent}"
site = "county"
data_dir = "{self.root / agent}"
[mqtt]
port = {self.broker.port}
username = "{agent}"
password = "{self.passwords[agent]}"
keepalive_s = 5
{self.mqtt_tls}[link]
batch_max_events = {self.batch_max_events}
ack_timeout_s = 5
status_interval_s = 2
reconnect_min_s = 0.2
reconnect_max_s = 2
{self.agent_extra}
"""
            )

    def server_config(self, url: str, mqtt_extra: str = "") -> str:
        """A server.toml for this site's broker and database ``url``; ``mqtt_extra`` adds lines
        to its ``[mqtt]`` section."""
        return f"""
[database]
url = "{url}"
[mqtt]
port = {self.broker.port}
username = "{SERVER_USER}"
password = "{self.passwords[SERVER_USER]}"
{self.mqtt_tls}{mqtt_extra}
[ingest]
epoch_proof_s = 3
offline_after_s = 10
[commands]
poll_s = 0.5
retry_s = 5
retry_max_s = 10
"""

    @property
    def db(self) -> Path:
        return self.root / "server.db"

    @property
    def server_toml(self) -> Path:
        return self.root / "server.toml"

    def agent_toml(self, agent: str = "station-1") -> Path:
        return self.root / f"{agent}.toml"

    def outbox(self, agent: str = "station-1") -> Path:
        return self.root / agent / "outbox.db"

    # --- processes ----------------------------------------------------------------------------

    def start_server(self) -> None:
        self.processes.start("server", "edge-server", "--config", str(self.server_toml), "run")

    def stop_server(self) -> None:
        self.processes.stop("server")

    def start_agent(self, agent: str = "station-1") -> None:
        self.processes.start(agent, "edge-agent", "--config", str(self.agent_toml(agent)), "run")

    def kill_agent(self, agent: str = "station-1") -> int:
        return self.processes.stop(agent, signal.SIGKILL)

    def inject(self, count: int, kind: str = "climate", agent: str = "station-1") -> int:
        out = subprocess.run(
            [
                str(BIN / "edge-sim"),
                "inject",
                "--agent-config",
                str(self.agent_toml(agent)),
                "--count",
                str(count),
                "--kind",
                kind,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(out.rsplit("last seq", 1)[1])

    def server_cli(self, *args: str) -> str:
        return subprocess.run(
            [str(BIN / "edge-server"), "--config", str(self.server_toml), *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def last_seq(self, agent: str = "station-1") -> int:
        """The outbox's last sequence number (the agent's own events included)."""
        with closing(sqlite3.connect(self.outbox(agent), timeout=10)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        return int(row[0])

    def wait_all_delivered(self, agent: str = "station-1", timeout: float = 60) -> int:
        """Wait until the server acknowledges everything the outbox has numbered."""
        wait_for(
            lambda: self.acked(agent) >= self.last_seq(agent),
            timeout,
            interval=0.2,
            what=f"{agent} fully acknowledged (acked {self.acked(agent)})",
        )
        return self.last_seq(agent)

    # --- what the server holds ----------------------------------------------------------------

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        return query_sqlite(self.db, sql, *params)

    def acked(self, agent: str = "station-1") -> int:
        rows = self.query(
            "SELECT s.acked_seq FROM streams s JOIN agents a ON a.primary_stream = s.id "
            "WHERE a.agent_id = ?",
            agent,
        )
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def wait_acked(self, seq: int, agent: str = "station-1", timeout: float = 60) -> None:
        wait_for(
            lambda: self.acked(agent) >= seq,
            timeout,
            interval=0.2,
            what=f"{agent} acknowledged through seq {seq} (now {self.acked(agent)})",
        )

    def seqs(self, agent: str = "station-1") -> list[int]:
        rows = self.query(
            "SELECT j.seq, j.span FROM journal j JOIN agents a ON a.primary_stream = j.stream_id "
            "WHERE a.agent_id = ? ORDER BY j.seq",
            agent,
        )
        return [int(s) + i for s, span in rows for i in range(int(span))]  # type: ignore[call-overload]

    def assert_complete(self, last_seq: int, agent: str = "station-1") -> None:
        """Every number 1..last_seq once, and the derived records applied in that order."""
        assert self.seqs(agent) == list(range(1, last_seq + 1))
        applied = [
            int(s)  # type: ignore[call-overload]
            for (s,) in self.query(
                "SELECT seq FROM climate_records WHERE agent_id = ? AND epoch = "
                "(SELECT s.epoch FROM streams s JOIN agents a ON a.primary_stream = s.id "
                "WHERE a.agent_id = ?) ORDER BY id",
                agent,
                agent,
            )
        ]
        assert applied == sorted(applied), "climate records applied out of order"
        assert len(applied) == len(set(applied)), "a climate record applied twice"
        behind = self.query(
            "SELECT count(*) FROM projection_checkpoints c JOIN streams s ON s.id = c.stream_id "
            "JOIN agents a ON a.primary_stream = s.id "
            "WHERE a.agent_id = ? AND c.applied_seq < s.acked_seq",
            agent,
        )
        assert behind == [(0,)], "every projection has applied every acknowledged event"

    def online(self, agent: str = "station-1") -> str:
        """What ``edge-server link status`` says in the agent's online column."""
        out = subprocess.run(
            [str(BIN / "edge-server"), "--config", str(self.server_toml), "link", "status"],
            capture_output=True,
            text=True,
        )
        for line in out.stdout.splitlines():
            cells = line.split()
            if len(cells) > 2 and cells[1] == agent:
                return cells[2]
        return ""

    def kinds(self, kind: str, agent: str | None = None) -> int:
        """How many journaled events of ``kind`` (of one agent, or all)."""
        sql = "SELECT count(*) FROM journal j JOIN streams s ON s.id = j.stream_id WHERE j.kind = ?"
        rows = self.query(
            sql + (" AND s.agent_id = ?" if agent else ""), kind, *([agent] if agent else [])
        )
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def bodies(self, kind: str) -> list[dict[str, object]]:
        """The journaled events of ``kind``, as received."""
        rows = self.query(
            "SELECT m.payload, j.idx FROM journal j JOIN messages m ON m.id = j.message_id "
            "WHERE j.kind = ? ORDER BY j.stream_id, j.seq",
            kind,
        )
        return [json.loads(p)["events"][i] for p, i in rows]  # type: ignore[arg-type]
