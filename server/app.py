"""The ingest process: broker -> validate -> store -> acknowledge.

Synchronous on purpose: paho's network thread calls ``on_message``, which commits to the
database before returning, and only then does paho send the PUBACK and we publish the
acknowledgement. Several such processes can share the load through an MQTT shared subscription.
The main thread publishes queued commands and pings systemd's watchdog.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.watchdog import sd_notify
from edge_agent.wire import Ack, Channel, encode, topic, topic_filter
from server import commands
from server.config import ServerConfig
from server.ingest import Ingestor

log = logging.getLogger(__name__)


class IngestService:
    def __init__(self, config: ServerConfig, engine: sa.Engine) -> None:
        self.config = config
        self.ingestor = Ingestor(
            engine, config.mqtt.topic_prefix, gap_report_after_s=config.ingest.gap_report_after_s
        )
        m = config.mqtt
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=m.client_id)
        if m.username:
            self.client.username_pw_set(m.username, m.password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _subscriptions(self) -> list[tuple[str, int]]:
        group = f"$share/{self.config.mqtt.shared_group}/"
        prefix = self.config.mqtt.topic_prefix
        return [
            (group + topic_filter(prefix, Channel.EVENTS), 1),
            (group + topic_filter(prefix, Channel.STATUS), 1),
        ]

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused connection: %s", reason)
            return
        log.info("connected to broker %s:%d", self.config.mqtt.host, self.config.mqtt.port)
        client.subscribe(self._subscriptions())

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("disconnected from broker: %s; reconnecting", reason)

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        now = datetime.now(UTC)
        try:
            result = self.ingestor.handle(message.topic, bytes(message.payload), now)
        except sa.exc.SQLAlchemyError as exc:
            # Not acknowledged: the agent sends it again after its ack timeout.
            log.error("cannot store message from %s: %s", message.topic, exc)
            return
        if (
            result.acked_seq is None
            or result.agent_id is None
            or result.site_id is None
            or result.epoch is None
        ):
            return
        if result.stored or result.rejected:
            log.info(
                "agent %s: %d stored, %d duplicate, %d rejected; acked %d",
                result.agent_id,
                result.stored,
                result.duplicates,
                result.rejected,
                result.acked_seq,
            )
        ack = Ack(
            agent_id=result.agent_id,
            epoch=result.epoch,
            acked_seq=result.acked_seq,
            highest_seq=result.highest_seq,
            server_time=now,
        )
        ack_topic = topic(
            self.config.mqtt.topic_prefix, result.site_id, result.agent_id, Channel.ACKS
        )
        client.publish(ack_topic, encode(ack), qos=1, retain=True)

    def publish_due_commands(self) -> int:
        """Send commands still waiting for a result; return how many were sent."""
        now = datetime.now(UTC)
        due = commands.due(
            self.ingestor.engine, self.config.mqtt.topic_prefix, now, self.config.commands.retry_s
        )
        sent = []
        for out in due:
            info = self.client.publish(out.topic, out.payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                sent.append(out.id)
        commands.mark_published(self.ingestor.engine, sent, now)
        return len(sent)

    def run(self) -> None:
        stopping = threading.Event()

        def stop(_sig: int, _frame: FrameType | None) -> None:
            log.info("server stopping")
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        m = self.config.mqtt
        self.client.connect_async(m.host, m.port, keepalive=60)
        self.client.loop_start()
        sd_notify("READY=1")
        try:
            while not stopping.wait(self.config.commands.poll_s):
                if self.client.is_connected():
                    try:
                        self.publish_due_commands()
                    except sa.exc.SQLAlchemyError as exc:
                        log.error("cannot read queued commands: %s", exc)
                sd_notify("WATCHDOG=1")
        finally:
            self.client.disconnect()
            self.client.loop_stop()
