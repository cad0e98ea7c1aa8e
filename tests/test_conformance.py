"""A vendor's agent, written from ``docs/protocol.md`` and ``docs/wire-schema.json`` alone.

It uses paho-mqtt and the exported JSON Schema, never ``edge_agent``, and goes through what a
box or sensor vendor's firmware must do against a real server and a real, secured Mosquitto:
connect, batches, acknowledgement, a resend, a gap, a refusal, a command and a new epoch. Every
message it sends and receives is checked against the schema.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.site import Site
from tests.support import Processes, wait_for

SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "wire-schema.json").read_text())
AGENT = "vendor-1"
BASE = f"fp/v1/county/{AGENT}"


def check(message: str, data: dict[str, Any]) -> None:
    jsonschema.validate(data, SCHEMA["messages"][message])


def now() -> str:
    return datetime.now(UTC).isoformat()


class VendorAgent:
    """What the protocol asks of a device, kept as plain as firmware would keep it."""

    def __init__(self, port: int, password: str) -> None:
        self.epoch = uuid.uuid4().hex
        self.seq = 0
        self.sent: dict[int, dict[str, Any]] = {}
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"agent-{AGENT}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self.client.username_pw_set(AGENT, password)
        will = {"v": 1, "agent_id": AGENT, "online": False}
        self.client.will_set(f"{BASE}/status", json.dumps(will), qos=1, retain=True)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.subscribe([(f"{BASE}/acks", 1), (f"{BASE}/commands", 1), ("fp/v1/server/+", 1)])
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        if not message.payload:
            return
        data = json.loads(message.payload)
        if message.topic.endswith("/commands"):
            check("Command", data)
            kind = "Command"
        elif message.topic.startswith("fp/v1/server/"):
            check("ServerStatus", data)
            kind = "ServerStatus"
        elif data.get("nack"):
            check("Nack", data)
            kind = "Nack"
        else:
            check("Ack", data)
            kind = "Ack"
        with self.lock:
            self.received.append((kind, data))

    def publish(self, channel: str, data: dict[str, Any] | bytes, retain: bool = False) -> None:
        payload = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.client.publish(f"{BASE}/{channel}", payload, qos=1, retain=retain).wait_for_publish(5)

    def status(self) -> None:
        status = {"v": 1, "agent_id": AGENT, "online": True, "epoch": self.epoch, "version": "v9"}
        check("AgentStatus", status)
        self.publish("status", status, retain=True)

    def event(self, kind: str, payload: dict[str, Any], seq: int | None = None) -> dict[str, Any]:
        """Number an event (the next seq unless given) and keep it until acknowledged."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        event = {
            "id": str(uuid.uuid4()),
            "agent_id": AGENT,
            "seq": seq,
            "kind": kind,
            "occurred_at": now(),
            "clock_synced": True,
            "boot_id": "none",  # no Linux: a constant, with mono_s counted from power-on
            "mono_s": 12.0,
            "payload": payload,
        }
        self.sent[seq] = event
        return event

    def reading(self, t: float = 21.0, humidity: float = 50.0) -> dict[str, Any]:
        return self.event(
            "climate.record",
            {
                "storeroom": "no1",
                "sensor": "no1-a",
                "temperature_c": t,
                "humidity_pct": humidity,
                "raw_temperature_c": t,
                "raw_humidity_pct": humidity,
            },
        )

    def send(self, events: list[dict[str, Any]], checked: bool = True) -> None:
        batch = {"v": 1, "agent_id": AGENT, "epoch": self.epoch, "sent_at": now(), "events": events}
        if checked:
            check("EventBatch", batch)
        self.publish("events", batch)

    def expect(self, kind: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            with self.lock:
                return next((d for k, d in self.received if k == kind and match(d)), None)

        return wait_for(found, 20, what=f"a {kind} as expected")

    def acked(self, seq: int, highest: int | None = None) -> dict[str, Any]:
        return self.expect(
            "Ack",
            lambda a: (
                a["epoch"] == self.epoch
                and a["acked_seq"] == seq
                and (highest is None or a.get("highest_seq") == highest)
            ),
        )

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def site(tmp_path: Path, processes: Processes) -> Iterator[Site]:
    s = Site(tmp_path, processes, agents=[AGENT])
    yield s
    processes.stop_all()
    s.broker.stop()


def test_a_vendor_agent_from_the_docs_alone(site: Site) -> None:
    site.start_server()
    box = VendorAgent(site.broker.port, site.passwords[AGENT])
    try:
        box.expect("ServerStatus", lambda s: s["online"] is True)
        box.status()

        # Batches and their acknowledgement; a new outbox begins with agent.started.
        box.send(
            [box.event("agent.started", {"version": "v9"})] + [box.reading() for _ in range(4)]
        )
        box.acked(5)

        # A resend (no acknowledgement seen, say) is harmless: counted as a duplicate.
        box.send([box.sent[4], box.sent[5]])
        box.acked(5)

        # A lost batch: the server holds 8..10, acknowledges 5 and says it has up to 10.
        lost = [box.reading(), box.reading()]
        box.send([box.reading() for _ in range(3)])
        box.acked(5, highest=10)
        box.send(lost)
        box.acked(10)

        # A refusal names the event; the agent puts agent.event_refused in its place.
        bad = box.reading(humidity=250.0)
        box.send([bad], checked=False)  # a firmware bug: its own check would have caught it
        nack = box.expect("Nack", lambda n: any(r["seq"] == bad["seq"] for r in n["refused"]))
        [refusal] = nack["refused"]
        assert (refusal["id"], refusal["code"]) == (bad["id"], "malformed")
        stand_in = box.event(
            "agent.event_refused",
            {"refused_id": bad["id"], "refused_kind": bad["kind"], "reason": refusal["reason"]},
            seq=bad["seq"],
        )
        box.send([stand_in])
        box.acked(bad["seq"])
        box.publish("events", b"this is not json")
        box.expect("Nack", lambda n: "not an event batch" in (n.get("message") or ""))

        # A command is answered with a command.result event, once.
        cid = site.server_cli("command", "send", AGENT, "ping").strip()
        command = box.expect("Command", lambda c: c["id"] == cid)
        result = {
            "command_id": cid,
            "command_kind": command["body"]["kind"],
            "ok": True,
            "detail": "pong",
        }
        box.send([box.event("command.result", result)])
        box.acked(box.seq)
        wait_for(
            lambda: site.query("SELECT result_ok FROM commands WHERE id = ?", cid) == [(1,)],
            20,
            what="the command's result stored",
        )

        # A new outbox (reinstalled firmware): a new epoch that announces itself at seq 1 and
        # is acknowledged on its own; adopted once the old epoch has been silent a while.
        old_epoch = box.epoch
        box.epoch, box.seq = uuid.uuid4().hex, 0
        box.status()
        box.send([box.event("agent.started", {"version": "v10"}), box.reading()])
        box.acked(2)
        primary = (
            "SELECT s.epoch FROM agents a JOIN streams s ON s.id = a.primary_stream "
            "WHERE a.agent_id = ?"
        )
        assert site.query(primary, AGENT) == [(old_epoch,)]
        wait_for(lambda: site.query(primary, AGENT) == [(box.epoch,)], 30, what="epoch adopted")
        # Nothing of the old epoch is known lost; only its unknowable tail after seq 12 is noted.
        lost_sql = "SELECT from_seq, to_seq FROM lost_ranges WHERE epoch = ?"
        assert site.query(lost_sql, old_epoch) == [(13, None)]
    finally:
        box.close()
