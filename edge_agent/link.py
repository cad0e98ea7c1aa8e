"""The link: carries outbox events to the broker and acknowledgements back.

It knows nothing of what an event means. An event leaves the outbox only when the server says
it has durably stored it (an ``Ack`` with the highest contiguous sequence number), not when the
broker accepts the publish: a broker restart or a server crash then costs a resend, never data.

paho-mqtt runs its network loop on its own thread; its callbacks only hand facts over to the
asyncio loop, where all decisions are taken.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from edge_agent.config import LinkSection, MqttSection
from edge_agent.outbox import AsyncOutbox
from edge_agent.wire import Ack, AgentStatus, Channel, encode, encode_batch, topic

log = logging.getLogger(__name__)

#: How long a gap reported by the server may last before the agent resends from it.
GAP_GRACE_S = 2.0


class Link:
    def __init__(
        self,
        mqtt_config: MqttSection,
        link_config: LinkSection,
        *,
        site: str,
        agent_id: str,
        outbox: AsyncOutbox,
        version: str,
    ) -> None:
        self._mqtt = mqtt_config
        self._cfg = link_config
        self._agent_id = agent_id
        self._outbox = outbox
        self._version = version
        self._started_at = datetime.now(UTC)
        self._topics = {c: topic(mqtt_config.topic_prefix, site, agent_id, c) for c in Channel}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._connected = False
        self._connection_no = 0
        self._server_acked = 0
        self._cursor = 0
        self._in_flight: collections.deque[int] = collections.deque()
        self._last_progress = time.monotonic()
        self._outbox_acked = 0
        self._gap_since: float | None = None
        self._status_due = 0.0
        self.last_reading_at: datetime | None = None
        self._client = self._make_client()

    # --- paho side (network thread) ------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"agent-{self._agent_id}",
            clean_session=True,
        )
        if self._mqtt.username:
            client.username_pw_set(self._mqtt.username, self._mqtt.password)
        offline = AgentStatus(agent_id=self._agent_id, online=False, version=self._version)
        client.will_set(self._topics[Channel.STATUS], encode(offline), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _hand_over(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused connection: %s", reason)
            return
        client.subscribe(self._topics[Channel.ACKS], qos=1)
        self._hand_over(self._connected_changed, True)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._hand_over(self._connected_changed, False)
        if reason.is_failure:
            log.warning("disconnected from broker: %s", reason)

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            ack = Ack.model_validate_json(message.payload)
        except ValidationError as exc:
            log.error("ignoring malformed ack on %s: %s", message.topic, exc)
            return
        if ack.agent_id != self._agent_id:
            log.error("ignoring ack for agent %r on my topic", ack.agent_id)
            return
        self._hand_over(self._on_ack, ack.acked_seq, ack.highest_seq)

    # --- asyncio side ----------------------------------------------------------------------

    def _connected_changed(self, connected: bool) -> None:
        self._connected = connected
        if connected:
            self._connection_no += 1
            log.info("connected to broker %s:%d", self._mqtt.host, self._mqtt.port)
            self._rewind()
            self._status_due = 0.0
        self._wake.set()

    def _on_ack(self, acked_seq: int, highest_seq: int | None) -> None:
        if acked_seq > self._server_acked:
            self._server_acked = acked_seq
            self._last_progress = time.monotonic()
            self._wake.set()
        if highest_seq is not None and highest_seq > acked_seq:
            # The server holds later events but misses one before them: a lost batch (it was
            # published before the server subscribed, say). Resend soon rather than after the
            # full ack timeout; the grace lets batches merely reordered between ingest
            # processes arrive first.
            if self._gap_since is None:
                self._gap_since = time.monotonic()
        else:
            self._gap_since = None

    def _rewind(self) -> None:
        """Send again from the first unacknowledged event."""
        self._cursor = self._server_acked
        self._in_flight.clear()
        self._last_progress = time.monotonic()

    async def _send_status(self) -> None:
        stats = await self._outbox.stats()
        status = AgentStatus(
            agent_id=self._agent_id,
            online=True,
            version=self._version,
            started_at=self._started_at,
            backlog=stats.backlog,
            oldest_unsent_at=stats.oldest_unsent_at,
            last_reading_at=self.last_reading_at,
        )
        self._client.publish(self._topics[Channel.STATUS], encode(status), qos=1, retain=True)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server_acked = self._outbox_acked = (await self._outbox.stats()).acked_seq
        self._rewind()
        self._status_due = 0.0
        self._client.connect_async(self._mqtt.host, self._mqtt.port, self._mqtt.keepalive_s)
        self._client.loop_start()
        try:
            while True:
                await self._step()
                wake = asyncio.ensure_future(self._wake.wait())
                appended = asyncio.ensure_future(self._outbox.appended.wait())
                try:
                    await asyncio.wait({wake, appended}, timeout=1.0, return_when="FIRST_COMPLETED")
                finally:
                    wake.cancel()
                    appended.cancel()
                self._wake.clear()
                self._outbox.appended.clear()
        finally:
            await self._shutdown()

    async def _step(self) -> None:
        if self._server_acked > self._outbox_acked:
            removed = await self._outbox.ack(self._server_acked)
            self._outbox_acked = self._server_acked
            log.debug("acked up to %d, %d events removed", self._server_acked, removed)
        while self._in_flight and self._in_flight[0] <= self._server_acked:
            self._in_flight.popleft()
        if not self._connected:
            return
        now = time.monotonic()
        if now >= self._status_due:
            await self._send_status()
            self._status_due = now + self._cfg.status_interval_s
        if self._gap_since is not None and now - self._gap_since > GAP_GRACE_S:
            log.info("server misses seq %d; resending from there", self._server_acked + 1)
            self._gap_since = None
            self._rewind()
        elif self._in_flight and now - self._last_progress > self._cfg.ack_timeout_s:
            log.warning(
                "no acknowledgement for %.0f s; resending from seq %d",
                now - self._last_progress,
                self._server_acked + 1,
            )
            self._rewind()
        self._cursor = max(self._cursor, self._server_acked)
        while len(self._in_flight) < self._cfg.max_in_flight_batches:
            batch = await self._outbox.pending(
                self._cursor, self._cfg.batch_max_events, self._cfg.batch_max_bytes
            )
            if not batch:
                return
            payload = encode_batch(self._agent_id, datetime.now(UTC), [p.body for p in batch])
            info = self._client.publish(self._topics[Channel.EVENTS], payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("publish failed (%s); will retry", mqtt.error_string(info.rc))
                return
            if not self._in_flight:
                self._last_progress = now
            self._cursor = batch[-1].seq
            self._in_flight.append(batch[-1].seq)

    async def _shutdown(self) -> None:
        offline = AgentStatus(agent_id=self._agent_id, online=False, version=self._version)
        if self._connected:
            info = self._client.publish(
                self._topics[Channel.STATUS], encode(offline), qos=1, retain=True
            )
            try:
                await asyncio.to_thread(info.wait_for_publish, 2.0)
            except (RuntimeError, ValueError) as exc:
                log.warning("could not publish offline status: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
