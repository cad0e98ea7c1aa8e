"""Link benchmark: backlog drain and sustained ingest against a bare MQTT path.

Run from the repository root with the project installed::

    python bench/link.py [--days 7] [--events 100000] [--batch 500] [--drain 1000000]

Everything is real: a private Mosquitto on loopback, ``edge-server run`` as a process with
durable SQLite commits and deduplication, ``edge-agent run`` as a process draining its outbox.

Figures (one per line, ``figure: NAME VALUE UNIT``):

- ``backlog_drain_s``: a 7-day site backlog (six sensors every minute plus 200 dispenses a day,
  61,880 events), from the agent's broker connection to the last event acknowledged.
- ``backlog_drain_events_per_s``: the same, as a rate.
- ``drain_1m_events_s``: a month offline (one million events, filled in bulk), from the agent's
  broker connection to the last event acknowledged.
- ``drain_per_event_growth``: cost per event draining 1M over cost per event draining 62k
  (filled the same way): linear is about 1; goal at most 1.3.
- ``outage_to_delivery_s``: agent and server running, the broker stopped for 60 s while events
  keep being taken, then started: time from the broker's start until the last event taken
  during the outage is acknowledged. Default agent and server settings. Goal at most 10 s.
- ``bare_events_per_s``: batched messages through Mosquitto to a paho subscriber that only
  decodes them (``json.loads``).
- ``ingest_events_per_s``: the same batches through Mosquitto into ``edge-server`` ingest,
  until the acknowledgement of the last one.
- ``ingest_vs_bare_ratio``: the second over the first, measured in the same run.
- ``validation_only_events_per_s`` / ``validation_only_vs_bare_ratio``: the wire schema's
  validation of the same batches alone, in-process: the ceiling of any ingest that validates.
- ``ingest_postgres_events_per_s`` (one ingest process) and
  ``ingest_postgres_2proc_events_per_s`` (two, on one shared subscription): four agents' batches,
  interleaved, into one private PostgreSQL, until every agent's last event is acknowledged.
  Skipped, with a note, where PostgreSQL is not installed.

The publisher here is not an agent: it sends every batch at once instead of keeping a window of
``link.max_in_flight_batches``, so the ingest configurations raise ``ingest.queue_share`` to
hold them all.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from benchsupport import figure, private_postgres
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.clock import Stamp
from edge_agent.outbox import Outbox
from edge_agent.wire import TypedEventBatch, encode_batch
from simulators import synthetic
from simulators.broker import Mosquitto, Postgres

BIN = Path(sys.executable).parent


def fill_week(outbox: Outbox, days: int) -> int:
    """Six sensors every minute and 200 dispenses a day, stamped across ``days`` days."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    minutes = days * 24 * 60
    dispense_every = (24 * 60) / 200
    next_dispense = 0.0
    mono = 0.0
    for minute in range(minutes):
        at = start + timedelta(minutes=minute)
        mono += 60.0
        stamp = Stamp(at, True, "bench-boot", mono)
        for k in range(len(synthetic.SENSORS)):
            outbox.append("climate.record", synthetic.record(minute * 6 + k), stamp)
        while next_dispense <= minute % (24 * 60) + (minute // (24 * 60)) * 24 * 60:
            next_dispense += dispense_every
            outbox.append("cabinet.dispense", synthetic.dispense(minute), stamp)
    return outbox.last_seq


def bulk_fill(path: Path, agent_id: str, events: int) -> int:
    """An outbox of ``events`` as the agent stores them (body, CRC, counters), written in large
    transactions: a month of appends one by one would take longer than the drain measured."""
    box = Outbox(path, agent_id)  # the schema, exactly as the agent makes it
    epoch = box.epoch
    box.close()
    start = datetime(2026, 10, 1, tzinfo=UTC)
    templates: dict[str, dict[str, Any]] = {}
    for kind, model in (
        ("climate.record", synthetic.record(0)),
        ("cabinet.dispense", synthetic.dispense(0)),
    ):
        templates[kind] = model.model_dump(mode="json", exclude_none=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    chunk = 50_000
    for first in range(1, events + 1, chunk):
        rows = []
        for seq in range(first, min(events, first + chunk - 1) + 1):
            kind = "cabinet.dispense" if seq % 43 == 0 else "climate.record"
            payload = dict(templates[kind])
            if kind == "climate.record":
                payload["temperature_c"] = payload["raw_temperature_c"] = 18.0 + seq % 120 / 10
            at = (start + timedelta(seconds=seq * 10)).isoformat()
            event_id = str(uuid.uuid4())
            body = json.dumps(
                {
                    "id": event_id,
                    "agent_id": agent_id,
                    "seq": seq,
                    "span": 1,
                    "kind": kind,
                    "occurred_at": at,
                    "clock_synced": True,
                    "boot_id": "bench-boot",
                    "mono_s": float(seq * 10),
                    "payload": payload,
                },
                separators=(",", ":"),
            )
            rows.append((seq, event_id, kind, at, body, zlib.crc32(body.encode())))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (seq, span, id, kind, occurred_at, body, crc) "
            "VALUES (?, 1, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    conn.execute("BEGIN")
    for key, value in (("last_seq", events), ("rows", events), ("sent_seq", events)):
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", [str(value), key])
    conn.execute("COMMIT")
    conn.close()
    Outbox(path, agent_id).close()  # the state beside it, as after a run
    assert epoch
    return events


def drain(work: Path, broker: Mosquitto, name: str, events: int) -> float:
    """Seconds from the agent's broker connection until a bulk-filled outbox is acknowledged."""
    site = work / name
    site.mkdir()
    db = site / "server.db"
    server_toml = site / "server.toml"
    server_toml.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[mqtt]\nport = {broker.port}\n'
        f'client_id = "{name}-server"\nshared_group = "{name}"\nsession_expiry_s = 0\n'
    )
    agent_toml = site / "agent.toml"
    agent_toml.write_text(
        f'[agent]\nid = "{name}"\nsite = "bench"\ndata_dir = "{site / "agent"}"\n'
        f"[mqtt]\nport = {broker.port}\n"
    )
    t = time.perf_counter()
    last = bulk_fill(site / "agent" / "outbox.db", name, events)
    print(f"# {name}: outbox filled with {last} events in {time.perf_counter() - t:.1f} s")
    server = start(["edge-server", "--config", str(server_toml), "run"], site / "server.log")
    try:
        wait_log(site / "server.log", "connected to broker")
        agent = start(["edge-agent", "--config", str(agent_toml), "run"], site / "agent.log")
        try:
            t0 = wait_log(site / "agent.log", "connected to broker")
            while acked(db, name) < last + 1:  # and the agent's own agent.started
                if time.monotonic() - t0 > 200:
                    raise RuntimeError(f"{name}: backlog not drained in 200 s")
                time.sleep(0.02)
            elapsed = time.monotonic() - t0
        finally:
            stop(agent)
    finally:
        stop(server)
    return elapsed


def drain_figures(work: Path, broker: Mosquitto, events: int) -> None:
    small_n = 61_880
    small = drain(work, broker, "drain-62k", small_n)
    big = drain(work, broker, "drain-1m", events)
    figure("drain_1m_events_s", big, "s")
    figure("drain_per_event_growth", (big / events) / (small / small_n), "ratio")


def outage_to_delivery(work: Path) -> float:
    """Broker down 60 s while events keep coming; then up: until the last is acknowledged."""
    site = work / "outage"
    broker = Mosquitto(site / "broker")
    broker.start()
    db = site / "server.db"
    server_toml = site / "server.toml"
    server_toml.write_text(f'[database]\nurl = "sqlite:///{db}"\n[mqtt]\nport = {broker.port}\n')
    agent_toml = site / "agent.toml"
    agent_toml.write_text(
        f'[agent]\nid = "outage"\nsite = "bench"\ndata_dir = "{site / "agent"}"\n'
        f"[mqtt]\nport = {broker.port}\n"
    )
    server = start(["edge-server", "--config", str(server_toml), "run"], site / "server.log")
    agent = start(["edge-agent", "--config", str(agent_toml), "run"], site / "agent.log")

    def inject(count: int) -> int:
        out = subprocess.run(
            [
                str(BIN / "edge-sim"),
                "inject",
                "--agent-config",
                str(agent_toml),
                "--count",
                str(count),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(out.rsplit("last seq", 1)[1])

    try:
        wait_log(site / "agent.log", "connected to broker")
        first = inject(10)
        deadline = time.monotonic() + 30
        while acked(db, "outage") < first:
            if time.monotonic() > deadline:
                raise RuntimeError("outage: nothing acknowledged before the outage")
            time.sleep(0.05)
        broker.stop()
        down_until = time.monotonic() + 60
        last = first
        while time.monotonic() < down_until:  # a reading every few seconds meanwhile
            last = inject(6)
            time.sleep(min(5.0, max(0.0, down_until - time.monotonic())))
        last = inject(6)
        broker.start()
        t0 = time.monotonic()
        while acked(db, "outage") < last:
            if time.monotonic() - t0 > 120:
                raise RuntimeError("outage: backlog not delivered in 120 s")
            time.sleep(0.05)
        return time.monotonic() - t0
    finally:
        stop(agent)
        stop(server)
        broker.stop()


def acked(db: Path, agent: str) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute(
                "SELECT s.acked_seq FROM streams s JOIN agents a ON a.primary_stream = s.id "
                "WHERE a.agent_id = ?",
                [agent],
            ).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen([str(BIN / args[0]), *args[1:]], stdout=f, stderr=subprocess.STDOUT)


def wait_log(log: Path, text: str, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return time.monotonic()
        time.sleep(0.01)
    raise RuntimeError(f"{log.name}: no {text!r} within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def backlog_drain(work: Path, broker: Mosquitto, days: int) -> None:
    server_toml = work / "server.toml"
    db = work / "server.db"
    server_toml.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[mqtt]\nport = {broker.port}\n'
        'shared_group = "drain"\nsession_expiry_s = 0\n'
    )
    agent_toml = work / "agent.toml"
    agent_toml.write_text(
        f'[agent]\nid = "bench-agent"\nsite = "bench"\ndata_dir = "{work / "agent"}"\n'
        f"[mqtt]\nport = {broker.port}\n[link]\nbatch_max_events = 500\n"
    )
    t = time.perf_counter()
    outbox = Outbox(work / "agent" / "outbox.db", "bench-agent")
    last = fill_week(outbox, days)
    outbox.close()
    print(f"# outbox filled with {last} events in {time.perf_counter() - t:.1f} s", flush=True)
    server = start(["edge-server", "--config", str(server_toml), "run"], work / "server.log")
    try:
        wait_log(work / "server.log", "connected to broker")
        agent = start(["edge-agent", "--config", str(agent_toml), "run"], work / "agent.log")
        try:
            t0 = wait_log(work / "agent.log", "connected to broker")
            target = last + 1  # the agent's own agent.started
            while acked(db, "bench-agent") < target:
                if time.monotonic() - t0 > 240:
                    raise RuntimeError("backlog not drained in 240 s")
                time.sleep(0.01)
            elapsed = time.monotonic() - t0
        finally:
            stop(agent)
    finally:
        stop(server)
    figure("backlog_drain_s", elapsed, "s")
    figure("backlog_drain_events_per_s", target / elapsed, "events/s")


def make_batches(
    work: Path, agent: str, epoch: str, events: int, batch: int, agent_id: str | None = None
) -> list[bytes]:
    """Real stored event JSON from an outbox, spliced into batches as the agent does."""
    agent_id = agent_id or agent
    outbox = Outbox(work / f"{agent}.db", agent_id)
    stamp = Stamp(datetime(2026, 11, 1, tzinfo=UTC), True, "bench-boot", 1.0)
    for kind, payload in synthetic.events(events, "climate"):
        outbox.append(kind, payload, stamp)
    pending = outbox.pending(0, events, 10**12)
    outbox.close()
    now = datetime.now(UTC)
    return [
        encode_batch(agent_id, epoch, now, [p.body for p in pending[i : i + batch]])
        for i in range(0, len(pending), batch)
    ]


class Publisher:
    def __init__(self, port: int, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(64)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish_all(self, topic: str, payloads: list[bytes]) -> None:
        infos = [self.client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(60)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bare_rate(broker: Mosquitto, batches: list[bytes], total: int) -> float:
    """Publisher -> Mosquitto -> subscriber that only decodes: the floor of any MQTT ingest."""
    done = threading.Event()
    counted = [0]

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        counted[0] += len(json.loads(message.payload)["events"])
        if counted[0] >= total:
            done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bare-sub")
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("bare/events", qos=1)
    sub.loop_start()
    time.sleep(0.3)
    pub = Publisher(broker.port, "bare-pub")
    t0 = time.perf_counter()
    pub.publish_all("bare/events", batches)
    if not done.wait(120):
        raise RuntimeError("bare subscriber did not get every event")
    elapsed = time.perf_counter() - t0
    pub.close()
    sub.disconnect()
    sub.loop_stop()
    return total / elapsed


def validation_rate(batches: list[bytes], total: int) -> float:
    """Only the wire schema's validation of the same batches, in-process: ingest's ceiling."""
    t0 = time.perf_counter()
    for payload in batches:
        TypedEventBatch.model_validate_json(payload)
    return total / (time.perf_counter() - t0)


def ingest_rate(
    work: Path, broker: Mosquitto, batches: list[bytes], total: int, agent: str, epoch: str
) -> float:
    """The same batches into edge-server ingest, until the last one is acknowledged."""
    db = work / "ingest.db"
    server_toml = work / "ingest.toml"
    server_toml.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n'
        f'[mqtt]\nport = {broker.port}\nclient_id = "bench-ingest"\n'
        'shared_group = "sustained"\nsession_expiry_s = 0\n'
        "[ingest]\nqueue_share = 100000\n"
    )
    server = start(["edge-server", "--config", str(server_toml), "run"], work / "ingest.log")
    try:
        wait_log(work / "ingest.log", "connected to broker")
        done = threading.Event()

        def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
            ack = json.loads(message.payload)
            if ack.get("epoch") == epoch and ack["acked_seq"] >= total:
                done.set()

        acks = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-acks")
        acks.on_message = on_message
        acks.connect("127.0.0.1", broker.port)
        acks.subscribe(f"fp/v1/bench/{agent}/acks", qos=1)
        acks.loop_start()
        time.sleep(0.3)
        pub = Publisher(broker.port, "bench-pub")
        t0 = time.perf_counter()
        pub.publish_all(f"fp/v1/bench/{agent}/events", batches)
        if not done.wait(240):
            raise RuntimeError("ingest did not acknowledge every event")
        elapsed = time.perf_counter() - t0
        pub.close()
        acks.disconnect()
        acks.loop_stop()
    finally:
        stop(server)
    return total / elapsed


def postgres_rate(
    work: Path, broker: Mosquitto, pg: Postgres, batches: dict[str, list[bytes]], procs: int
) -> float:
    """Several agents' batches, interleaved, into ``procs`` ingest processes on PostgreSQL."""
    import sqlalchemy as sa

    name = f"bench_{procs}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    per_agent = {a: sum(len(json.loads(b)["events"]) for b in bs) for a, bs in batches.items()}
    epochs = {a: json.loads(bs[0])["epoch"] for a, bs in batches.items()}
    tomls = []
    for i in range(procs):
        toml = work / f"pg-{procs}-{i}.toml"
        toml.write_text(
            f'[database]\nurl = "{pg.url(name)}"\n'
            f'[mqtt]\nport = {broker.port}\nclient_id = "bench-pg-{procs}-{i}"\n'
            f'shared_group = "pg{procs}"\nsession_expiry_s = 0\n'
            "[ingest]\nqueue_share = 100000\n"
        )
        tomls.append(toml)
    subprocess.run(
        [str(BIN / "edge-server"), "--config", str(tomls[0]), "db", "upgrade"],
        check=True,
        capture_output=True,
    )
    logs = [work / f"pg-{procs}-{i}.log" for i in range(procs)]
    servers = [
        start(["edge-server", "--config", str(t), "run"], log)
        for t, log in zip(tomls, logs, strict=True)
    ]
    try:
        for log in logs:
            wait_log(log, "connected to broker")
        done = threading.Event()
        acked_by: dict[str, int] = {}

        def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
            ack = json.loads(message.payload)
            if "acked_seq" in ack and ack["epoch"] == epochs[ack["agent_id"]]:
                acked_by[ack["agent_id"]] = max(acked_by.get(ack["agent_id"], 0), ack["acked_seq"])
            if all(acked_by.get(a, 0) >= n for a, n in per_agent.items()):
                done.set()

        acks = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pg-acks-{procs}")
        acks.on_message = on_message
        acks.connect("127.0.0.1", broker.port)
        acks.subscribe("fp/v1/bench/+/acks", qos=1)
        acks.loop_start()
        time.sleep(0.3)
        pub = Publisher(broker.port, f"bench-pg-pub-{procs}")
        rounds = max(len(bs) for bs in batches.values())
        t0 = time.perf_counter()
        infos = [
            pub.client.publish(f"fp/v1/bench/{agent}/events", bs[i], qos=1)
            for i in range(rounds)
            for agent, bs in batches.items()
            if i < len(bs)
        ]
        for info in infos:
            info.wait_for_publish(60)
        if not done.wait(240):
            raise RuntimeError(f"PostgreSQL ingest ({procs} processes) did not acknowledge all")
        elapsed = time.perf_counter() - t0
        pub.close()
        acks.disconnect()
        acks.loop_stop()
    finally:
        for server in servers:
            stop(server)
    return sum(per_agent.values()) / elapsed


def postgres_figures(work: Path, broker: Mosquitto, events: int, batch: int) -> None:
    with private_postgres() as pg:
        if pg is None:
            return
        agents = {f"bench-pg-{k}": uuid.uuid4().hex for k in range(4)}
        per_agent = events // len(agents)
        for procs, name in (
            (1, "ingest_postgres_events_per_s"),
            (2, "ingest_postgres_2proc_events_per_s"),
        ):
            batches = {
                a: make_batches(work, f"{a}-{procs}", e, per_agent, batch, agent_id=a)
                for a, e in agents.items()
            }
            figure(name, postgres_rate(work, broker, pg, batches, procs), "events/s")
            agents = {a: uuid.uuid4().hex for a in agents}  # a fresh epoch for the next round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--drain", type=int, default=1_000_000, help="events for drain_1m")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-link-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker")
        broker.start()
        try:
            backlog_drain(work, broker, args.days)
            drain_figures(work, broker, args.drain)
            agent, epoch = "bench-sustained", uuid.uuid4().hex
            batches = make_batches(work, agent, epoch, args.events, args.batch)
            bare = bare_rate(broker, batches, args.events)
            validate = validation_rate(batches, args.events)
            ours = ingest_rate(work, broker, batches, args.events, agent, epoch)
        finally:
            broker.stop()
    print(f"# batches of {args.batch} events, {args.events} events, cpus {os.cpu_count()}")
    figure("bare_events_per_s", bare, "events/s")
    figure("ingest_events_per_s", ours, "events/s")
    figure("ingest_vs_bare_ratio", ours / bare, "ratio")
    figure("validation_only_events_per_s", validate, "events/s")
    figure("validation_only_vs_bare_ratio", validate / bare, "ratio")
    with tempfile.TemporaryDirectory(prefix="bench-link-outage-") as tmp:
        figure("outage_to_delivery_s", outage_to_delivery(Path(tmp)), "s")
    if not args.no_postgres:
        with tempfile.TemporaryDirectory(prefix="bench-link-pg-") as tmp:
            broker = Mosquitto(Path(tmp) / "broker")
            broker.start()
            try:
                postgres_figures(Path(tmp), broker, args.events, args.batch)
            finally:
                broker.stop()


if __name__ == "__main__":
    main()
