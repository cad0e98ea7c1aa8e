"""Simulated temperature/humidity transmitters served over real Modbus TCP (pymodbus).

The simulator is a device, not part of the agent: it knows register layouts the way a
transmitter's manual states them and shares no code with the agent's drivers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.configfile import Port, Strict, between, load

log = logging.getLogger(__name__)

REGISTERS = 32


@dataclass(frozen=True)
class Layout:
    """Where a transmitter family keeps temperature and humidity (x10 integers)."""

    function: Literal[3, 4]
    temperature_address: int
    humidity_address: int


#: The transmitter families the simulator can impersonate, named as the agent's profiles are.
LAYOUTS: dict[str, Layout] = {
    "rh-t-holding-x10": Layout(function=3, temperature_address=1, humidity_address=0),
    "t-rh-input-x10": Layout(function=4, temperature_address=1, humidity_address=2),
}


class Transmitter(Strict):
    unit: Annotated[int, between(1, 247)]
    profile: Literal["rh-t-holding-x10", "t-rh-input-x10"] = "rh-t-holding-x10"
    temperature_c: Annotated[float, between(-40, 80)] = 22.0
    humidity_pct: Annotated[float, between(0, 100)] = 50.0
    #: A slow sine on top of the base values, so a demo shows changing readings.
    wave_c: Annotated[float, between(0, 20)] = 0.0
    wave_pct: Annotated[float, between(0, 40)] = 0.0
    wave_period_s: Annotated[float, between(1, 86400)] = 600.0


class TcpEndpoint(Strict):
    host: str = "127.0.0.1"
    port: Port = 5020
    devices: list[Transmitter] = Field(min_length=1)


class SensorsConfig(Strict):
    tcp: list[TcpEndpoint] = Field(default_factory=list)


def load_sensors_config(path: Path | str) -> SensorsConfig:
    return load(path, SensorsConfig)


def x10(value: float) -> int:
    """A signed tenth as an unsigned 16-bit register."""
    raw: int = struct.unpack(">H", struct.pack(">h", round(value * 10)))[0]
    return raw


class SimulatedTransmitter:
    def __init__(self, spec: Transmitter, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.layout = LAYOUTS[spec.profile]
        self._clock = clock
        self._t0 = clock()
        self.reads = 0

    def values(self) -> tuple[float, float]:
        phase = 2 * math.pi * (self._clock() - self._t0) / self.spec.wave_period_s
        return (
            self.spec.temperature_c + self.spec.wave_c * math.sin(phase),
            min(100.0, max(0.0, self.spec.humidity_pct + self.spec.wave_pct * math.cos(phase))),
        )

    async def on_access(
        self,
        function_code: int,
        start_address: int,
        _address: int,
        _count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this before answering; fill in the live values."""
        if set_values is None and function_code == self.layout.function:
            temperature, humidity = self.values()
            registers[self.layout.temperature_address - start_address] = x10(temperature)
            registers[self.layout.humidity_address - start_address] = x10(humidity)
            self.reads += 1
        return None

    def device(self) -> SimDevice:
        def block(bits: bool) -> list[SimData]:
            if bits:
                return [SimData(0, count=REGISTERS, values=False, datatype=DataType.BITS)]
            return [SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)]

        return SimDevice(
            id=self.spec.unit,
            simdata=(block(True), block(True), block(False), block(False)),
            action=partial(SimulatedTransmitter.on_access, self),
        )


class SensorSimulator:
    """Every configured endpoint, served until cancelled."""

    def __init__(self, config: SensorsConfig) -> None:
        self.config = config
        self.transmitters: dict[tuple[int, int], SimulatedTransmitter] = {}
        self._servers: list[ModbusTcpServer] = []

    async def start(self) -> list[str]:
        """Start every server; return a line per endpoint saying where it listens."""
        lines = []
        for endpoint in self.config.tcp:
            sims = [SimulatedTransmitter(d) for d in endpoint.devices]
            for sim in sims:
                self.transmitters[(endpoint.port, sim.spec.unit)] = sim
            server = ModbusTcpServer(
                [s.device() for s in sims],
                address=(endpoint.host, endpoint.port),
                ignore_missing_devices=True,
            )
            await server.serve_forever(background=True)
            self._servers.append(server)
            units = ",".join(str(s.spec.unit) for s in sims)
            lines.append(f"modbus-tcp {endpoint.host}:{endpoint.port} units {units}")
        return lines

    async def stop(self) -> None:
        for server in self._servers:
            await server.shutdown()  # type: ignore[no-untyped-call]
        self._servers.clear()


async def serve(config: SensorsConfig, ready: Callable[[list[str]], None]) -> None:
    sim = SensorSimulator(config)
    lines = await sim.start()
    ready(lines)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
