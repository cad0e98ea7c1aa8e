"""The Modbus TCP bus against the transmitter simulator (real pymodbus server and client)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial

from edge_agent.drivers.modbus import (
    BusLock,
    BusUnavailable,
    DeviceError,
    DriverError,
    PymodbusBus,
    RtuSettings,
    TcpSettings,
    raise_if_cancelled,
)
from edge_agent.drivers.registers import (
    PROFILES,
    ByteOrder,
    ClimateMap,
    DataType,
    RegisterField,
    plan_reads,
    read_values,
)
from simulators.environment import ScenarioEvent
from simulators.sensors import (
    RelayBoard,
    RtuEndpoint,
    SensorsConfig,
    SensorSimulator,
    TcpEndpoint,
    Transmitter,
)
from tests.support import PtyPair, free_port


async def read_climate(bus: PymodbusBus, unit: int, profile: str) -> dict[str, float]:
    cmap = PROFILES[profile]
    fields = {"temperature": cmap.temperature, "humidity": cmap.humidity}
    blocks = plan_reads(fields.values())
    return read_values(fields, blocks, [await bus.read(unit, b) for b in blocks])


async def test_both_builtin_profiles_read_exact_values() -> None:
    port = free_port()
    sim = SensorSimulator(
        SensorsConfig(
            tcp=[
                TcpEndpoint(
                    port=port,
                    devices=[
                        Transmitter(unit=1, temperature_c=-3.4, humidity_pct=55.5),
                        Transmitter(
                            unit=7, profile="t-rh-input-x10", temperature_c=31.2, humidity_pct=80.1
                        ),
                    ],
                )
            ]
        )
    )
    await sim.start()
    bus = PymodbusBus("gw", TcpSettings("127.0.0.1", port, timeout_s=0.5, retries=0))
    try:
        assert await read_climate(bus, 1, "rh-t-holding-x10") == pytest.approx(
            {"temperature": -3.4, "humidity": 55.5}
        )
        assert await read_climate(bus, 7, "t-rh-input-x10") == pytest.approx(
            {"temperature": 31.2, "humidity": 80.1}
        )
        with pytest.raises(DeviceError, match="unit 9") as info:
            await read_climate(bus, 9, "t-rh-input-x10")
        assert (info.value.reason, info.value.exception_code) == ("exception", 0x0B)
        assert sim.transmitters[f"1@127.0.0.1:{port}"].reads == 1
    finally:
        await bus.close()
        await sim.stop()


async def test_unreachable_gateway_is_bus_unavailable() -> None:
    bus = PymodbusBus("gw", TcpSettings("127.0.0.1", free_port(), timeout_s=0.3, retries=0))
    with pytest.raises(BusUnavailable, match="bus gw") as info:
        await read_climate(bus, 1, "rh-t-holding-x10")
    assert (info.value.reason, info.value.exception_code) == ("bus_unavailable", None)
    await bus.close()


async def test_a_missing_serial_port_is_bus_unavailable(tmp_path: Path) -> None:
    bus = PymodbusBus("rs485", RtuSettings(str(tmp_path / "ttyNone"), timeout_s=0.3, retries=0))
    with pytest.raises(BusUnavailable, match=r"bus rs485 \(.*ttyNone\): cannot") as info:
        await read_climate(bus, 1, "rh-t-holding-x10")
    assert info.value.reason == "bus_unavailable"
    await bus.close()


def test_driver_errors_carry_a_reason_code() -> None:
    assert BusUnavailable("bus b: cannot open").reason == "bus_unavailable"
    error = DeviceError("bus b unit 3: exception 02", reason="exception", exception_code=2)
    assert (error.reason, error.exception_code, str(error)) == (
        "exception",
        2,
        "bus b unit 3: exception 02",
    )
    assert DriverError("bus b unit 3: no response").exception_code is None


def test_pty_pair_carries_bytes_both_ways(pty_pair: PtyPair) -> None:
    with serial.Serial(pty_pair.device, 9600, timeout=1) as port:
        os.write(pty_pair.controller_fd, b"\x01\x03\x00\x00\x00\x02\xc4\x0b")
        assert port.read(8) == b"\x01\x03\x00\x00\x00\x02\xc4\x0b"
        port.write(b"\x01\x03\x04")
        port.flush()
        assert os.read(pty_pair.controller_fd, 3) == b"\x01\x03\x04"


def rtu_config(link: Path) -> SensorsConfig:
    return SensorsConfig(
        rtu=[
            RtuEndpoint(
                link=link,
                baudrate=9600,
                devices=[
                    Transmitter(unit=1, name="a", temperature_c=21.3, humidity_pct=44.4),
                    Transmitter(
                        unit=2,
                        name="b",
                        profile="t-rh-input-x10",
                        temperature_c=-7.5,
                        humidity_pct=91.0,
                    ),
                    Transmitter(
                        unit=3,
                        name="c",
                        profile="float32-cdab-holding",
                        temperature_c=18.25,
                        humidity_pct=63.5,
                    ),
                ],
                relays=[RelayBoard(unit=9)],
            )
        ]
    )


FLOAT_CDAB = ClimateMap(
    temperature=RegisterField(3, 0x10, DataType.FLOAT32, ByteOrder.CDAB),
    humidity=RegisterField(3, 0x12, DataType.FLOAT32, ByteOrder.CDAB),
)


async def read_map(bus: PymodbusBus, unit: int, cmap: ClimateMap) -> dict[str, float]:
    fields = {"temperature": cmap.temperature, "humidity": cmap.humidity}
    blocks = plan_reads(fields.values())
    return read_values(fields, blocks, [await bus.read(unit, b) for b in blocks])


@pytest.fixture
async def rtu(tmp_path: Path) -> AsyncIterator[tuple[SensorSimulator, PymodbusBus]]:
    link = tmp_path / "ttyRS485"
    sim = SensorSimulator(rtu_config(link))
    await sim.start()
    bus = PymodbusBus("rs485", RtuSettings(str(link), 9600, timeout_s=0.3, retries=0))
    yield sim, bus
    await bus.close()
    await sim.stop()


async def test_rtu_over_a_pseudo_terminal_reads_every_profile_and_a_float_map(
    rtu: tuple[SensorSimulator, PymodbusBus],
) -> None:
    _sim, bus = rtu
    assert await read_climate(bus, 1, "rh-t-holding-x10") == pytest.approx(
        {"temperature": 21.3, "humidity": 44.4}
    )
    assert await read_climate(bus, 2, "t-rh-input-x10") == pytest.approx(
        {"temperature": -7.5, "humidity": 91.0}
    )
    assert await read_map(bus, 3, FLOAT_CDAB) == pytest.approx(
        {"temperature": 18.25, "humidity": 63.5}
    )
    assert PROFILES["float32-cdab-holding"] == FLOAT_CDAB
    assert await read_climate(bus, 3, "float32-cdab-holding") == pytest.approx(
        {"temperature": 18.25, "humidity": 63.5}
    )


async def test_silent_and_bad_crc_units_fail_alone(
    rtu: tuple[SensorSimulator, PymodbusBus],
) -> None:
    sim, bus = rtu
    sim.set_fault("a", "silent", True)
    sim.set_fault("b", "bad_crc", True)
    with pytest.raises(DeviceError, match="unit 1: no response to FC3 @0\\+2") as silent:
        await read_climate(bus, 1, "rh-t-holding-x10")
    assert silent.value.reason == "no_response"
    with pytest.raises(DeviceError, match="unit 2: no valid answer") as garbled:
        await read_climate(bus, 2, "t-rh-input-x10")
    assert garbled.value.reason == "bad_answer"
    for error in (silent.value, garbled.value):
        assert "Modbus Error" not in str(error)
        assert "Input/Output" not in str(error)
    assert (await read_map(bus, 3, FLOAT_CDAB))["temperature"] == pytest.approx(18.25)
    sim.set_fault("a", "silent", False)
    sim.set_fault("b", "bad_crc", False)
    assert (await read_climate(bus, 1, "rh-t-holding-x10"))["temperature"] == pytest.approx(21.3)
    assert (await read_climate(bus, 2, "t-rh-input-x10"))["temperature"] == pytest.approx(-7.5)


async def test_unplugged_bus_is_unavailable_then_comes_back(
    rtu: tuple[SensorSimulator, PymodbusBus], tmp_path: Path
) -> None:
    sim, bus = rtu
    link = str(tmp_path / "ttyRS485")
    assert (await read_climate(bus, 1, "rh-t-holding-x10"))["humidity"] == pytest.approx(44.4)
    sim.set_fault(link, "unplug", True)
    reasons = set()
    for _ in range(3):
        with pytest.raises(DriverError) as info:
            await read_climate(bus, 1, "rh-t-holding-x10")
        reasons.add(info.value.reason)
    # The request in flight goes unanswered; after it, the port cannot be opened.
    assert reasons <= {"no_response", "bus_unavailable"}
    assert "bus_unavailable" in reasons
    sim.set_fault(link, "unplug", False)
    answered = None
    for _ in range(20):
        try:
            answered = await read_climate(bus, 1, "rh-t-holding-x10")
            break
        except DriverError:
            await asyncio.sleep(0.1)
    assert answered == pytest.approx({"temperature": 21.3, "humidity": 44.4})


async def test_relay_coil_is_switched_and_can_be_read_back(
    rtu: tuple[SensorSimulator, PymodbusBus],
) -> None:
    sim, bus = rtu
    await bus.write_coil(9, 2, True)
    assert sim.relays[f"9@{sim.config.rtu[0].link}"].coils[:3] == [False, False, True]
    await bus.write_coil(9, 2, False)
    assert not any(sim.relays[f"9@{sim.config.rtu[0].link}"].coils)


async def test_an_urgent_request_goes_before_waiting_ordinary_ones() -> None:
    lock = BusLock()
    order: list[str] = []

    async def use(name: str, urgent: bool = False) -> None:
        async with lock.hold(urgent):
            order.append(name)
            await asyncio.sleep(0.01)

    first = asyncio.create_task(use("read-1"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(use(f"read-{i}")) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    alarm = asyncio.create_task(use("alarm", urgent=True))
    await asyncio.gather(first, *waiting, alarm)
    assert order[:2] == ["read-1", "alarm"]
    assert sorted(order[2:]) == ["read-2", "read-3", "read-4"]


async def test_a_scenario_with_an_unknown_target_is_refused(tmp_path: Path) -> None:
    config = rtu_config(tmp_path / "tty")
    config.scenario.append(ScenarioEvent(at_h=0, duration_h=1, kind="silent", target="nobody"))
    sim = SensorSimulator(config)
    with pytest.raises(ValueError, match="unknown target 'nobody'"):
        await sim.start()
    await sim.stop()


async def test_a_cancellation_a_library_swallowed_is_raised_again() -> None:
    """As Python 3.11's ``asyncio.wait_for`` does inside pymodbus when the answer and the
    cancellation arrive together: the wait returns the answer. The transaction must still end
    in ``CancelledError``, or the agent's poll loop never stops (seen as a hung shutdown)."""
    waiting = asyncio.Event()

    async def answer_despite_cancel() -> str:
        waiting.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "answer"
        return "late"

    async def transaction() -> str:
        await answer_despite_cancel()
        raise_if_cancelled()
        return "ran on"

    task = asyncio.create_task(transaction())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_cancellation_requested_means_nothing_raised() -> None:
    raise_if_cancelled()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
    raise_if_cancelled()  # a timeout that expired and was handled is no cancellation
