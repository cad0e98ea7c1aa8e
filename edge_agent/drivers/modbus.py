"""Modbus buses (TCP and RTU over RS485) behind one small async interface.

pymodbus does the framing; this layer owns one client per bus, lets one request at a time onto
the wire, and turns every library failure into a ``DriverError`` so callers never see pymodbus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge_agent.drivers.registers import FunctionCode, ReadBlock

log = logging.getLogger(__name__)


class DriverError(Exception):
    """A device or bus failed; the message says which and why."""


class BusUnavailable(DriverError):
    """The bus cannot be opened or reached (adapter unplugged, gateway down)."""


class DeviceError(DriverError):
    """The bus works but the device did not answer properly."""


class ModbusBus(Protocol):
    name: str

    async def read(self, unit: int, block: ReadBlock) -> Sequence[int]: ...

    async def write_coil(self, unit: int, coil: int, on: bool, *, urgent: bool = False) -> None: ...

    async def close(self) -> None: ...


class BusLock:
    """One transaction at a time on a bus, first come first served, except that an urgent
    request (an alarm output) goes before every waiting ordinary one: behind a row of dead
    transmitters, each holding the bus for its timeout, the alarm would otherwise wait."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._urgent = 0
        self._no_urgent = asyncio.Event()
        self._no_urgent.set()

    @contextlib.asynccontextmanager
    async def hold(self, urgent: bool = False) -> AsyncIterator[None]:
        if urgent:
            self._urgent += 1
            self._no_urgent.clear()
        try:
            while True:
                await self._lock.acquire()
                if urgent or not self._urgent:
                    break
                self._lock.release()  # let the urgent one in first
                await self._no_urgent.wait()
            try:
                yield
            finally:
                self._lock.release()
        finally:
            if urgent:
                self._urgent -= 1
                if not self._urgent:
                    self._no_urgent.set()


@dataclass(frozen=True)
class TcpSettings:
    host: str
    port: int = 502
    timeout_s: float = 1.0
    retries: int = 1
    frame_gap_s: float = 0.0


@dataclass(frozen=True)
class RtuSettings:
    device: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: float = 1.0
    retries: int = 1
    frame_gap_s: float = 0.005
    local_echo: bool = False

    @property
    def min_gap_s(self) -> float:
        """Modbus RTU's 3.5 character times of silence (11 bits a character)."""
        return 3.5 * 11 / self.baudrate


class PymodbusBus:
    """One Modbus bus. Requests are serialised: RS485 carries one frame at a time."""

    def __init__(self, name: str, settings: TcpSettings | RtuSettings) -> None:
        self.name = name
        self._lock = BusLock()
        self._gap_s = settings.frame_gap_s
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if isinstance(settings, TcpSettings):
            self._where = f"{settings.host}:{settings.port}"
            self._client = AsyncModbusTcpClient(
                settings.host,
                port=settings.port,
                timeout=settings.timeout_s,
                retries=settings.retries,
                reconnect_delay=0,
            )
        else:
            self._where = settings.device
            self._gap_s = max(settings.frame_gap_s, settings.min_gap_s)
            self._client = AsyncModbusSerialClient(
                settings.device,
                baudrate=settings.baudrate,
                parity=settings.parity,
                stopbits=settings.stopbits,
                bytesize=settings.bytesize,
                handle_local_echo=settings.local_echo,
                timeout=settings.timeout_s,
                retries=settings.retries,
                reconnect_delay=0,
            )

    async def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        try:
            ok = await self._client.connect()
        except (ModbusException, OSError) as exc:
            raise BusUnavailable(f"bus {self.name} ({self._where}): cannot open: {exc}") from exc
        if not ok:
            raise BusUnavailable(f"bus {self.name} ({self._where}): cannot connect")

    async def read(self, unit: int, block: ReadBlock) -> Sequence[int]:
        what = f"FC{block.function} @{block.address}+{block.count}"
        response = await self._transact(
            unit, what, lambda: self._call(block.function, unit, block.address, block.count)
        )
        if response.isError():
            raise DeviceError(
                f"bus {self.name} unit {unit}: exception response "
                f"{getattr(response, 'exception_code', '?')} to FC{block.function} "
                f"@{block.address}+{block.count}"
            )
        registers: list[int] = list(response.registers)
        if len(registers) < block.count:
            raise DeviceError(
                f"bus {self.name} unit {unit}: asked {block.count} registers, got {len(registers)}"
            )
        return registers[: block.count]

    async def write_coil(self, unit: int, coil: int, on: bool, *, urgent: bool = False) -> None:
        response = await self._transact(
            unit,
            f"FC5 coil {coil}",
            lambda: self._client.write_coil(coil, on, device_id=unit),
            urgent=urgent,
        )
        if response.isError():
            raise DeviceError(f"bus {self.name} unit {unit}: coil {coil} not set: {response}")

    async def _transact(
        self, unit: int, what: str, call: Callable[[], Awaitable[Any]], urgent: bool = False
    ) -> Any:
        """One request on the bus: alone on the wire, then the quiet gap before the next."""
        async with self._lock.hold(urgent):
            await self._ensure_connected()
            try:
                return await call()
            except ModbusException as exc:
                if not self._client.connected:
                    raise BusUnavailable(f"bus {self.name} ({self._where}): {exc}") from exc
                raise DeviceError(
                    f"bus {self.name} unit {unit}: no valid answer to {what}: {exc}"
                ) from exc
            except OSError as exc:
                self._client.close()
                raise BusUnavailable(f"bus {self.name} ({self._where}): {exc}") from exc
            finally:
                if self._gap_s:
                    await asyncio.sleep(self._gap_s)

    async def _call(self, function: FunctionCode, unit: int, address: int, count: int):  # type: ignore[no-untyped-def]
        if function == 3:
            return await self._client.read_holding_registers(address, count=count, device_id=unit)
        return await self._client.read_input_registers(address, count=count, device_id=unit)

    async def close(self) -> None:
        self._client.close()
