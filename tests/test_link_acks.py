"""The link's acknowledgements against a real outbox, without a broker: what the server acked is
what the outbox records, whenever the acks arrive."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.clock import Clock, Stamp
from edge_agent.config import LinkSection, MqttSection
from edge_agent.link import Link
from edge_agent.outbox import AsyncOutbox
from edge_agent.wire import Ack, AgentStarted, Channel, encode, topic

STAMP = Stamp(datetime(2026, 11, 23, 4, 0, tzinfo=UTC), True, "boot-1", 10.0)


class FakeSession:
    """Takes every publish; the link under test only needs that it went out."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(
        self, topic_: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        self.published.append(topic_)
        info = mqtt.MQTTMessageInfo(len(self.published))
        info.rc = mqtt.MQTT_ERR_SUCCESS
        return info


def ack_message(epoch: str, acked_seq: int) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(topic=topic("fp", "county", "station-1", Channel.ACKS).encode())
    message.payload = encode(
        Ack(agent_id="station-1", epoch=epoch, acked_seq=acked_seq, server_time=datetime.now(UTC))
    )
    return message


def recorded_ack(path: Path) -> int:
    with closing(sqlite3.connect(path, timeout=10)) as conn:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'acked_seq'").fetchone()[0])


async def test_an_ack_arriving_while_the_outbox_records_the_previous_one_is_recorded_too(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    outbox = AsyncOutbox(path, "station-1")
    await outbox.open()
    for _ in range(10):
        await outbox.append("agent.started", AgentStarted(version="x"), STAMP)
    link = Link(
        MqttSection(),
        LinkSection(),
        site="county",
        agent_id="station-1",
        outbox=outbox,
        clock=Clock(lambda: True),
        version="x",
    )
    stats = await outbox.stats()
    link._epoch = stats.epoch
    session: Any = FakeSession()
    real_ack = outbox.ack

    async def ack_meanwhile(acked_seq: int) -> int:
        # The next ack comes in while the outbox is busy writing this one (a slow SD card).
        link._on_message(ack_message(stats.epoch, 10))
        return await real_ack(acked_seq)

    try:
        await link._step(session)  # sends seq 1..10
        link._on_message(ack_message(stats.epoch, 4))
        outbox.ack = ack_meanwhile  # type: ignore[method-assign]
        await link._step(session)
        assert recorded_ack(path) == 4
        outbox.ack = real_ack  # type: ignore[method-assign]
        await link._step(session)  # no new event, no new ack: the later ack is recorded anyway
        assert recorded_ack(path) == 10
        assert (await outbox.stats()).backlog == 0
    finally:
        await outbox.close()
