"""The climate service against simulated transmitters on a real pseudo-terminal RS485 bus."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent import control
from edge_agent.buses import Buses
from edge_agent.climate.service import ClimateService
from edge_agent.clock import Clock
from edge_agent.config import AgentConfig
from edge_agent.configfile import loads
from edge_agent.outbox import AsyncOutbox
from simulators.sensors import RelayBoard, RtuEndpoint, SensorsConfig, SensorSimulator, Transmitter


@dataclass
class Rig:
    sim: SensorSimulator
    service: ClimateService
    outbox: AsyncOutbox
    link: Path

    async def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        bodies = [json.loads(p.body) for p in await self.outbox.pending(0, 100_000, 10**9)]
        return [b for b in bodies if kind is None or b["kind"] == kind]

    async def wait_for(
        self, kind: str, count: int = 1, within_s: float = 20
    ) -> list[dict[str, Any]]:
        async with asyncio.timeout(within_s):
            while len(found := await self.events(kind)) < count:  # noqa: ASYNC110 - polls a file
                await asyncio.sleep(0.1)
        return found

    def coil(self) -> bool:
        return self.sim.relays[f"9@{self.link}"].coils[0]


def agent_config(link: Path) -> AgentConfig:
    return loads(
        f"""
[agent]
id = "station-1"
site = "county"
[climate]
poll_interval_s = 1
record_in_range_s = 3
record_out_of_range_s = 1
fault_after_s = 10
sensor_backoff_max_s = 2
[[climate.storerooms]]
id = "no1"
name = "一号库"
product_group = "condoms"
alarm_output = {{ bus = "rs485", address = 9, coil = 0 }}
[[buses]]
id = "rs485"
kind = "rtu"
device = "{link}"
baudrate = 9600
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
bus = "rs485"
address = 2
profile = "rh-t-holding-x10"
calibration = {{ certificate = "JL-2025-0117", date = "2025-01-10", temperature_offset_c = -0.3 }}
""",
        AgentConfig,
    )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    link = tmp_path / "ttyRS485"
    sim = SensorSimulator(
        SensorsConfig(
            rtu=[
                RtuEndpoint(
                    link=link,
                    devices=[
                        Transmitter(unit=1, name="a", temperature_c=22.0, humidity_pct=50.0),
                        Transmitter(unit=2, name="b", temperature_c=22.3, humidity_pct=50.0),
                    ],
                    relays=[RelayBoard(unit=9)],
                )
            ]
        )
    )
    await sim.start()
    outbox = AsyncOutbox(tmp_path / "outbox.db", "station-1")
    await outbox.open()
    config = agent_config(link)
    buses = Buses(config.buses)
    service = ClimateService(config.climate, buses, outbox, Clock(lambda: True))
    task = asyncio.create_task(service.run())
    yield Rig(sim, service, outbox, link)
    task.cancel()
    async with asyncio.timeout(10):  # the service must stop when asked
        with pytest.raises(asyncio.CancelledError):
            await task
    await buses.close()
    await outbox.close()
    await sim.stop()


async def until(check: Callable[[], bool], within_s: float) -> None:
    """Wait until ``check()`` holds (the simulator's coils change on the bus, not by event)."""
    async with asyncio.timeout(within_s):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def set_temperature(rig: Rig, value: float) -> None:
    for name in ("a", "b"):
        rig.sim.transmitters[name].spec.temperature_c = value


async def test_alarm_sets_the_relay_within_ten_seconds_and_clears(rig: Rig) -> None:
    await rig.wait_for("climate.record", 2)
    assert not rig.coil()
    set_temperature(rig, 33.0)
    await until(rig.coil, 10)
    states = [e["payload"]["state"] for e in await rig.events("climate.state")]
    assert states[-1] == "alarm"
    set_temperature(rig, 22.0)
    await until(lambda: not rig.coil(), 15)
    states = [e["payload"]["state"] for e in await rig.events("climate.state")]
    assert states[-1] == "normal"
    records = await rig.events("climate.record")
    hot = [r for r in records if r["payload"]["temperature_c"] > 30]
    assert hot, "out-of-range readings are recorded"


async def test_silencing_turns_the_output_off_and_is_recorded(rig: Rig) -> None:
    set_temperature(rig, 5.0)
    await until(rig.coil, 10)
    assert await rig.service.silence("no1", "keeper Wang")
    await until(lambda: not rig.coil(), 5)
    (event,) = await rig.events("climate.alarm_silenced")
    assert event["payload"] == {"storeroom": "no1", "by": "keeper Wang"}


async def test_calibration_is_applied_and_raw_values_kept(rig: Rig) -> None:
    records = await rig.wait_for("climate.record", 2)
    b = next(r["payload"] for r in records if r["payload"]["sensor"] == "no1-b")
    assert b["raw_temperature_c"] == pytest.approx(22.3)
    assert b["temperature_c"] == pytest.approx(22.0)
    assert b["calibration"] == "JL-2025-0117"
    assert "calibration_expired" in b["quality"], "the certificate is over a year old"
    (notice,) = await rig.events("climate.calibration")
    assert notice["payload"]["state"] == "expired"


async def test_dead_sensor_is_reported_does_not_stall_the_other_and_recovers(rig: Rig) -> None:
    await rig.wait_for("climate.record", 2)
    rig.sim.set_fault("a", "silent", True)
    before = len(
        [r for r in await rig.events("climate.record") if r["payload"]["sensor"] == "no1-b"]
    )
    (fault,) = await rig.wait_for("climate.sensor_fault", 1, within_s=20)
    assert fault["payload"]["sensor"] == "no1-a"
    after = len(
        [r for r in await rig.events("climate.record") if r["payload"]["sensor"] == "no1-b"]
    )
    assert after - before >= 2, "the healthy sensor went on being recorded"
    rig.sim.set_fault("a", "silent", False)
    (recovered,) = await rig.wait_for("climate.sensor_recovered", 1, within_s=10)
    assert recovered["payload"]["sensor"] == "no1-a"


async def test_nonsense_values_are_not_recorded_and_become_a_fault(rig: Rig) -> None:
    await rig.wait_for("climate.record", 2)
    rig.sim.set_fault("b", "nonsense", True)
    (fault,) = await rig.wait_for("climate.sensor_fault", 1, within_s=20)
    assert "implausible" in fault["payload"]["error"]
    records = await rig.events("climate.record")
    assert all(r["payload"]["temperature_c"] < 60 for r in records)


async def test_unplugged_bus_comes_back(rig: Rig) -> None:
    await rig.wait_for("climate.record", 2)
    rig.sim.set_fault(str(rig.link), "unplug", True)
    await rig.wait_for("climate.sensor_fault", 2, within_s=20)
    rig.sim.set_fault(str(rig.link), "unplug", False)
    await rig.wait_for("climate.sensor_recovered", 2, within_s=15)


async def test_keeper_silences_through_the_control_socket(rig: Rig, tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    server = asyncio.create_task(control.serve(path, rig.service))
    await until(path.exists, 5)
    assert await asyncio.to_thread(control.request, path, "silence no1 Li") == "ok nothing sounding"
    set_temperature(rig, 35.0)
    await until(rig.coil, 10)
    assert await asyncio.to_thread(control.request, path, "silence no1 Li") == "ok silenced"
    await until(lambda: not rig.coil(), 5)
    reply = await asyncio.to_thread(control.request, path, "silence no9")
    assert reply.startswith("error unknown storeroom")
    server.cancel()
