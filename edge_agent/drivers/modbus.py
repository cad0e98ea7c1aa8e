"""Modbus buses (TCP and RTU over RS485) behind one small async interface.

pymodbus does the framing; this layer owns one client per bus, lets one request at a time onto
the wire, and turns every library failure into a ``DriverError`` so callers never see pymodbus:
each carries a short ``reason`` code for programs (and people's translations) and an English
message for the log. pymodbus's own logging (an ERROR with a dump of the last raw frames for
every timeout) stays silent unless the agent logs at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from edge_agent.drivers.registers import FunctionCode, ReadBlock

log = logging.getLogger(__name__)

#: Why a request failed:
#: - ``no_response``: nothing came back within the timeout (dead or absent device, wrong address);
#: - ``exception``: the device answered with a Modbus exception (``exception_code`` says which);
#: - ``bad_answer``: something came back, but not a valid answer (CRC, framing, too short);
#: - ``bus_unavailable``: the port cannot be opened or the gateway cannot be reached.
Reason = Literal["no_response", "exception", "bad_answer", "bus_unavailable"]

#: Modbus exception codes, as the specification names them.
EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "device failure",
    0x05: "acknowledge",
    0x06: "device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}

#: The loggers pymodbus writes to (``pymodbus.logging`` and any below it).
LIBRARY_LOGGER = "pymodbus"


def quiet_library_logs(debug: bool) -> None:
    """Let pymodbus log only when debugging.

    pymodbus logs every unanswered request at ERROR followed by a dump of up to 20 raw frames;
    the driver already reports each failure as a ``DriverError``, so outside DEBUG the library
    is silenced. With ``debug`` its loggers inherit the agent's level again and every frame is
    logged. ``PymodbusBus`` calls this with whether this module logs at DEBUG.
    """
    logging.getLogger(LIBRARY_LOGGER).setLevel(logging.NOTSET if debug else logging.CRITICAL)


class DriverError(Exception):
    """A device or bus failed; the message says which and why, ``reason`` says how."""

    reason: Reason = "no_response"

    def __init__(
        self, message: str, *, reason: Reason | None = None, exception_code: int | None = None
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        #: The Modbus exception code when ``reason`` is ``"exception"``, else None.
        self.exception_code = exception_code


class BusUnavailable(DriverError):
    """The bus cannot be opened or reached (adapter unplugged, gateway down)."""

    reason: Reason = "bus_unavailable"


class DeviceError(DriverError):
    """The bus works but the device did not answer properly."""


class ModbusBus(Protocol):
    name: str

    async def read(self, unit: int, block: ReadBlock) -> Sequence[int]: ...

    async def write_coil(self, unit: int, coil: int, on: bool, *, urgent: bool = False) -> None: ...

    async def close(self) -> None: ...


def raise_if_cancelled() -> None:
    """Raise the cancellation a library swallowed. pymodbus waits with ``asyncio.wait_for``,
    which on Python 3.11 returns the answer and drops a cancellation that arrives with it
    (CPython gh-86296): the poll loop would then run on, and the agent never stop. The task
    still counts the request, so it is raised here, after every call into pymodbus."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


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
        quiet_library_logs(debug=log.isEnabledFor(logging.DEBUG))
        self.name = name
        self._lock = BusLock()
        self._gap_s = settings.frame_gap_s
        self._timeout = f"timeout {settings.timeout_s} s" + (
            f", {settings.retries + 1} tries" if settings.retries else ""
        )
        self._heard = False  # whether any byte came back during the current request
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if isinstance(settings, TcpSettings):
            self._where = f"{settings.host}:{settings.port}"
            self._client = AsyncModbusTcpClient(
                settings.host,
                port=settings.port,
                timeout=settings.timeout_s,
                retries=settings.retries,
                reconnect_delay=0,
                trace_packet=self._trace,
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
                trace_packet=self._trace,
            )

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus shows us every packet; note whether anything came back."""
        if not sending and data:
            self._heard = True
        return data

    async def _ensure_connected(self) -> None:
        if self._client.connected:
            return
        try:
            ok = await self._client.connect()
            raise_if_cancelled()
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise BusUnavailable(f"bus {self.name} ({self._where}): cannot open: {why}") from exc
        except ModbusException as exc:
            raise BusUnavailable(f"bus {self.name} ({self._where}): cannot open") from exc
        if not ok:
            raise BusUnavailable(f"bus {self.name} ({self._where}): cannot connect")

    async def read(self, unit: int, block: ReadBlock) -> Sequence[int]:
        what = f"FC{block.function} @{block.address}+{block.count}"
        response = await self._transact(
            unit, what, lambda: self._call(block.function, unit, block.address, block.count)
        )
        registers: list[int] = list(response.registers)
        if len(registers) < block.count:
            raise DeviceError(
                f"bus {self.name} unit {unit}: short answer to {what}: "
                f"{len(registers)} of {block.count} registers",
                reason="bad_answer",
            )
        return registers[: block.count]

    async def write_coil(self, unit: int, coil: int, on: bool, *, urgent: bool = False) -> None:
        await self._transact(
            unit,
            f"FC5 coil {coil} {'on' if on else 'off'}",
            lambda: self._client.write_coil(coil, on, device_id=unit),
            urgent=urgent,
        )

    async def _transact(
        self, unit: int, what: str, call: Callable[[], Awaitable[Any]], urgent: bool = False
    ) -> Any:
        """One request on the bus: alone on the wire, then the quiet gap before the next.
        Returns the response; a Modbus exception response is raised as a ``DeviceError``."""
        async with self._lock.hold(urgent):
            await self._ensure_connected()
            self._heard = False
            try:
                response = await call()
                raise_if_cancelled()
            except ConnectionException as exc:
                raise BusUnavailable(f"bus {self.name} ({self._where}): not connected") from exc
            except ModbusException as exc:
                if self._heard:
                    raise DeviceError(
                        f"bus {self.name} unit {unit}: no valid answer to {what} "
                        "(bad CRC or framing)",
                        reason="bad_answer",
                    ) from exc
                raise DeviceError(
                    f"bus {self.name} unit {unit}: no response to {what} ({self._timeout})",
                    reason="no_response",
                ) from exc
            except OSError as exc:
                self._client.close()
                why = exc.strerror or type(exc).__name__
                raise BusUnavailable(f"bus {self.name} ({self._where}): {why}") from exc
            finally:
                if self._gap_s:
                    await asyncio.sleep(self._gap_s)
        if response.isError():
            code = getattr(response, "exception_code", None)
            name = EXCEPTION_NAMES.get(code, "unknown") if isinstance(code, int) else "unknown"
            shown = f"{code:02X}" if isinstance(code, int) else "?"
            raise DeviceError(
                f"bus {self.name} unit {unit}: exception {shown} ({name}) to {what}",
                reason="exception",
                exception_code=code if isinstance(code, int) else None,
            )
        return response

    async def _call(self, function: FunctionCode, unit: int, address: int, count: int):  # type: ignore[no-untyped-def]
        if function == 3:
            return await self._client.read_holding_registers(address, count=count, device_id=unit)
        return await self._client.read_input_registers(address, count=count, device_id=unit)

    async def close(self) -> None:
        self._client.close()
