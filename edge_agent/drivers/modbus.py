"""Modbus buses (TCP and RTU over RS485) behind one small async interface.

pymodbus does the framing; this layer owns one client per bus, lets one request at a time onto
the wire, and turns every library failure into a ``DriverError`` so callers never see pymodbus.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

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

    async def close(self) -> None: ...


@dataclass(frozen=True)
class TcpSettings:
    host: str
    port: int = 502
    timeout_s: float = 1.0
    retries: int = 1


@dataclass(frozen=True)
class RtuSettings:
    device: str
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: float = 1.0
    retries: int = 1


class PymodbusBus:
    """One Modbus bus. Requests are serialised: RS485 carries one frame at a time."""

    def __init__(self, name: str, settings: TcpSettings | RtuSettings) -> None:
        self.name = name
        self._lock = asyncio.Lock()
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
            self._client = AsyncModbusSerialClient(
                settings.device,
                baudrate=settings.baudrate,
                parity=settings.parity,
                stopbits=settings.stopbits,
                bytesize=settings.bytesize,
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
        async with self._lock:
            await self._ensure_connected()
            try:
                response = await self._call(block.function, unit, block.address, block.count)
            except ModbusException as exc:
                raise DeviceError(
                    f"bus {self.name} unit {unit}: no valid answer to FC{block.function} "
                    f"@{block.address}+{block.count}: {exc}"
                ) from exc
            except OSError as exc:
                self._client.close()
                raise BusUnavailable(f"bus {self.name} ({self._where}): {exc}") from exc
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

    async def _call(self, function: FunctionCode, unit: int, address: int, count: int):  # type: ignore[no-untyped-def]
        if function == 3:
            return await self._client.read_holding_registers(address, count=count, device_id=unit)
        return await self._client.read_input_registers(address, count=count, device_id=unit)

    async def close(self) -> None:
        self._client.close()
