"""Alerts benchmark: how fast an alarm reaches a person's hook, and what the rules cost ingest.

Run from the repository root with the project installed::

    python bench/alerts.py [--alarms 100] [--events 60000] [--batch 100] [--rounds 3]

Figures (one per line, ``figure: NAME VALUE UNIT``):

- ``alarm_to_notification_p99_ms`` (and ``_p50_ms``, ``_max_ms``): an agent's alarm event (a
  forced box door, each at a box of its own, so each is an alert of its own) published to a
  private Mosquitto, until a local HTTP receiver has the webhook notice: through ``edge-server
  run`` as a process (SQLite, durable commits), its ingest, the alerts projection, and the
  notifier woken by the commit. One alarm at a time. Goal at most 1,000 ms.
- ``rules_eps``: events per second through ``Ingestor`` (in process, SQLite file, durable) with
  every projection, alerts included, over a mixed stream (records round six sensors, a sixth of
  them over the limits, and a dispense every 43rd event);
- ``rules_off_eps``: the same events with the alerts projection left out;
- ``rules_overhead_ratio``: the second over the first. Goal at most 1.2.

The two ingest runs alternate ``--rounds`` times, each on a new database file, and the best
rate of each is kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from benchsupport import figure
from paho.mqtt.enums import CallbackAPIVersion

from server.alerts.config import AlertsSection, Limits
from server.alerts.projection import AlertsProjection
from server.ingest.core import Ingestor
from server.projections import default_projections
from server.store.db import make_engine, migrate
from simulators import synthetic
from simulators.broker import Mosquitto
from simulators.receivers import HttpReceiver

BIN = Path(sys.executable).parent
AGENT = "alarm-agent"
EPOCH = "be4c0000"


def event(seq: int, kind: str, payload: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "agent_id": AGENT, "seq": seq, "kind": kind,
            "occurred_at": at.isoformat(), "clock_synced": True, "boot_id": "bench",
            "mono_s": float(seq), "payload": payload}  # fmt: skip


def batch(events: list[dict[str, Any]]) -> bytes:
    body = {"v": 1, "agent_id": AGENT, "epoch": EPOCH, "sent_at": datetime.now(UTC).isoformat(),
            "events": events}  # fmt: skip
    return json.dumps(body).encode()


def alarm_latency(work: Path, alarms: int) -> list[float]:
    hook = HttpReceiver().start()
    broker = Mosquitto(work / "broker")
    broker.start()
    server_toml = work / "server.toml"
    server_toml.write_text(
        f'[database]\nurl = "sqlite:///{work / "server.db"}"\n[mqtt]\nport = {broker.port}\n'
        f'[alerts]\ntick_s = 5\n[[alerts.channels]]\nname = "hook"\nkind = "webhook"\n'
        f'url = "{hook.url("/hook")}"\n'
    )
    log = (work / "server.log").open("ab")
    server = subprocess.Popen(
        [str(BIN / "edge-server"), "--config", str(server_toml), "run"], stdout=log, stderr=log
    )
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=AGENT)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    topic = f"fp/v1/bench/{AGENT}/events"
    latencies = []
    try:
        # The first batch makes the agent known; its alert's notice shows the server is up.
        warm = [event(1, "cabinet.tamper", {"box": "warm", "reason": "door_without_card",
                                            "open_s": 3}, datetime.now(UTC))]  # fmt: skip
        deadline = time.monotonic() + 60
        while not any(h.json()["subject"] == "warm" for h in hook.at("/hook")):
            client.publish(topic, batch(warm), qos=1).wait_for_publish(10)
            try:
                hook.wait("/hook", 1, timeout=2)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server told nothing within 60 s") from None
        for n in range(alarms):
            seq = n + 2
            payload = {"box": f"box-{n}", "reason": "door_without_card", "open_s": 5}
            body = batch([event(seq, "cabinet.tamper", payload, datetime.now(UTC))])
            t0 = time.monotonic()
            client.publish(topic, body, qos=1)
            told = len(hook.at("/hook"))
            got = hook.wait("/hook", told + 1, timeout=30)[-1]
            if not got.json()["alert_key"].endswith(f":box-{n}"):
                raise RuntimeError(f"told of something else: {got.json()}")
            latencies.append((got.at - t0) * 1000)
    finally:
        client.loop_stop()
        client.disconnect()
        server.terminate()
        server.wait(15)
        broker.stop()
        hook.stop()
    return latencies


def mixed_batches(count: int, size: int) -> list[bytes]:
    now = datetime.now(UTC)
    events = [
        event(i + 1, kind, payload.model_dump(mode="json"), now)
        for i, (kind, payload) in enumerate(synthetic.events(count, "mixed"))
    ]
    return [batch(events[i : i + size]) for i in range(0, len(events), size)]


def ingest_rate(work: Path, name: str, batches: list[bytes], events: int, rules: bool) -> float:
    engine = make_engine(f"sqlite:///{work / name}.db")
    migrate(engine)
    # Limits that a sixth of the synthetic records (18.0 to 29.9 °C) are over.
    section = AlertsSection(limits={"default": Limits(temperature_c=(10.0, 28.0))})
    projections = [
        AlertsProjection.configured(section) if isinstance(p, AlertsProjection) else p
        for p in default_projections()
        if rules or not isinstance(p, AlertsProjection)
    ]
    ingest = Ingestor(engine, "fp", projections=projections)
    topic = f"fp/v1/bench/{AGENT}/events"
    started = time.perf_counter()
    for body in batches:
        ingest.handle(topic, body, datetime.now(UTC))
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM climate_records")).scalar_one()
        fired = conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one()
    engine.dispose()
    print(f"# {name}: {stored} records stored, {fired} alerts, {elapsed:.1f} s", flush=True)
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alarms", type=int, default=100)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        work = Path(tmp)
        latencies = sorted(alarm_latency(work, args.alarms))
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        figure("alarm_to_notification_p50_ms", statistics.median(latencies), "ms")
        figure("alarm_to_notification_p99_ms", p99, "ms")
        figure("alarm_to_notification_max_ms", latencies[-1], "ms")

        batches = mixed_batches(args.events, args.batch)
        ingest_rate(work, "warmup", batches[:20], args.batch * 20, rules=True)
        on = off = 0.0
        for n in range(args.rounds):  # alternated, the best of each: less of the machine's noise
            on = max(on, ingest_rate(work, f"rules-on-{n}", batches, args.events, rules=True))
            off = max(off, ingest_rate(work, f"rules-off-{n}", batches, args.events, rules=False))
        figure("rules_eps", on, "events/s")
        figure("rules_off_eps", off, "events/s")
        figure("rules_overhead_ratio", off / on, "ratio")


if __name__ == "__main__":
    main()
