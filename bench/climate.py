"""Climate benchmark: Modbus reads over a pseudo-terminal, a six-sensor cycle, the agent's cost.

Run from the repository root with the project installed::

    python bench/climate.py

Real parts: simulated transmitters on a virtual RS485 cable (two pseudo-terminals, no wire
delay, so the figures are software time), a private Mosquitto, ``edge-server run`` and
``edge-agent run`` as processes.

Figures (``figure: NAME VALUE UNIT``):

- ``register_read_ms``: one FC 03 read of two registers, agent driver to simulator and back,
  including the RTU inter-frame gap at 115200 baud.
- ``six_sensor_cycle_ms``: six transmitters read one after another on one bus at 9600 baud
  (each read followed by the 3.5-character gap, 4 ms at 9600).
- ``agent_rss_mb``: the agent process's peak resident memory while polling six sensors.
- ``agent_cpu_pct``: the agent's CPU share of one core when polling six sensors every 60 s,
  from 10 minutes of polling run 60 times faster (every second for 10 s) plus the agent's idle
  cost measured on its own.
- ``agent_idle_cpu_pct``, ``agent_cpu_s_per_cycle``: the two parts of the above.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchsupport import figure

from edge_agent.drivers.modbus import PymodbusBus, RtuSettings
from edge_agent.drivers.registers import PROFILES, plan_reads
from simulators.broker import Mosquitto
from simulators.sensors import RtuEndpoint, SensorsConfig, SensorSimulator, Transmitter

BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def six(link: Path, baudrate: int) -> SensorsConfig:
    devices = [Transmitter(unit=u, temperature_c=20 + u, humidity_pct=50) for u in range(1, 7)]
    return SensorsConfig(rtu=[RtuEndpoint(link=link, baudrate=baudrate, devices=devices)])


async def driver_figures(work: Path) -> None:
    block = plan_reads(
        [PROFILES["rh-t-holding-x10"].temperature, PROFILES["rh-t-holding-x10"].humidity]
    )[0]
    for baud, name in ((115200, "fast"), (9600, "slow")):
        link = work / f"tty-{name}"
        sim = SensorSimulator(six(link, baud))
        await sim.start()
        bus = PymodbusBus(
            name, RtuSettings(str(link), baud, timeout_s=1.0, retries=0, frame_gap_s=0)
        )
        try:
            await bus.read(1, block)  # open and warm up
            if baud == 115200:
                n = 300
                t0 = time.perf_counter()
                for i in range(n):
                    await bus.read(1 + i % 6, block)
                figure("register_read_ms", (time.perf_counter() - t0) / n * 1000, "ms")
            else:
                cycles = 20
                t0 = time.perf_counter()
                for _ in range(cycles):
                    for unit in range(1, 7):
                        await bus.read(unit, block)
                figure("six_sensor_cycle_ms", (time.perf_counter() - t0) / cycles * 1000, "ms")
        finally:
            await bus.close()
            await sim.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def agent_toml(work: Path, link: Path, broker: int, poll_s: float) -> Path:
    sensors = "\n".join(
        f'[[climate.sensors]]\nid = "s{u}"\nstoreroom = "no{(u + 1) // 2}"\nbus = "rs485"\n'
        f'address = {u}\nprofile = "rh-t-holding-x10"\n'
        for u in range(1, 7)
    )
    rooms = "\n".join(
        f'[[climate.storerooms]]\nid = "no{r}"\nname = "{r}"\nproduct_group = "other"\n'
        for r in (1, 2, 3)
    )
    path = work / f"agent-{poll_s:g}.toml"
    path.write_text(
        f'[agent]\nid = "bench"\nsite = "bench"\ndata_dir = "{work / f"data-{poll_s:g}"}"\n'
        f"[mqtt]\nport = {broker}\n"
        f"[climate]\npoll_interval_s = {poll_s}\nrecord_in_range_s = {min(1800, 30 * poll_s)}\n"
        f'[[buses]]\nid = "rs485"\nkind = "rtu"\ndevice = "{link}"\nbaudrate = 9600\n'
        f"{rooms}\n{sensors}"
    )
    return path


def measure_agent(config: Path, log: Path, warmup_s: float, window_s: float) -> tuple[float, float]:
    """(CPU seconds per second of the window, peak RSS in MB) of a real agent process."""
    with log.open("ab") as out:
        agent = subprocess.Popen(
            [str(BIN / "edge-agent"), "--config", str(config), "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(warmup_s)
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(window_s)
        c1, t1 = cpu_seconds(agent.pid), time.monotonic()
        return (c1 - c0) / (t1 - t0), peak_rss_mb(agent.pid)
    finally:
        agent.terminate()
        agent.wait(10)


async def serve_sensors(link: Path, stop: asyncio.Event) -> None:
    sim = SensorSimulator(six(link, 9600))
    await sim.start()
    await stop.wait()
    await sim.stop()


def agent_figures(work: Path) -> None:
    broker = Mosquitto(work / "broker")
    broker.start()
    link = work / "tty-agent"
    server_toml = work / "server.toml"
    server_toml.write_text(
        f'[database]\nurl = "sqlite:///{work / "server.db"}"\n[mqtt]\nport = {broker.port}\n'
    )
    # The simulator runs in this process, on its own thread and loop, so that the agent's
    # figures are the agent's alone.
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner = loop.create_task(serve_sensors(link, stop))
    thread = threading.Thread(target=lambda: loop.run_until_complete(runner), daemon=True)
    thread.start()
    server = subprocess.Popen(
        [str(BIN / "edge-server"), "--config", str(server_toml), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        idle_rate, _ = measure_agent(
            agent_toml(work, link, broker.port, 60), work / "idle.log", 5, 20
        )
        busy_rate, rss = measure_agent(
            agent_toml(work, link, broker.port, 1), work / "busy.log", 3, 10
        )
        time.sleep(1)
        with sqlite3.connect(work / "server.db") as conn:
            sensors = conn.execute("SELECT count(DISTINCT sensor) FROM climate_records").fetchone()
        if sensors[0] != 6:
            raise RuntimeError(f"the agent recorded {sensors[0]} of 6 sensors; see {work}")
    finally:
        server.terminate()
        server.wait(10)
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        broker.stop()
    per_cycle = max(0.0, busy_rate - idle_rate) * 1.0  # one cycle a second in the busy run
    figure("agent_rss_mb", rss, "MB")
    figure("agent_cpu_pct", (idle_rate + per_cycle / 60) * 100, "%")
    figure("agent_idle_cpu_pct", idle_rate * 100, "%")
    figure("agent_cpu_s_per_cycle", per_cycle, "s")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-climate-") as tmp:
        work = Path(tmp)
        asyncio.run(driver_figures(work))
        agent_figures(work)


if __name__ == "__main__":
    main()
