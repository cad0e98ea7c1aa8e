"""Two village boxes, end to end, with real processes: cards issued on the server reach the
agents as ``cards.sync``; swipes on simulated boards and readers (real pseudo-terminals) become
events in the server's store; a quota spent on one box holds on the other once usage has synced;
a lost card, a jam, a power cut mid-vend and a forced door arrive as what they are; and no byte
the agents keep, the broker carries or the server stores holds a card's number."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.cabinet import BoardSettings, BoardSim, ReaderSettings, ReaderSim, SlotSim
from tests.support import BIN, Broker, Processes, eventually, query_sqlite

VILLAGERS = ["04A1B2C3", "04A1B2C4", "04A1B2C5", "04A1B2C6"]
LOST = "04DEAD01"
STRANGER = "04BEEF02"
TECHNICIAN = "0A0B0C0D"
ALL_UIDS = [*VILLAGERS, LOST, STRANGER, TECHNICIAN]
AGENTS = ["village-1", "village-2"]


def agent_toml(root: Path, agent: str, broker: Broker) -> str:
    return f"""
[agent]
id = "{agent}"
site = "{agent}"
data_dir = "{root / agent}"
[mqtt]
port = {broker.port}
[link]
ack_timeout_s = 5
status_interval_s = 1
[[buses]]
id = "board"
kind = "serial"
device = "{root / f"{agent}-board"}"
[[buses]]
id = "reader"
kind = "serial"
device = "{root / f"{agent}-reader"}"
[cabinet]
card_key_file = "{root / "county.key"}"
[[cabinet.products]]
id = "condom-10"
name = "避孕套10只"
group = "condoms"
[[cabinet.boxes]]
id = "box-{agent}"
board = "board"
products = ["condom-10"]
reader = {{ bus = "reader", repeat_window_s = 0.5 }}
[[cabinet.boxes.slots]]
number = 1
product = "condom-10"
capacity = 20
[[cabinet.boxes.slots]]
number = 2
product = "condom-10"
capacity = 20
"""


@dataclass
class County:
    root: Path
    broker: Broker
    processes: Processes
    boards: dict[str, BoardSim] = field(default_factory=dict)
    readers: dict[str, ReaderSim] = field(default_factory=dict)
    heard: list[bytes] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.root / "server.db"

    async def server_cli(self, *args: str) -> str:
        done = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "edge-server"), "--config", str(self.root / "server.toml"), *args],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    async def agent_cli(self, agent: str, *args: str) -> str:
        done = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "edge-agent"), "--config", str(self.root / f"{agent}.toml"), *args],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        return query_sqlite(self.db, sql, *params)

    def payloads(self, kind: str, agent: str | None = None) -> list[dict[str, object]]:
        """Events of ``kind`` as the server's journal holds them (as received)."""
        rows = self.query("SELECT payload FROM messages ORDER BY id")
        found = []
        for (payload,) in rows:
            batch = json.loads(payload)  # type: ignore[arg-type]
            if agent is not None and batch.get("agent_id") != agent:
                continue
            found += [e["payload"] for e in batch["events"] if e["kind"] == kind]
        return found

    async def wait_payloads(
        self, kind: str, count: int = 1, agent: str | None = None, within_s: float = 30
    ) -> list[dict[str, object]]:
        await eventually(
            lambda: len(self.payloads(kind, agent)) >= count,
            within_s=within_s,
            what=f"{count} {kind} at the server",
        )
        return self.payloads(kind, agent)

    def start_agent(self, agent: str) -> None:
        self.processes.start(
            agent, "edge-agent", "--config", str(self.root / f"{agent}.toml"), "run"
        )


@pytest.fixture
async def county(tmp_path: Path, broker: Broker, processes: Processes) -> AsyncIterator[County]:
    c = County(tmp_path, broker, processes)
    (tmp_path / "server.toml").write_text(
        f"""
[database]
url = "sqlite:///{c.db}"
[mqtt]
port = {broker.port}
[cards]
key_file = "{tmp_path / "county.key"}"
sync_interval_s = 1
"""
    )
    for agent in AGENTS:
        (tmp_path / f"{agent}.toml").write_text(agent_toml(tmp_path, agent, broker))
        board = BoardSim(
            BoardSettings(
                link=tmp_path / f"{agent}-board",
                turn_s=0.1,
                event_retry_s=0.1,
                state_file=tmp_path / f"{agent}-board.json",
                slots=[SlotSim(label="condom-10", capacity=20, count=5)] * 2,
            )
        )
        board.start()
        reader = ReaderSim(ReaderSettings(link=tmp_path / f"{agent}-reader"))
        reader.start()
        c.boards[agent], c.readers[agent] = board, reader

    sniffer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sniffer")
    sniffer.on_message = lambda client, userdata, msg: c.heard.append(
        msg.topic.encode() + msg.payload
    )
    sniffer.connect("127.0.0.1", broker.port)
    sniffer.subscribe("#", qos=1)
    sniffer.loop_start()
    try:
        yield c
    finally:
        sniffer.loop_stop()
        sniffer.disconnect()
        processes.stop_all()
        for board in c.boards.values():
            await board.stop()
        for reader in c.readers.values():
            await reader.stop()


async def issue_cards(c: County) -> None:
    await c.server_cli("db", "upgrade")
    await c.server_cli("cards", "make-key", "--out", str(c.root / "county.key"))
    (c.root / "county.key").chmod(0o600)
    for uid in [*VILLAGERS, LOST]:
        await c.server_cli("cards", "issue", "--uid", uid)
    await c.server_cli("cards", "issue", "--uid", TECHNICIAN, "--role", "technician")
    await c.server_cli("cards", "lost", "--uid", LOST)


async def start(c: County) -> None:
    await issue_cards(c)
    c.processes.start("server", "edge-server", "--config", str(c.root / "server.toml"), "run")
    for agent in AGENTS:
        c.start_agent(agent)
    version = int(c.query("SELECT max(version) FROM card_changes")[0][0])  # type: ignore[call-overload]

    def synced() -> bool:
        rows = c.query("SELECT agent_id, status FROM agents")
        held = {a: json.loads(s).get("cards_version") for a, s in rows if s}  # type: ignore[arg-type]
        return all(held.get(a) == version for a in AGENTS)

    await eventually(synced, within_s=60, what="the registry on both agents")
    for agent in AGENTS:
        for slot in (1, 2):
            await c.agent_cli(
                agent,
                "cabinet",
                "restock",
                f"box-{agent}",
                str(slot),
                "B2026-07",
                "2029-06-30",
                "5",
            )


async def test_two_boxes_a_day_of_villagers_end_to_end(county: County) -> None:
    c = county
    await start(c)
    one, two = AGENTS
    reader1, reader2 = c.readers[one], c.readers[two]

    # A villager takes at box 1; the server has it, with the card's pseudonym only.
    reader1.swipe(VILLAGERS[0])
    (first,) = await c.wait_payloads("cabinet.dispense", agent=one)
    assert first["slot"] == 1
    assert len(str(first["card"])) == 64

    # Her take reaches box 2 as usage; there her quota is spent.
    def usage_reached_two() -> bool:
        rows = c.query(
            "SELECT 1 FROM commands WHERE agent_id = ? AND kind = 'cards.usage' AND result_ok", two
        )
        return bool(rows)

    await eventually(usage_reached_two, within_s=30, what="usage synced to the second box")
    reader2.swipe(VILLAGERS[0])
    (refused,) = await c.wait_payloads("cabinet.refused", agent=two)
    assert refused["reason"] == "quota"
    assert c.boards[two].truth.total_dropped() == 0

    # A lost card and an unregistered one are refused, each with its reason.
    reader1.swipe(LOST)
    await c.wait_payloads("cabinet.refused", agent=one)
    await eventually(lambda: not c.boards[one].vending, what="box 1 idle")
    reader1.swipe(STRANGER)
    reasons = [r["reason"] for r in await c.wait_payloads("cabinet.refused", 2, agent=one)]
    assert reasons == ["lost", "unregistered"]

    # A jam costs nothing; the other slot delivers.
    c.boards[one].jam(1)
    reader1.swipe(VILLAGERS[1])
    await c.wait_payloads("cabinet.dispense", 2, agent=one)
    (failed,) = await c.wait_payloads("cabinet.vend_failed", agent=one)
    assert (failed["reason"], failed["next_slot"]) == ("jammed", 2)

    # Power cut mid-vend at box 2: the agent dies with it and, back, asks instead of vending.
    c.boards[two].power_loss_mid_vend()
    reader2.swipe(VILLAGERS[2])
    await eventually(lambda: not c.boards[two].powered, what="box 2 without power")
    c.processes.stop(two, sig=9)
    c.boards[two].power_on()
    c.start_agent(two)
    (unknown,) = await c.wait_payloads("cabinet.vend_unknown", agent=two)
    assert (unknown["reason"], unknown["recovered"]) == ("interrupted", True)
    assert len(c.boards[two].truth.vends) == 1

    # A forced door raises tamper.
    c.boards[one].door_open(force=True)
    (tamper,) = await c.wait_payloads("cabinet.tamper", agent=one)
    assert tamper["reason"] == "door_without_card"

    # Every unit that fell is recorded once, and nothing else is.
    fell = sum(b.truth.total_dropped() for b in c.boards.values())
    dispensed = c.payloads("cabinet.dispense")
    assert len(dispensed) == fell == 2
    assert len({d["transaction"] for d in dispensed}) == 2
    boxes = await c.server_cli("boxes")
    assert "box-village-1" in boxes

    # No form of any card number in what the agents keep, the broker carried or the server stores.
    secrets = [form for uid in ALL_UIDS for form in forms(uid)]
    kept = [
        p
        for p in c.root.rglob("*")
        if p.is_file() and (p.name.startswith("outbox") or p.name.startswith("server.db"))
    ]
    assert any(p.name == "server.db" for p in kept)
    assert [(p.name, s) for p in kept for s in secrets if s in p.read_bytes()] == []
    assert c.heard
    assert [s for s in secrets for message in c.heard if s in message] == []
    for name in ["server", *AGENTS]:
        log = c.processes.log(name)
        assert [s for s in secrets if s in log.encode()] == [], name
        assert "Traceback" not in log, log


def forms(uid: str) -> list[bytes]:
    raw = bytes.fromhex(uid)
    return [uid.upper().encode(), uid.lower().encode(), raw, raw[::-1], raw[::-1].hex().encode()]
