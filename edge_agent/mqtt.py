"""paho-mqtt driven by the asyncio loop: one connection per ``MqttSession``, no paho thread.

paho's socket callbacks register its socket with the event loop (the way aiomqtt does it), so
every paho callback runs on the loop's thread and the agent stays one asyncio program. Only the
blocking TCP connect (and the TLS handshake, when the session has TLS settings) runs in an
executor. Reconnection is the caller's: a session ends with
``wait_closed`` returning, and the link opens a new one after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.tls import describe_connect_error, tls_context

log = logging.getLogger(__name__)


class MqttError(Exception):
    """The connection could not be made or was lost; the message says why."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


MessageHandler = Callable[[mqtt.MQTTMessage], None]


class TlsSettings(Protocol):
    """MQTT over TLS, as the ``[mqtt]`` section of ``agent.toml`` gives it."""

    @property
    def tls(self) -> bool: ...

    @property
    def ca_file(self) -> Path | None: ...


class MqttSession:
    def __init__(
        self,
        *,
        client_id: str,
        host: str,
        port: int,
        keepalive_s: int,
        username: str | None = None,
        password: str | None = None,
        tls: TlsSettings | None = None,
        will: Will | None = None,
        on_message: MessageHandler | None = None,
    ) -> None:
        self._host, self._port, self._keepalive = host, port, keepalive_s
        self._ca_file = tls.ca_file if tls is not None and tls.tls else None
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._misc: asyncio.Task[None] | None = None
        self._on_message = on_message
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if username:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_paho_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        self.client = client

    # --- connection -----------------------------------------------------------------------

    async def connect(self, within_s: float = 10.0) -> None:
        # paho's own socket timeout bounds the blocking connect; the outer wait only guards
        # against a resolver that hangs. A connect that finishes after we gave up finds the
        # session closed and shuts its socket (``_on_socket_open``).
        self.client.connect_timeout = within_s
        try:
            async with asyncio.timeout(3 * within_s):
                await self._loop.run_in_executor(None, self._blocking_connect)
            async with asyncio.timeout(within_s):
                await asyncio.shield(self._connected)
        except TimeoutError as exc:
            self._fail(MqttError("connect timed out"))
            raise MqttError(f"cannot connect to {self._host}:{self._port}: timed out") from exc
        except OSError as exc:
            why = describe_connect_error(exc, tls=self._ca_file is not None)
            self._fail(MqttError(why))
            raise MqttError(f"cannot connect to {self._host}:{self._port}: {why}") from exc
        except MqttError:
            self._abort()
            raise

    def _blocking_connect(self) -> None:
        if self._ca_file is not None:
            try:
                context = tls_context(self._ca_file)
            except OSError as exc:
                raise MqttError(
                    f"TLS: cannot use mqtt.ca_file {self._ca_file}: {describe_connect_error(exc)}"
                ) from None
            self.client.tls_set_context(context)
        self.client.connect(self._host, self._port, self._keepalive)

    def _abort(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self._fail(MqttError("connection abandoned"))

    async def wait_closed(self) -> None:
        """Return when the connection is gone (broker away, keep-alive lost, disconnected)."""
        with contextlib.suppress(MqttError):
            await asyncio.shield(self._closed)

    @property
    def is_connected(self) -> bool:
        return self._connected.done() and not self._closed.done()

    async def close(self) -> None:
        if not self._closed.done():
            self.client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self.wait_closed()
        self._fail(MqttError("closed"))

    def _fail(self, exc: MqttError) -> None:
        if not self._connected.done():
            self._connected.set_exception(exc)
            self._connected.exception()  # mark retrieved
        if not self._closed.done():
            self._closed.set_result(None)
        if self._misc is not None:
            self._misc.cancel()

    # --- operations -----------------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def subscribe(self, topic: str, qos: int = 1) -> None:
        result, _mid = self.client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise MqttError(f"cannot subscribe to {topic}: {mqtt.error_string(result)}")

    # --- paho callbacks (all on the loop's thread, except socket_open during connect) ------

    def _in_loop(self, fn: Callable[..., object], *args: object) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._fail(MqttError(f"broker refused connection: {reason}"))
        elif not self._connected.done():
            self._connected.set_result(None)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._fail(MqttError(f"disconnected: {reason}"))

    def _on_paho_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        if self._on_message is not None:
            self._on_message(message)

    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        pending = getattr(sock, "pending", None)  # a TLS socket's already decrypted bytes

        def readable() -> None:
            try:
                rc = client.loop_read()
                # The loop only hears of bytes still on the socket: read what TLS has buffered.
                while rc == mqtt.MQTT_ERR_SUCCESS and pending is not None and pending() > 0:
                    rc = client.loop_read()
            except OSError as exc:
                self._fail(MqttError(f"read failed: {exc}"))

        def start() -> None:
            if self._closed.done():
                # A connect that finished after the session was given up: close it quietly.
                with contextlib.suppress(Exception):
                    client.disconnect()
                with contextlib.suppress(OSError):
                    sock.close()
                return
            self._loop.add_reader(sock.fileno(), readable)
            self._misc = self._loop.create_task(self._misc_loop())

        self._in_loop(start)

    def _on_socket_close(self, _c: Any, _u: Any, sock: Any) -> None:
        fileno = sock.fileno()
        if fileno > -1:
            self._in_loop(self._loop.remove_reader, fileno)
            self._in_loop(self._loop.remove_writer, fileno)

    def _on_socket_register_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        def writable() -> None:
            try:
                client.loop_write()
            except OSError as exc:
                self._fail(MqttError(f"write failed: {exc}"))

        self._in_loop(self._loop.add_writer, sock.fileno(), writable)

    def _on_socket_unregister_write(self, _c: Any, _u: Any, sock: Any) -> None:
        self._in_loop(self._loop.remove_writer, sock.fileno())

    async def _misc_loop(self) -> None:
        """Keep-alive pings and retries: paho needs ``loop_misc`` about once a second."""
        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:  # noqa: ASYNC110 - paho's timer
            await asyncio.sleep(1)
        self._fail(MqttError("connection lost (keep-alive)"))
