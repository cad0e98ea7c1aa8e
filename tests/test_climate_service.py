"""The climate service against simulated transmitters on a real pseudo-terminal RS485 bus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
from tests.support import eventually


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
        found: list[dict[str, Any]] = []

        async def enough() -> bool:
            nonlocal found
            found = await self.events(kind)
            return len(found) >= count

        await eventually(enough, within_s, 0.1, what=f"{count} {kind}")
        return found

    async def wait_state(self, state: str, within_s: float = 10) -> None:
        """Until the room's last ``climate.state`` event is ``state`` (the relay is switched
        before the event is stored, so a test that saw the coil change must wait for it)."""

        async def reached() -> bool:
            states = [e["payload"]["state"] for e in await self.events("climate.state")]
            return bool(states) and states[-1] == state

        await eventually(reached, within_s, 0.1, what=f"room state {state}")

    def coil(self) -> bool:
        return self.sim.relays[f"9@{self.link}"].coils[0]


def agent_config(link: Path, climate: str = "") -> AgentConfig:
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
{climate}
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


@contextlib.asynccontextmanager
async def running_rig(
    tmp_path: Path,
    a: Transmitter | None = None,
    b: Transmitter | None = None,
    climate: str = "",
) -> AsyncIterator[Rig]:
    """Two transmitters (a: unit 1, b: unit 2, calibrated −0.3 °C) and a relay board on one
    RS485 pseudo-terminal, and the climate service reading them."""
    link = tmp_path / "ttyRS485"
    sim = SensorSimulator(
        SensorsConfig(
            rtu=[
                RtuEndpoint(
                    link=link,
                    devices=[
                        a or Transmitter(unit=1, name="a", temperature_c=22.0, humidity_pct=50.0),
                        b or Transmitter(unit=2, name="b", temperature_c=22.3, humidity_pct=50.0),
                    ],
                    relays=[RelayBoard(unit=9)],
                )
            ]
        )
    )
    await sim.start()
    outbox = AsyncOutbox(tmp_path / "outbox.db", "station-1")
    await outbox.open()
    config = agent_config(link, climate)
    buses = Buses(config.buses)
    service = ClimateService(config.climate, buses, outbox, Clock(lambda: True))
    task = asyncio.create_task(service.run())
    try:
        yield Rig(sim, service, outbox, link)
    finally:
        task.cancel()
        # Waited on, not awaited: a task that ignores its cancellation would hold an ``await``
        # (and any timeout round it) forever; here it fails in 10 s, saying so.
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "the climate service did not stop within 10 s of being cancelled"
        with pytest.raises(asyncio.CancelledError):
            task.result()
        await buses.close()
        await outbox.close()
        await sim.stop()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_rig(tmp_path) as r:
        yield r


async def until(check: Callable[[], bool], within_s: float) -> None:
    """Wait until ``check()`` holds (the simulator's coils change on the bus, not by event)."""
    await eventually(check, within_s, 0.1)


def set_temperature(rig: Rig, value: float) -> None:
    for name in ("a", "b"):
        rig.sim.transmitters[name].spec.temperature_c = value


async def test_alarm_sets_the_relay_within_ten_seconds_and_clears(rig: Rig) -> None:
    await rig.wait_for("climate.record", 2)
    assert not rig.coil()
    set_temperature(rig, 33.0)
    await until(rig.coil, 10)
    await rig.wait_state("alarm")
    set_temperature(rig, 22.0)
    await until(lambda: not rig.coil(), 15)
    await rig.wait_state("normal")
    records = await rig.events("climate.record")
    hot = [r for r in records if r["payload"]["temperature_c"] > 30]
    assert hot, "out-of-range readings are recorded"


async def test_silencing_turns_the_output_off_and_is_recorded(rig: Rig) -> None:
    set_temperature(rig, 5.0)
    await until(rig.coil, 10)
    assert await rig.service.silence("no1", "keeper Wang")
    await until(lambda: not rig.coil(), 5)
    (event,) = await rig.wait_for("climate.alarm_silenced")
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
    assert fault["payload"]["reason"] == "no_response"
    assert fault["payload"]["error"] == "no response from unit 1 on bus rs485"
    assert fault["payload"].get("exception_code") is None
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
    assert fault["payload"]["reason"] == "implausible"
    assert "implausible" in fault["payload"]["error"]
    records = await rig.events("climate.record")
    assert all(r["payload"]["temperature_c"] < 60 for r in records)


async def test_unplugged_bus_comes_back(rig: Rig) -> None:
    await rig.wait_for("climate.record", 2)
    rig.sim.set_fault(str(rig.link), "unplug", True)
    faults = await rig.wait_for("climate.sensor_fault", 2, within_s=20)
    assert {f["payload"]["reason"] for f in faults} == {"bus_unavailable"}
    assert {f["payload"]["error"] for f in faults} == {"bus rs485 unavailable"}
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


async def records_of(rig: Rig, sensor: str) -> int:
    return len([r for r in await rig.events("climate.record") if r["payload"]["sensor"] == sensor])


async def test_a_sensor_that_answers_again_is_read_within_one_poll_interval(rig: Rig) -> None:
    """Silent past its fault (where a doubling backoff would wait 16 s or more), then back:
    read and recorded within one poll interval. Counted in polls of the healthy sensor beside
    it (read once an interval), not in wall time, so a loaded machine does not change it."""
    await rig.wait_for("climate.record", 2)
    rig.sim.set_fault("a", "silent", True)
    await rig.wait_for("climate.sensor_fault", 1, within_s=20)
    before = await records_of(rig, "no1-a")
    other = rig.sim.transmitters["b"]
    rig.sim.set_fault("a", "silent", False)
    polls_before = other.reads

    async def recorded() -> bool:
        return await records_of(rig, "no1-a") > before

    await eventually(recorded, 20, what="no1-a recorded again")
    assert other.reads - polls_before <= 2, "read again within one poll interval"
    (recovered,) = await rig.wait_for("climate.sensor_recovered", 1, within_s=1)
    assert recovered["payload"]["sensor"] == "no1-a"


async def test_sensors_read_at_the_same_moment_agree_while_the_room_changes_fast(
    tmp_path: Path,
) -> None:
    """Both transmitters follow the same fast wave (up to 4.7 °C/s). Compared at different
    moments (a's reading with b's from the previous round) they would differ by up to 4 °C;
    read together they agree within the margin, so no disagreement is raised."""
    wave = {"wave_c": 3.0, "wave_period_s": 4.0, "humidity_pct": 50.0}
    async with running_rig(
        tmp_path,
        a=Transmitter(unit=1, name="a", temperature_c=22.0, **wave),
        b=Transmitter(unit=2, name="b", temperature_c=22.3, **wave),
        climate="spike_c_per_min = 10000",
    ) as rig:
        await eventually(lambda: min(t.reads for t in rig.sim.transmitters.values()) >= 12)
        assert await rig.events("climate.disagreement") == []


async def test_a_real_disagreement_is_raised_once_with_the_values_compared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent.climate.service")
    async with running_rig(
        tmp_path,
        b=Transmitter(unit=2, name="b", temperature_c=25.3, humidity_pct=50.0),  # 25.0 corrected
    ) as rig:
        (event,) = await rig.wait_for("climate.disagreement", 1)
        payload = event["payload"]
        assert payload.pop("apart_s") < 1.0, "compared readings were taken together"
        assert payload == {
            "storeroom": "no1",
            "sensors": ["no1-a", "no1-b"],
            "delta_c": 3.0,
            "delta_pct": 0.0,
            "temperatures_c": [22.0, 25.0],
            "humidities_pct": [50.0, 50.0],
        }
        await eventually(lambda: min(t.reads for t in rig.sim.transmitters.values()) >= 6)
        assert len(await rig.events("climate.disagreement")) == 1, "one event per episode"
    (line,) = [r.getMessage() for r in caplog.records if "differ by" in r.getMessage()]
    assert "no1-a (22.0 °C, 50.0 %RH) and no1-b (25.0 °C, 50.0 %RH)" in line
    assert "differ by 3.0 °C" in line


async def test_each_state_event_carries_the_values_of_the_sensor_it_names(rig: Rig) -> None:
    """The room goes into alarm and back with its two sensors reading differently: every
    climate.state event's values are those its named sensor was read at."""
    await rig.wait_for("climate.record", 2)
    rig.sim.transmitters["a"].spec.temperature_c = 33.0
    rig.sim.transmitters["b"].spec.temperature_c = 31.3  # 31.0 corrected
    await until(rig.coil, 10)
    rig.sim.transmitters["a"].spec.temperature_c = 20.0
    rig.sim.transmitters["b"].spec.temperature_c = 21.3  # 21.0 corrected
    await until(lambda: not rig.coil(), 15)
    await rig.wait_state("normal")
    states = await rig.events("climate.state")
    readings = {"no1-a": {33.0, 22.0, 20.0}, "no1-b": {31.0, 22.0, 21.0}}
    for e in states:
        p = e["payload"]
        assert p["temperature_c"] in readings[p["sensor"]], p
