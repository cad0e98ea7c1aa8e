"""systemd supervision over a real NOTIFY_SOCKET: READY, pings, and no pings from a hung agent."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.watchdog import Watchdog, sd_notify, watchdog_interval
from tests.support import Broker, Processes, wait_for


@dataclass
class NotifySocket:
    """A datagram socket standing in for systemd; records (time, message)."""

    path: Path
    received: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data.decode()))

    def messages(self) -> list[str]:
        return [m for _, m in self.received]

    def pings_between(self, start: float, end: float) -> int:
        return sum(1 for t, m in self.received if m == "WATCHDOG=1" and start < t < end)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    n = NotifySocket(tmp_path / "notify.sock")
    yield n
    n.close()


def test_interval_is_half_the_watchdog_timeout() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_sd_notify_without_systemd_is_a_no_op() -> None:
    assert sd_notify("READY=1", {}) is False


async def test_pings_stop_while_the_event_loop_hangs(notify: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "100000"}
    dog = Watchdog(watchdog_interval(env), env)
    task = asyncio.create_task(dog.run())
    await asyncio.sleep(0.5)
    assert notify.messages()[0] == "READY=1"
    assert notify.messages().count("WATCHDOG=1") >= 3
    hang_start = time.monotonic()
    time.sleep(1.0)  # noqa: ASYNC251 - the point: a blocking call hangs the loop
    hang_end = time.monotonic()
    await asyncio.sleep(0.3)
    task.cancel()
    assert notify.pings_between(hang_start + 0.06, hang_end) == 0
    assert notify.pings_between(hang_end, time.monotonic()) >= 1, "pings resume after the hang"


async def test_pings_stop_when_a_part_stops_beating(notify: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "100000"}
    dog = Watchdog(watchdog_interval(env), env)
    beat = dog.register("climate", max_age_s=0.3)
    task = asyncio.create_task(dog.run())
    for _ in range(5):
        beat()
        await asyncio.sleep(0.1)
    stuck_from = time.monotonic()
    await asyncio.sleep(1.0)  # the loop runs, but the climate part is stuck
    stuck_to = time.monotonic()
    task.cancel()
    assert notify.pings_between(stuck_from, stuck_from + 0.2) >= 1
    assert notify.pings_between(stuck_from + 0.45, stuck_to) == 0
    assert dog.stale() == ["climate"]


def test_agent_process_notifies_ready_pings_and_stopping(
    tmp_path: Path, notify: NotifySocket, broker: Broker, processes: Processes
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nid = "a1"\nsite = "s1"\ndata_dir = "{tmp_path / "data"}"\n'
        f"[mqtt]\nport = {broker.port}\n"
    )
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}
    processes.start("agent", "edge-agent", "--config", str(config), "run", env=env)
    wait_for(lambda: notify.messages().count("WATCHDOG=1") >= 3, 20, what="watchdog pings")
    assert notify.messages()[0] == "READY=1"
    assert processes.stop("agent") == 0
    assert "STOPPING=1" in notify.messages()
