"""The Modbus TCP bus against the transmitter simulator (real pymodbus server and client)."""

from __future__ import annotations

import os

import pytest
import serial

from edge_agent.drivers.modbus import BusUnavailable, DeviceError, PymodbusBus, TcpSettings
from edge_agent.drivers.registers import PROFILES, plan_reads, read_values
from simulators.sensors import SensorsConfig, SensorSimulator, TcpEndpoint, Transmitter
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
        with pytest.raises(DeviceError, match="unit 9"):
            await read_climate(bus, 9, "t-rh-input-x10")
        assert sim.transmitters[(port, 1)].reads == 1
    finally:
        await bus.close()
        await sim.stop()


async def test_unreachable_gateway_is_bus_unavailable() -> None:
    bus = PymodbusBus("gw", TcpSettings("127.0.0.1", free_port(), timeout_s=0.3, retries=0))
    with pytest.raises(BusUnavailable, match="bus gw"):
        await read_climate(bus, 1, "rh-t-holding-x10")
    await bus.close()


def test_pty_pair_carries_bytes_both_ways(pty_pair: PtyPair) -> None:
    with serial.Serial(pty_pair.device, 9600, timeout=1) as port:
        os.write(pty_pair.controller_fd, b"\x01\x03\x00\x00\x00\x02\xc4\x0b")
        assert port.read(8) == b"\x01\x03\x00\x00\x00\x02\xc4\x0b"
        port.write(b"\x01\x03\x04")
        port.flush()
        assert os.read(pty_pair.controller_fd, 3) == b"\x01\x03\x04"
