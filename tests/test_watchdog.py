"""systemd supervision over a real NOTIFY_SOCKET: READY, pings, and no pings from a hung agent."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.buses import Buses
from edge_agent.climate.service import ClimateService
from edge_agent.clock import Clock
from edge_agent.config import AgentConfig
from edge_agent.configfile import loads
from edge_agent.drivers.modbus import ModbusBus
from edge_agent.drivers.registers import ReadBlock
from edge_agent.outbox import AsyncOutbox
from edge_agent.watchdog import Watchdog, sd_notify, watchdog_interval
from tests.support import Broker, Processes, eventually, free_port, open_pty_pair, wait_for


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
    await eventually(lambda: notify.messages().count("WATCHDOG=1") >= 3, 10, 0.02)
    assert notify.messages()[0] == "READY=1"
    hang_start = time.monotonic()
    time.sleep(1.0)  # noqa: ASYNC251 - the point: a blocking call hangs the loop
    hang_end = time.monotonic()
    await eventually(lambda: notify.pings_between(hang_end, time.monotonic()) >= 1, 10, 0.02)
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


def dead_station(rtu_device: str, tcp_port: int) -> AgentConfig:
    """One storeroom, one transmitter on an RS485 line where nothing answers, one behind a
    Modbus TCP gateway that is not there (nothing listens on the port)."""
    return loads(
        f"""
[agent]
id = "station-1"
site = "county"
[climate]
poll_interval_s = 1
fault_after_s = 10
[[climate.storerooms]]
id = "no1"
name = "一号库"
product_group = "condoms"
[[buses]]
id = "rs485"
kind = "rtu"
device = "{rtu_device}"
timeout_s = 0.3
retries = 0
[[buses]]
id = "gateway"
kind = "tcp"
host = "127.0.0.1"
port = {tcp_port}
timeout_s = 0.3
retries = 0
[[climate.sensors]]
id = "no1-a"
storeroom = "no1"
bus = "rs485"
address = 1
profile = "rh-t-holding-x10"
[[climate.sensors]]
id = "no1-b"
storeroom = "no1"
bus = "gateway"
address = 2
profile = "rh-t-holding-x10"
""",
        AgentConfig,
    )


@contextlib.asynccontextmanager
async def running(service: ClimateService, dog: Watchdog) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(service.run()), asyncio.create_task(dog.run())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_station_whose_sensors_are_all_dead_is_not_restarted(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """Every sensor fails, for much longer than the climate part's max_age (scaled down here
    with the poll interval, 1 s): the loop waiting on dead sensors is healthy, so the climate
    part keeps beating and systemd keeps getting its pings."""
    pty = open_pty_pair()  # the line's far end: nothing ever answers
    config = dead_station(pty.device, free_port())
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "100000"}
    dog = Watchdog(watchdog_interval(env), env)
    beat = dog.register("climate", max_age_s=2.5)
    outbox = AsyncOutbox(tmp_path / "outbox.db", "station-1")
    await outbox.open()
    buses = Buses(config.buses)
    service = ClimateService(config.climate, buses, outbox, Clock(lambda: True), heartbeat=beat)

    async def faults() -> list[dict[str, object]]:
        bodies = [json.loads(p.body) for p in await outbox.pending(0, 10_000, 10**9)]
        return [b["payload"] for b in bodies if b["kind"] == "climate.sensor_fault"]

    stale_seen: set[str] = set()
    try:
        async with running(service, dog):
            start = time.monotonic()
            async with asyncio.timeout(30):
                # Until both are declared faulty (10 s), then as long again as max_age, twice.
                while len(await faults()) < 2:
                    stale_seen.update(dog.stale())
                    await asyncio.sleep(0.05)
                faulted = time.monotonic()
                while time.monotonic() < faulted + 5.0:
                    stale_seen.update(dog.stale())
                    await asyncio.sleep(0.05)
            end = time.monotonic()
        assert stale_seen == set(), "the climate part went stale while its sensors were dead"
        pings = [t for t, m in notify.received if m == "WATCHDOG=1" and start <= t <= end]
        assert max(b - a for a, b in itertools.pairwise([start, *pings, end])) < 1.0
        reasons = {str(f["sensor"]): f["reason"] for f in await faults()}
        assert reasons == {"no1-a": "no_response", "no1-b": "bus_unavailable"}
    finally:
        await buses.close()
        await outbox.close()
        pty.close()


class HangingBus:
    """A bus whose driver call never returns (a lost future, a wedged adapter)."""

    name = "stuck"

    async def read(self, unit: int, block: ReadBlock) -> Sequence[int]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def write_coil(self, unit: int, coil: int, on: bool, *, urgent: bool = False) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        pass


class HangingBuses(Buses):
    def __init__(self) -> None:
        super().__init__([])

    def __getitem__(self, bus_id: str) -> ModbusBus:
        return HangingBus()


async def test_a_hung_climate_loop_stops_the_heartbeat(tmp_path: Path) -> None:
    config = dead_station("/dev/null", 1)
    dog = Watchdog(None)
    beat = dog.register("climate", max_age_s=1.0)
    outbox = AsyncOutbox(tmp_path / "outbox.db", "station-1")
    await outbox.open()
    service = ClimateService(
        config.climate,
        HangingBuses(),
        outbox,
        Clock(lambda: True),
        heartbeat=beat,
        poll_stuck_after_s=0.5,
    )
    try:
        async with running(service, dog):
            await eventually(lambda: dog.stale() == ["climate"], 10, what="climate stale")
            assert service.stalled(asyncio.get_running_loop().time()) == ["no1-a", "no1-b"]
    finally:
        await outbox.close()
