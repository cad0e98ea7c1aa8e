"""Simulated temperature/humidity transmitters and relay boards on real Modbus TCP and RTU.

The simulator is a device, not part of the agent: it knows register layouts the way a
transmitter's manual states them and shares no code with the agent's drivers. RTU devices sit on
a virtual RS485 cable (two pseudo-terminals, ``serial_link.PtyCable``) whose agent side is a
symlink, printed at start. Values come from the simulated world (``environment.World``) or are
fixed; faults (silent, bad CRC, frozen, nonsense, unplugged) come from the scenario or from
``set_fault``.

Each endpoint behaves like the wire it stands for (``Line``): a device answers exception 01
(illegal function) to a function it does not have and 02 (illegal data address) to registers its
manual does not list; a request for a unit that is not there goes unanswered on an RS485 line
and gets exception 0B (gateway target device failed to respond) from a TCP gateway. None of
this logs more than a debug line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.configfile import Port, Strict, between, load
from simulators.environment import RoomConfig, ScenarioEvent, World
from simulators.serial_link import PtyCable

log = logging.getLogger(__name__)

REGISTERS = 64
FAULTS = ("silent", "bad_crc", "frozen", "nonsense")


@dataclass(frozen=True)
class Value:
    address: int
    kind: Literal["int16x10", "uint16x10", "float32"] = "int16x10"
    word_swap: bool = False

    @property
    def width(self) -> int:
        """How many registers the value takes."""
        return 2 if self.kind == "float32" else 1

    def encode(self, value: float) -> list[int]:
        if self.kind == "float32":
            hi, lo = struct.unpack(">HH", struct.pack(">f", value))
            return [lo, hi] if self.word_swap else [hi, lo]
        fmt = ">h" if self.kind == "int16x10" else ">H"
        scaled = max(-32768, min(65535, round(value * 10)))
        if fmt == ">h":
            scaled = max(-32768, min(32767, scaled))
        return [struct.unpack(">H", struct.pack(fmt, scaled))[0]]


@dataclass(frozen=True)
class Layout:
    """Where a transmitter family keeps temperature and humidity, as its manual says."""

    function: Literal[3, 4]
    temperature: Value
    humidity: Value

    @property
    def registers(self) -> frozenset[int]:
        """Every register address the manual lists; any other is an illegal data address."""
        return frozenset(
            v.address + i for v in (self.temperature, self.humidity) for i in range(v.width)
        )


#: The transmitter families the simulator can impersonate, named as the agent's profiles are.
LAYOUTS: dict[str, Layout] = {
    "rh-t-holding-x10": Layout(3, Value(1, "int16x10"), Value(0, "uint16x10")),
    "t-rh-input-x10": Layout(4, Value(1, "int16x10"), Value(2, "uint16x10")),
    # A transmitter with IEEE floats, low word first (CDAB), at 0x0010 and 0x0012.
    "float32-cdab-holding": Layout(
        3, Value(0x10, "float32", word_swap=True), Value(0x12, "float32", word_swap=True)
    ),
}


#: The names of ``LAYOUTS``, for the configuration (each is also one of the agent's profiles).
ProfileName = Literal["rh-t-holding-x10", "t-rh-input-x10", "float32-cdab-holding"]


class Transmitter(Strict):
    unit: Annotated[int, between(1, 247)]
    profile: ProfileName = "rh-t-holding-x10"
    #: A name for the scenario's faults (default: "UNIT@ENDPOINT").
    name: str | None = None
    #: The room it hangs in; without one it reads the fixed values below.
    room: str | None = None
    temperature_c: Annotated[float, between(-40, 80)] = 22.0
    humidity_pct: Annotated[float, between(0, 100)] = 50.0
    #: Its own error, as a calibration certificate would find it.
    offset_c: Annotated[float, between(-5, 5)] = 0.0
    offset_pct: Annotated[float, between(-20, 20)] = 0.0
    #: A slow sine on top of fixed values, so a demo shows changing readings.
    wave_c: Annotated[float, between(0, 20)] = 0.0
    wave_pct: Annotated[float, between(0, 40)] = 0.0
    wave_period_s: Annotated[float, between(1, 86400)] = 600.0


class RelayBoard(Strict):
    unit: Annotated[int, between(1, 247)]
    coils: Annotated[int, between(1, 64)] = 8


class TcpEndpoint(Strict):
    host: str = "127.0.0.1"
    port: Port = 5020
    devices: list[Transmitter] = Field(default_factory=list)
    relays: list[RelayBoard] = Field(default_factory=list)


class RtuEndpoint(Strict):
    #: The path the agent opens (a symlink to the current pseudo-terminal).
    link: Path
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    devices: list[Transmitter] = Field(default_factory=list)
    relays: list[RelayBoard] = Field(default_factory=list)


class SensorsConfig(Strict):
    #: Simulated seconds per real second, for the rooms and the scenario.
    time_scale: Annotated[float, between(0.001, 100_000)] = 1.0
    rooms: list[RoomConfig] = Field(default_factory=list)
    scenario: list[ScenarioEvent] = Field(default_factory=list)
    tcp: list[TcpEndpoint] = Field(default_factory=list)
    rtu: list[RtuEndpoint] = Field(default_factory=list)


def load_sensors_config(path: Path | str) -> SensorsConfig:
    return load(path, SensorsConfig)


def x10(value: float) -> int:
    """A signed tenth as an unsigned 16-bit register."""
    return Value(0).encode(value)[0]


class SimulatedTransmitter:
    def __init__(
        self,
        spec: Transmitter,
        name: str,
        world: World | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.name = name
        self.layout = LAYOUTS[spec.profile]
        self.world = world
        self._clock = clock
        self._t0 = clock()
        self.faults: set[str] = set()
        self._frozen: tuple[float, float] | None = None
        self.reads = 0

    def refuse(self, function: int, address: int, count: int) -> ExcCodes | None:
        """The exception this transmitter answers to a request, or None to serve it: it has
        only its layout's read function, over only the registers it maps."""
        if function != self.layout.function:
            return ExcCodes.ILLEGAL_FUNCTION
        if not set(range(address, address + count)) <= self.layout.registers:
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    def values(self) -> tuple[float, float]:
        if "nonsense" in self.faults:
            return 3276.7, 6553.5
        if "frozen" in self.faults and self._frozen is not None:
            return self._frozen
        if self.world is not None and self.spec.room is not None:
            t, rh = self.world.room(self.spec.room)
        else:
            phase = 2 * math.pi * (self._clock() - self._t0) / self.spec.wave_period_s
            t = self.spec.temperature_c + self.spec.wave_c * math.sin(phase)
            rh = self.spec.humidity_pct + self.spec.wave_pct * math.cos(phase)
        values = (t + self.spec.offset_c, min(100.0, max(0.0, rh + self.spec.offset_pct)))
        self._frozen = values
        return values

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
        if "silent" in self.faults:
            return ExcCodes.GATEWAY_NO_RESPONSE  # what a TCP gateway says of a dead device
        if "bad_crc" in self.faults:
            return ExcCodes.GATEWAY_PATH_UNAVIABLE
        if set_values is None and function_code == self.layout.function:
            t, rh = self.values()
            for spec, value in ((self.layout.temperature, t), (self.layout.humidity, rh)):
                words = spec.encode(value)
                start = spec.address - start_address
                registers[start : start + len(words)] = words
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


class SimulatedRelay:
    """A relay board: coils the agent switches, whose state a test or a person can read."""

    def __init__(self, spec: RelayBoard, name: str) -> None:
        self.spec = spec
        self.name = name
        self.coils = [False] * spec.coils

    #: Read coils, write one coil, write several coils.
    FUNCTIONS = frozenset({1, 5, 15})

    def refuse(self, function: int, address: int, count: int) -> ExcCodes | None:
        """The exception this board answers to a request, or None to serve it."""
        if function not in self.FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        if address + count > len(self.coils):
            return ExcCodes.ILLEGAL_ADDRESS
        return None

    async def on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        _registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is not None and function_code in (5, 15):
            for i, value in enumerate(set_values):
                if 0 <= address + i < len(self.coils):
                    if bool(value) != self.coils[address + i]:
                        log.warning(
                            "relay %s coil %d %s", self.name, address + i, "ON" if value else "off"
                        )
                        print(
                            f"relay {self.name} coil {address + i} {'on' if value else 'off'}",
                            flush=True,
                        )
                    self.coils[address + i] = bool(value)
        return None

    def device(self) -> SimDevice:
        coils = [SimData(0, count=self.spec.coils, values=False, datatype=DataType.BITS)]
        di = [SimData(0, count=self.spec.coils, values=False, datatype=DataType.BITS)]
        regs = [SimData(0, count=4, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(
            id=self.spec.unit,
            simdata=(coils, di, regs, list(regs)),
            action=partial(SimulatedRelay.on_access, self),
        )


class _Refused(ModbusPDU):
    """A request the device refuses: the server answers it with a Modbus exception."""

    def __init__(self, request: ModbusPDU, code: ExcCodes) -> None:
        super().__init__(dev_id=request.dev_id, transaction_id=request.transaction_id)
        self.function_code = request.function_code
        self.code = code

    async def datastore_update(self, context: ModbusServerContext, device_id: int) -> ModbusPDU:
        return ExceptionResponse(self.function_code, self.code, device_id, self.transaction_id)


class _Unanswered(ModbusPDU):
    """A request for a unit that is not on the RS485 line: nobody answers it."""

    def __init__(self, request: ModbusPDU) -> None:
        super().__init__(dev_id=request.dev_id, transaction_id=request.transaction_id)
        self.function_code = request.function_code

    async def datastore_update(self, context: ModbusServerContext, device_id: int) -> ModbusPDU:
        # The server is told to ignore missing devices: it drops the request with a debug line.
        raise NoSuchIdException(f"unit {device_id}")


class Line:
    """What one endpoint's wire does with each request before a device's registers see it.

    pymodbus hands every decoded request to ``screen`` (its ``trace_pdu`` hook), so the checks
    a real device makes come first: the unit must be there (on RS485 nobody answers otherwise;
    a TCP gateway answers exception 0B), and the device must have the function and map the
    addresses (else exception 01 or 02).
    """

    def __init__(
        self, devices: dict[int, SimulatedTransmitter | SimulatedRelay], gateway: bool
    ) -> None:
        self.devices = devices
        self.gateway = gateway

    def screen(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            return pdu
        device = self.devices.get(pdu.dev_id)
        if device is None:
            log.debug("no unit %d here: FC%d %s", pdu.dev_id, pdu.function_code, self._answer)
            if self.gateway:
                return _Refused(pdu, ExcCodes.GATEWAY_NO_RESPONSE)
            return _Unanswered(pdu)
        count = max(1, pdu.count)
        if (code := device.refuse(pdu.function_code, pdu.address, count)) is not None:
            log.debug(
                "%s refuses FC%d @%d+%d: exception %02X",
                device.name,
                pdu.function_code,
                pdu.address,
                count,
                code,
            )
            return _Refused(pdu, code)
        return pdu

    @property
    def _answer(self) -> str:
        return "exception 0B" if self.gateway else "no answer"


class SensorSimulator:
    """Every configured endpoint, served until stopped."""

    def __init__(self, config: SensorsConfig) -> None:
        self.config = config
        self.world = World(config.rooms, config.scenario, config.time_scale)
        self.transmitters: dict[str, SimulatedTransmitter] = {}
        self.relays: dict[str, SimulatedRelay] = {}
        self.cables: dict[str, PtyCable] = {}
        self._cable_units: dict[str, tuple[PtyCable, int]] = {}
        self._manual: dict[tuple[str, str], bool] = {}
        self._servers: list[ModbusTcpServer | ModbusSerialServer] = []
        self._scenario_task: asyncio.Task[None] | None = None

    def _devices(
        self, where: str, transmitters: list[Transmitter], relays: list[RelayBoard], gateway: bool
    ) -> tuple[list[SimDevice], Line]:
        devices: list[SimulatedTransmitter | SimulatedRelay] = []
        for spec in transmitters:
            name = spec.name or f"{spec.unit}@{where}"
            sim = SimulatedTransmitter(spec, name, self.world)
            self.transmitters[name] = sim
            devices.append(sim)
        for board in relays:
            name = f"{board.unit}@{where}"
            relay = SimulatedRelay(board, name)
            self.relays[name] = relay
            devices.append(relay)
        line = Line({d.spec.unit: d for d in devices}, gateway)
        return [d.device() for d in devices], line

    async def start(self) -> list[str]:
        """Start every server; return a line per endpoint saying where it listens. If one
        cannot start, whatever did is stopped again (no symlink is left behind)."""
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> list[str]:
        lines = []
        for endpoint in self.config.tcp:
            where = f"{endpoint.host}:{endpoint.port}"
            devices, line = self._devices(where, endpoint.devices, endpoint.relays, gateway=True)
            server = ModbusTcpServer(
                devices,
                address=(endpoint.host, endpoint.port),
                trace_pdu=line.screen,
            )
            await server.serve_forever(background=True)
            self._servers.append(server)
            lines.append(f"modbus-tcp {where} units {self._units(endpoint)}")
        for rtu in self.config.rtu:
            cable = PtyCable(rtu.link)
            cable.start()
            self.cables[str(rtu.link)] = cable
            where = str(rtu.link)
            devices, line = self._devices(where, rtu.devices, rtu.relays, gateway=False)
            serial_server = ModbusSerialServer(
                devices,
                framer=FramerType.RTU,
                port=cable.device_path,
                baudrate=rtu.baudrate,
                ignore_missing_devices=True,  # with Line: a unit not on the line stays silent
                trace_pdu=line.screen,
            )
            await serial_server.serve_forever(background=True)
            self._servers.append(serial_server)
            for spec in rtu.devices:
                self._cable_units[spec.name or f"{spec.unit}@{where}"] = (cable, spec.unit)
            lines.append(f"modbus-rtu {rtu.link} ({rtu.baudrate} 8N1) units {self._units(rtu)}")
        for event in self.config.scenario:
            self._check_target(event.kind, event.target)
        self._scenario_task = asyncio.get_running_loop().create_task(self._run_scenario())
        return lines

    def _check_target(self, kind: str, target: str) -> None:
        if kind == "unplug":
            known = set(self.cables)
        elif kind in FAULTS:
            known = set(self.transmitters)
        else:
            known = set(self.world.rooms)
        if target not in known:
            raise ValueError(
                f"scenario: {kind} of unknown target {target!r} (known: {', '.join(sorted(known))})"
            )

    @staticmethod
    def _units(endpoint: TcpEndpoint | RtuEndpoint) -> str:
        units = [d.unit for d in endpoint.devices] + [r.unit for r in endpoint.relays]
        return ",".join(str(u) for u in units)

    def set_fault(self, target: str, fault: str, on: bool) -> None:
        """Turn a fault on a transmitter (by name) or an unplugged cable (by link) on or off."""
        self._check_target(fault, target)
        self._manual[(target, fault)] = on
        self._apply(target, fault, on)

    def _apply(self, target: str, fault: str, on: bool) -> None:
        if fault == "unplug":
            cable = self.cables[target]
            if on and cable.plugged:
                cable.unplug()
            elif not on and not cable.plugged:
                cable.plug()
            return
        sim = self.transmitters[target]
        if on:
            sim.faults.add(fault)
        else:
            sim.faults.discard(fault)
        if target in self._cable_units and fault in ("silent", "bad_crc"):
            cable, unit = self._cable_units[target]
            units = cable.silent_units if fault == "silent" else cable.bad_crc_units
            if on:
                units.add(unit)
            else:
                units.discard(unit)

    async def _run_scenario(self) -> None:
        applied: dict[tuple[str, str], bool] = {}
        while True:
            for event in self.config.scenario:
                if event.kind not in (*FAULTS, "unplug"):
                    continue
                key = (event.target, event.kind)
                on = self.world.active(event.kind, event.target) or self._manual.get(key, False)
                if applied.get(key) != on:
                    applied[key] = on
                    log.warning(
                        "scenario: %s %s %s", event.kind, event.target, "on" if on else "off"
                    )
                    self._apply(event.target, event.kind, on)
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Stop serving and pull every cable, so its symlink disappears. Safe to call again."""
        try:
            task, self._scenario_task = self._scenario_task, None
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
            servers, self._servers = self._servers, []
            for server in servers:
                await server.shutdown()  # type: ignore[no-untyped-call]
        finally:
            for cable in self.cables.values():
                cable.close()


async def serve(config: SensorsConfig, ready: Callable[[list[str]], None]) -> None:
    """Serve until cancelled (Ctrl-C) or, in the main thread, until SIGTERM; either way the
    servers stop and the RTU links' symlinks are removed."""
    sim = SensorSimulator(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    on_sigterm = False
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, stopping.set)
            on_sigterm = True
    try:
        ready(await sim.start())
        await stopping.wait()
    finally:
        try:
            await sim.stop()
        finally:
            if on_sigterm:
                loop.remove_signal_handler(signal.SIGTERM)
