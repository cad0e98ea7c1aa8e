"""The simulator behaves like real devices on a real wire, and the agent's driver says what
happened in a reason code: every behaviour over Modbus TCP and over RTU on pseudo-terminals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import pytest

from edge_agent.drivers.modbus import (
    LIBRARY_LOGGER,
    DeviceError,
    DriverError,
    PymodbusBus,
    RtuSettings,
    TcpSettings,
)
from edge_agent.drivers.registers import (
    PROFILES,
    FunctionCode,
    ReadBlock,
    plan_reads,
    read_values,
)
from simulators.environment import ScenarioEvent
from simulators.sensors import (
    LAYOUTS,
    ProfileName,
    RelayBoard,
    RtuEndpoint,
    SensorsConfig,
    SensorSimulator,
    TcpEndpoint,
    Transmitter,
    serve,
)
from tests.support import Processes, free_port, wait_for

#: One transmitter of every family, with fixed values, and a relay board.
VALUES: dict[ProfileName, tuple[int, float, float]] = {
    "rh-t-holding-x10": (1, -3.4, 55.5),
    "t-rh-input-x10": (2, 31.2, 80.1),
    "float32-cdab-holding": (3, 18.25, 63.5),
}
RELAY = 9
ABSENT = 5


def transmitters() -> list[Transmitter]:
    return [
        Transmitter(unit=unit, name=profile, profile=profile, temperature_c=t, humidity_pct=rh)
        for profile, (unit, t, rh) in VALUES.items()
    ]


def rtu_config(link: Path) -> SensorsConfig:
    return SensorsConfig(
        rtu=[RtuEndpoint(link=link, devices=transmitters(), relays=[RelayBoard(unit=RELAY)])]
    )


@dataclass
class Rig:
    transport: str
    sim: SensorSimulator
    bus: PymodbusBus


@pytest.fixture(autouse=True)
def library_log_level() -> Iterator[None]:
    """The driver sets pymodbus's log level (process-wide); put it back after each test."""
    logger = logging.getLogger(LIBRARY_LOGGER)
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(params=["tcp", "rtu"])
async def rig(
    request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Rig]:
    """The simulator and the agent's bus, with every log line captured (DEBUG included, so the
    simulator's side of pymodbus shows whatever it logs)."""
    caplog.set_level(logging.DEBUG)
    settings: TcpSettings | RtuSettings
    if request.param == "tcp":
        port = free_port()
        config = SensorsConfig(
            tcp=[TcpEndpoint(port=port, devices=transmitters(), relays=[RelayBoard(unit=RELAY)])]
        )
        settings = TcpSettings("127.0.0.1", port, timeout_s=0.5, retries=0)
    else:
        link = tmp_path / "ttyRS485"
        config = rtu_config(link)
        settings = RtuSettings(str(link), 9600, timeout_s=0.5, retries=0)
    sim = SensorSimulator(config)
    await sim.start()
    bus = PymodbusBus(request.param, settings)
    caplog.clear()
    try:
        yield Rig(request.param, sim, bus)
    finally:
        await bus.close()
        await sim.stop()


def assert_no_traceback_and_quiet_devices(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback anywhere; the simulated devices (our code and pymodbus's server) log at
    most debug lines about the requests they refuse or ignore."""
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    server_side = os.sep.join(("pymodbus", "server", ""))
    loud = [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if (r.name.startswith("simulators") or server_side in r.pathname)
        and r.levelno > logging.DEBUG
    ]
    assert loud == []


def gone(link: Path) -> bool:
    """Neither the symlink nor anything else is left at ``link``."""
    return not os.path.lexists(link)


async def read_climate(bus: PymodbusBus, unit: int, profile: str) -> dict[str, float]:
    cmap = PROFILES[profile]
    fields = {"temperature": cmap.temperature, "humidity": cmap.humidity}
    blocks = plan_reads(fields.values())
    return read_values(fields, blocks, [await bus.read(unit, b) for b in blocks])


async def refusal(
    bus: PymodbusBus, unit: int, function: FunctionCode, address: int, count: int
) -> int:
    """Read and expect a Modbus exception; return its code."""
    with pytest.raises(DeviceError) as info:
        await bus.read(unit, ReadBlock(function, address, count))
    assert info.value.reason == "exception", info.value
    assert info.value.exception_code is not None
    assert f"unit {unit}" in str(info.value)
    assert "Modbus Error" not in str(info.value)
    return info.value.exception_code


# --- profiles: the simulator's layouts are the agent's profiles --------------------------------


def test_every_simulated_layout_is_an_agent_profile_of_the_same_name() -> None:
    assert set(LAYOUTS) == set(PROFILES) == set(get_args(ProfileName)) == set(VALUES)


async def test_the_agent_decodes_what_the_simulator_encodes_for_every_profile(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    for profile, (unit, t, rh) in VALUES.items():
        assert await read_climate(rig.bus, unit, profile) == pytest.approx(
            {"temperature": t, "humidity": rh}
        ), profile
        assert rig.sim.transmitters[profile].reads == 1
    assert_no_traceback_and_quiet_devices(caplog)


# --- what a device refuses -----------------------------------------------------------------


async def test_a_function_the_device_does_not_have_is_exception_01(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    assert await refusal(rig.bus, 1, 4, 0, 2) == 0x01  # holding-register transmitter, FC4
    assert await refusal(rig.bus, 2, 3, 1, 2) == 0x01  # input-register transmitter, FC3
    assert await refusal(rig.bus, 3, 4, 0x10, 4) == 0x01
    assert await refusal(rig.bus, RELAY, 3, 0, 1) == 0x01  # a relay board has no registers
    with pytest.raises(DeviceError) as info:
        await rig.bus.write_coil(1, 0, True)  # a transmitter has no coils
    assert (info.value.reason, info.value.exception_code) == ("exception", 0x01)
    assert "illegal function" in str(info.value)
    # Each refusal left the device as it was: it still answers what it has.
    assert (await read_climate(rig.bus, 1, "rh-t-holding-x10"))["humidity"] == pytest.approx(55.5)
    assert_no_traceback_and_quiet_devices(caplog)


async def test_an_address_the_device_does_not_map_is_exception_02(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    assert await refusal(rig.bus, 1, 3, 2, 1) == 0x02  # just after the two registers
    assert await refusal(rig.bus, 1, 3, 0, 3) == 0x02  # the two and one more
    assert await refusal(rig.bus, 2, 4, 0, 2) == 0x02  # 0x0000 is not in its manual
    assert await refusal(rig.bus, 3, 3, 0, 2) == 0x02
    assert await refusal(rig.bus, 3, 3, 0x12, 4) == 0x02  # half of it past the humidity float
    with pytest.raises(DeviceError) as info:
        await rig.bus.write_coil(RELAY, 8, True)  # a board of 8 relays: coils 0..7
    assert (info.value.reason, info.value.exception_code) == ("exception", 0x02)
    assert_no_traceback_and_quiet_devices(caplog)
    # What is mapped is served, down to a single register or the last relay.
    assert await rig.bus.read(1, ReadBlock(3, 1, 1)) == [(-34) & 0xFFFF]
    await rig.bus.write_coil(RELAY, 7, True)  # the board logs its relay switching on
    assert next(iter(rig.sim.relays.values())).coils[7] is True


async def test_a_unit_that_is_not_there_is_silence_on_rs485_and_0b_from_a_gateway(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(DeviceError) as info:
        await rig.bus.read(ABSENT, ReadBlock(3, 0, 2))
    error = info.value
    assert f"unit {ABSENT}" in str(error)
    if rig.transport == "rtu":
        assert (error.reason, error.exception_code) == ("no_response", None)
        assert str(error) == f"bus rtu unit {ABSENT}: no response to FC3 @0+2 (timeout 0.5 s)"
    else:
        assert (error.reason, error.exception_code) == ("exception", 0x0B)
        assert "gateway target device failed to respond" in str(error)
    # The line is not disturbed: the next unit answers at once.
    assert (await read_climate(rig.bus, 2, "t-rh-input-x10"))["temperature"] == pytest.approx(31.2)
    assert_no_traceback_and_quiet_devices(caplog)


# --- the driver's logging --------------------------------------------------------------------


async def test_a_timeout_logs_at_most_a_couple_of_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At INFO, pymodbus's error line and its dump of raw frames stay out of the log."""
    caplog.set_level(logging.INFO)
    link = tmp_path / "ttyRS485"
    sim = SensorSimulator(rtu_config(link))
    await sim.start()
    bus = PymodbusBus("rs485", RtuSettings(str(link), 9600, timeout_s=0.2, retries=0))
    caplog.clear()
    try:
        for _ in range(3):
            with pytest.raises(DriverError) as info:
                await bus.read(ABSENT, ReadBlock(3, 0, 2))
            assert info.value.reason == "no_response"
            assert "(timeout 0.2 s)" in str(info.value)
    finally:
        await bus.close()
        await sim.stop()
    per_timeout = [r for r in caplog.records if not r.name.startswith("simulators")]
    assert len(per_timeout) <= 2 * 3, [r.getMessage() for r in per_timeout]
    assert not [r for r in caplog.records if r.name.startswith(LIBRARY_LOGGER)]


async def test_at_debug_the_library_shows_every_frame(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    link = tmp_path / "ttyRS485"
    sim = SensorSimulator(rtu_config(link))
    await sim.start()
    bus = PymodbusBus("rs485", RtuSettings(str(link), 9600, timeout_s=0.2, retries=0))
    try:
        await bus.read(1, ReadBlock(3, 0, 2))
    finally:
        await bus.close()
        await sim.stop()
    frames = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(LIBRARY_LOGGER) and r.getMessage().startswith("send:")
    ]
    assert frames, "pymodbus logs the frames it sends at DEBUG"


# --- the RTU link's symlink ------------------------------------------------------------------


async def test_the_link_is_removed_when_the_simulator_stops(tmp_path: Path) -> None:
    link = tmp_path / "ttyRS485"
    sim = SensorSimulator(rtu_config(link))
    await sim.start()
    assert link.is_symlink()
    await sim.stop()
    assert gone(link)
    await sim.stop()  # again: nothing left to do, nothing fails
    assert gone(link)


async def test_a_simulator_stopped_while_unplugged_leaves_no_link(tmp_path: Path) -> None:
    link = tmp_path / "ttyRS485"
    sim = SensorSimulator(rtu_config(link))
    await sim.start()
    sim.set_fault(str(link), "unplug", True)
    assert gone(link)
    await sim.stop()
    assert gone(link)


async def test_a_simulator_that_cannot_start_leaves_no_link(tmp_path: Path) -> None:
    link = tmp_path / "ttyRS485"
    config = rtu_config(link)
    config.scenario.append(ScenarioEvent(at_h=0, duration_h=1, kind="silent", target="nobody"))
    with pytest.raises(ValueError, match="unknown target"):
        await SensorSimulator(config).start()
    assert gone(link)


async def test_serve_removes_the_link_when_cancelled(tmp_path: Path) -> None:
    link = tmp_path / "ttyRS485"
    ready = asyncio.Event()
    task = asyncio.create_task(serve(rtu_config(link), lambda _lines: ready.set()))
    await asyncio.wait_for(ready.wait(), 10)
    assert link.is_symlink()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    assert gone(link)


def test_edge_sim_removes_the_link_on_sigterm(tmp_path: Path, processes: Processes) -> None:
    link = tmp_path / "ttyRS485"
    config = tmp_path / "sensors.toml"
    config.write_text(f'[[rtu]]\nlink = "{link}"\n\n[[rtu.devices]]\nunit = 1\n')
    processes.start("sim", "edge-sim", "sensors", "--config", str(config))
    wait_for(lambda: "ready" in processes.log("sim"), what="the simulator to be ready")
    assert link.is_symlink()
    assert processes.stop("sim", signal.SIGTERM) == 0, processes.log("sim")
    assert gone(link)
