"""The link: carries outbox events to the broker and acknowledgements back.

It knows nothing of what an event means. An event leaves the outbox only when the server says
it has durably stored it (an ``Ack`` with the highest contiguous sequence number of this
outbox's epoch), not when the broker accepts the publish: a broker restart or a server crash
then costs a resend, never data.

The link supervises its own connection: any failure, expected (broker gone, keep-alive lost) or
not (a bug), ends the session, and a new one is opened after a capped exponential backoff with
jitter, so a hundred boxes that lost the same broker do not all knock at once, and capped low
(``link.reconnect_max_s``, 8 s) so the backlog moves within seconds of the broker's return.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from pydantic import BaseModel, ValidationError

from edge_agent.clock import Clock
from edge_agent.config import LinkSection, MqttSection
from edge_agent.mqtt import MqttError, MqttSession, Will
from edge_agent.outbox import AsyncOutbox
from edge_agent.wire import (
    Ack,
    AgentStatus,
    Channel,
    Command,
    CommandEnvelope,
    Nack,
    ServerStatus,
    encode,
    encode_batch,
    server_topic,
    topic,
)

log = logging.getLogger(__name__)

#: How long a gap reported by the server may last before the agent resends from it.
GAP_GRACE_S = 2.0
#: A session that lasted this long resets the reconnect backoff.
STABLE_SESSION_S = 30.0


def backoff(attempt: int, lo: float, hi: float, rng: Callable[[], float] = random.random) -> float:
    """Delay before reconnect ``attempt`` (0-based): a cap doubling from ``lo`` to ``hi`` and a
    delay drawn evenly between ``lo / 2`` and the cap ("full jitter"), so five thousand agents
    that lost one broker spread their returns over the whole window instead of knocking in
    step, and none waits longer than ``hi`` once the broker is back."""
    cap = min(hi, lo * 2.0 ** min(attempt, 30))
    floor = min(lo / 2, cap)
    return floor + rng() * (cap - floor)


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], payload: bytes | bytearray, what: str) -> M | None:
    """A message from the broker, or None (logged) if it is not a valid ``model``."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        log.error("ignoring malformed %s: %s", what, exc)
        return None


class Link:
    def __init__(
        self,
        mqtt_config: MqttSection,
        link_config: LinkSection,
        *,
        site: str,
        agent_id: str,
        outbox: AsyncOutbox,
        clock: Clock,
        version: str,
        on_command: Callable[[Command], Coroutine[Any, Any, None]] | None = None,
        on_bad_command: Callable[[CommandEnvelope, str], Coroutine[Any, Any, None]] | None = None,
        heartbeat: Callable[[], None] = lambda: None,
        cards_version: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._mqtt = mqtt_config
        self._cfg = link_config
        self._agent_id = agent_id
        self._outbox = outbox
        self._clock = clock
        self._version = version
        self._on_command = on_command
        self._on_bad_command = on_bad_command
        self._heartbeat = heartbeat
        self._cards_version = cards_version
        self._started_at = datetime.now(UTC)
        self._topics = {c: topic(mqtt_config.topic_prefix, site, agent_id, c) for c in Channel}
        self._servers_topic = server_topic(mqtt_config.topic_prefix)
        self._wake = asyncio.Event()
        self._session: MqttSession | None = None
        self._epoch = ""
        self._server_acked = 0
        self._outbox_acked = 0
        self._cursor = 0
        self._in_flight: collections.deque[int] = collections.deque()
        self._last_progress = time.monotonic()
        self._gap_since: float | None = None
        self._status_due = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_reading_at: datetime | None = None
        #: Why the last session failed, for people (a rolled-back configuration says it).
        self.last_error: str | None = None
        self.connected = asyncio.Event()

    # --- supervision ------------------------------------------------------------------------

    async def run(self) -> None:
        stats = await self._outbox.stats()
        self._epoch = stats.epoch
        self._server_acked = self._outbox_acked = stats.acked_seq
        attempt = 0
        while True:
            session = MqttSession(
                client_id=f"agent-{self._agent_id}",
                host=self._mqtt.host,
                port=self._mqtt.port,
                keepalive_s=self._mqtt.keepalive_s,
                username=self._mqtt.username,
                password=self._mqtt.password,
                tls=self._mqtt,
                will=Will(self._topics[Channel.STATUS], encode(self._status(online=False))),
                on_message=self._on_message,
            )
            started = time.monotonic()
            try:
                await session.connect()
                log.info("connected to broker %s:%d", self._mqtt.host, self._mqtt.port)
                await self._serve(session)
            except MqttError as exc:
                self.last_error = str(exc)
                log.warning("broker link: %s", exc)
            except asyncio.CancelledError:
                await self._say_offline(session)
                raise
            except Exception:  # supervision: a bug in one session must not end the link
                log.exception("broker link failed; starting a new session")
            finally:
                self._session = None
                self.connected.clear()
                await session.close()
            if time.monotonic() - started > STABLE_SESSION_S:
                attempt = 0  # a session that lasted was a success; start backing off afresh
            delay = backoff(attempt, self._cfg.reconnect_min_s, self._cfg.reconnect_max_s)
            attempt += 1
            log.info("reconnecting in %.1f s", delay)
            await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._heartbeat()
            await asyncio.sleep(min(1.0, left))

    async def _serve(self, session: MqttSession) -> None:
        session.subscribe(self._topics[Channel.ACKS], qos=1)
        session.subscribe(self._topics[Channel.COMMANDS], qos=1)
        session.subscribe(self._servers_topic, qos=1)
        self._session = session
        self.connected.set()
        self._rewind()
        self._status_due = 0.0
        closed = asyncio.ensure_future(session.wait_closed())
        try:
            while not closed.done():
                self._heartbeat()
                await self._step(session)
                wake = asyncio.ensure_future(self._wake.wait())
                appended = asyncio.ensure_future(self._outbox.appended.wait())
                try:
                    await asyncio.wait(
                        {wake, appended, closed}, timeout=1.0, return_when="FIRST_COMPLETED"
                    )
                finally:
                    wake.cancel()
                    appended.cancel()
                self._wake.clear()
                self._outbox.appended.clear()
        finally:
            closed.cancel()
        raise MqttError("connection closed")

    async def _say_offline(self, session: MqttSession) -> None:
        if not session.is_connected:
            return
        info = session.publish(
            self._topics[Channel.STATUS], encode(self._status(online=False)), retain=True
        )
        deadline = time.monotonic() + 2.0
        while not info.is_published() and time.monotonic() < deadline:  # noqa: ASYNC110 - paho offers no awaitable
            await asyncio.sleep(0.05)

    # --- incoming ---------------------------------------------------------------------------

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._topics[Channel.ACKS]:
            self._on_ack_message(message)
        elif message.topic == self._topics[Channel.COMMANDS]:
            self._on_command_message(message)
        elif mqtt.topic_matches_sub(self._servers_topic, message.topic):
            self._on_server_status(message)

    def _on_server_status(self, message: mqtt.MQTTMessage) -> None:
        """A server that comes back online gets what is unacknowledged at once, not after
        ``ack_timeout_s``: what it missed while down may not all have waited at the broker."""
        if not message.payload:
            return
        status = _parse(ServerStatus, message.payload, "server status")
        if status is None:
            return
        if not status.online:
            log.info("server %s is offline", status.server_id)
        elif not message.retain:  # a live announcement, not the one kept from before we came
            log.info("server %s is back online; resending what is unacknowledged", status.server_id)
            self._rewind()
            self._wake.set()

    def _on_ack_message(self, message: mqtt.MQTTMessage) -> None:
        if b'"nack"' in message.payload:
            self._on_nack_message(message)
            return
        ack = _parse(Ack, message.payload, "ack")
        if ack is None:
            return
        if ack.agent_id != self._agent_id:
            log.error("ignoring ack for agent %r on my topic", ack.agent_id)
            return
        if not message.retain:
            self._clock.adopt(ack.server_time)
        if ack.epoch != self._epoch:
            log.info("ignoring ack of outbox epoch %s (mine is %s)", ack.epoch, self._epoch)
            return
        if ack.acked_seq > self._server_acked:
            self._server_acked = ack.acked_seq
            self._last_progress = time.monotonic()
            self._wake.set()
        highest = ack.highest_seq
        if highest is not None and highest > ack.acked_seq and ack.acked_seq < self._cursor:
            # The server holds later events but misses one before them that this agent has
            # sent: a lost batch (published before the server subscribed, say). Resend soon
            # rather than after the full ack timeout; the grace lets batches merely reordered
            # between ingest processes arrive first. Numbers beyond what was sent are not ours
            # (a forged or cloned sender's) and never cause a resend.
            if self._gap_since is None:
                self._gap_since = time.monotonic()
        else:
            self._gap_since = None

    def _on_nack_message(self, message: mqtt.MQTTMessage) -> None:
        nack = _parse(Nack, message.payload, "nack")
        if nack is None:
            return
        if nack.agent_id != self._agent_id or (nack.epoch and nack.epoch != self._epoch):
            return
        if nack.message:
            log.error("server refused a whole message: %s", nack.message)
        if nack.refused:
            first = nack.refused[0]
            log.error(
                "server refused %d events, first seq %s (%s): %s",
                len(nack.refused),
                first.seq,
                first.code,
                first.reason,
            )
        mine = [
            (r.seq, r.id, r.reason)
            for r in nack.refused
            if r.code == "malformed"
            and r.seq is not None
            and r.id is not None
            and self._server_acked < r.seq <= self._cursor
        ]
        if mine:
            self._spawn(self._replace_refused(mine))

    async def _replace_refused(self, refusals: list[tuple[int, uuid.UUID, str]]) -> None:
        replaced = 0
        for seq, event_id, reason in refusals:
            if await self._outbox.replace_refused(seq, event_id, reason, self._clock.stamp()):
                log.warning("event seq %d replaced by agent.event_refused", seq)
                replaced += 1
            else:
                log.warning("refusal of seq %d is not about this agent's event; ignored", seq)
        if replaced:
            self._rewind()
            self._wake.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._command_done)

    def _on_command_message(self, message: mqtt.MQTTMessage) -> None:
        try:
            command = Command.model_validate_json(message.payload)
        except ValidationError as exc:
            self._on_invalid_command(bytes(message.payload), exc)
            return
        if command.agent_id != self._agent_id:
            log.error("ignoring command %s addressed to %r", command.id, command.agent_id)
            return
        if self._on_command is not None:
            self._spawn(self._on_command(command))

    def _on_invalid_command(self, payload: bytes, exc: ValidationError) -> None:
        try:
            envelope = CommandEnvelope.model_validate_json(payload)
        except ValidationError:
            log.error("ignoring malformed command: %s", exc)
            return
        if envelope.agent_id != self._agent_id:
            log.error("ignoring command %s addressed to %r", envelope.id, envelope.agent_id)
            return
        errors = exc.errors()
        unknown = any(e["type"] == "union_tag_invalid" for e in errors)
        reason = (
            f"unsupported command kind {envelope.kind!r}"
            if unknown
            else "invalid command: " + "; ".join(str(e["msg"]) for e in errors[:3])
        )
        log.error("command %s: %s", envelope.id, reason)
        if self._on_bad_command is not None:
            self._spawn(self._on_bad_command(envelope, reason[:1000]))

    def _command_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task of the link failed", exc_info=task.exception())

    # --- outgoing ---------------------------------------------------------------------------

    def _rewind(self) -> None:
        """Send again from the first unacknowledged event."""
        self._cursor = self._server_acked
        self._in_flight.clear()
        self._last_progress = time.monotonic()

    def _status(self, online: bool) -> AgentStatus:
        return AgentStatus(
            agent_id=self._agent_id, online=online, epoch=self._epoch or None, version=self._version
        )

    async def _send_status(self, session: MqttSession) -> None:
        stats = await self._outbox.stats()
        status = AgentStatus(
            agent_id=self._agent_id,
            online=True,
            epoch=self._epoch or None,
            version=self._version,
            started_at=self._started_at,
            backlog=stats.backlog,
            oldest_unsent_at=stats.oldest_unsent_at,
            last_reading_at=self.last_reading_at,
            compacted=stats.compacted_total,
            storage=self._outbox.storage,
            clock=self._clock.source,
            cards_version=self._cards_version(),
        )
        session.publish(self._topics[Channel.STATUS], encode(status), retain=True)

    async def _step(self, session: MqttSession) -> None:
        if self._outbox.storage == "disk_full":
            await self._outbox.flush_held()
        if self._server_acked > self._outbox_acked:
            # Acks keep arriving while the outbox writes: record only what was written, so a
            # later ack that came meanwhile is written at the next step, not taken as done.
            acked = self._server_acked
            removed = await self._outbox.ack(acked)
            self._outbox_acked = max(self._outbox_acked, acked)
            log.debug("acked up to %d, %d events removed", acked, removed)
        while self._in_flight and self._in_flight[0] <= self._server_acked:
            self._in_flight.popleft()
        now = time.monotonic()
        if now >= self._status_due:
            await self._send_status(session)
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
            payload = encode_batch(
                self._agent_id, self._epoch, datetime.now(UTC), [p.body for p in batch]
            )
            info = session.publish(self._topics[Channel.EVENTS], payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise MqttError(f"publish failed: {mqtt.error_string(info.rc)}")
            if not self._in_flight:
                self._last_progress = now
            self._cursor = batch[-1].last_seq
            self._in_flight.append(batch[-1].last_seq)
