"""A webhook and SMS-gateway receiver on a real local HTTP port: what the server's alert
channels post to in tests, the benchmark and the demo. It keeps every request, answers 200 (or
500 on a path told to fail), and lets a caller wait for what it expects."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: ``time.monotonic()`` when it arrived.
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    host: str = "127.0.0.1"
    port: int = 0
    #: Paths answered with 500 (a gateway that is down).
    failing: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.path in receiver.failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                with receiver._changed:
                    receiver.received.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    receiver._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the requests are kept, not printed."""

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def at(self, path: str) -> list[Received]:
        with self._changed:
            return [r for r in self.received if r.path == path]

    def wait(self, path: str, count: int, timeout: float = 10.0) -> list[Received]:
        """The first ``count`` requests to ``path``, once they have come; ``TimeoutError`` if
        they do not within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(got := [r for r in self.received if r.path == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(got)} of {count} requests to {path}")
                self._changed.wait(left)
            return got[:count]
