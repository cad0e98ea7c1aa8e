"""The ingest process: broker -> validate -> store -> acknowledge.

Synchronous on purpose: paho's network thread calls ``on_message``, which commits to the
database before returning, and only then does paho send the PUBACK and we publish the
acknowledgement. Several such processes can share the load through an MQTT shared subscription.
"""

from __future__ import annotations

import logging
import signal
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.wire import Ack, Channel, encode, topic, topic_filter
from server.config import ServerConfig
from server.ingest import Ingestor

log = logging.getLogger(__name__)


class IngestService:
    def __init__(self, config: ServerConfig, engine: sa.Engine) -> None:
        self.config = config
        self.ingestor = Ingestor(engine, config.mqtt.topic_prefix)
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

    def run(self) -> None:
        def stop(_sig: int, _frame: FrameType | None) -> None:
            log.info("server stopping")
            self.client.disconnect()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        m = self.config.mqtt
        self.client.connect_async(m.host, m.port, keepalive=60)
        self.client.loop_forever(retry_first_connection=True)
