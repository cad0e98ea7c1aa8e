"""One raw serial line under asyncio, for protocols that pymodbus does not speak (the box board).

pyserial opens the device and applies the port settings; reads and writes then go straight to
its file descriptor, non-blocking, woken by the event loop (``add_reader``/``add_writer``), so no
thread is held per line and a waiting read can be cancelled. Every failure is a ``DriverError``
with reason ``bus_unavailable``; after a failed read or write the line is closed (``is_open`` is
False) and ``open()`` may be tried again later, as when a USB adapter is plugged back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import termios
from typing import Any

import serial

from edge_agent.drivers.modbus import DriverError

log = logging.getLogger(__name__)

READ_SIZE = 4096


class SerialLine:
    """A serial device opened raw, read and written by one owner at a time."""

    def __init__(
        self,
        device: str,
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
    ) -> None:
        if parity not in ("N", "E", "O", "M", "S"):
            raise ValueError(f"parity {parity!r} is not one of N, E, O, M, S")
        if stopbits not in (1, 2) or bytesize not in (5, 6, 7, 8) or baudrate <= 0:
            raise ValueError(f"unusable port settings {baudrate} {bytesize}{parity}{stopbits}")
        self._device = device
        self._settings = {
            "baudrate": baudrate,
            "parity": parity,
            "stopbits": stopbits,
            "bytesize": bytesize,
        }
        self._port: Any = None
        self._fd: int | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self._read_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()

    @property
    def device(self) -> str:
        return self._device

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    async def open(self) -> None:
        """Open the device (no-op when open), ``exclusive`` so two programs never share a board.

        VMIN is set to 1: with pyserial's VMIN 0 a read of an idle tty returns no bytes instead
        of "would block", and no bytes must mean the device hung up."""
        if self._fd is not None:
            return
        try:
            port = await asyncio.to_thread(
                serial.Serial, self._device, timeout=0, exclusive=True, **self._settings
            )
        except (serial.SerialException, OSError) as exc:
            raise DriverError(
                f"serial line {self._device}: cannot open: {exc}", reason="bus_unavailable"
            ) from exc
        fd: int = port.fileno()
        try:
            attrs = termios.tcgetattr(fd)
            attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error as exc:
            port.close()
            raise DriverError(
                f"serial line {self._device}: cannot set it up: {exc}", reason="bus_unavailable"
            ) from exc
        os.set_blocking(fd, False)
        self._port, self._fd = port, fd
        log.info("serial line %s open", self._device)

    async def read(self) -> bytes:
        """The bytes that have arrived, waiting for at least one."""
        async with self._read_lock:
            while True:
                fd = self._require_open()
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    await self._ready(fd, writable=False)
                    continue
                except OSError as exc:
                    raise self._lost(f"read failed: {exc}") from exc
                if not data:
                    raise self._lost("end of file")
                return data

    async def write(self, data: bytes) -> None:
        async with self._write_lock:
            view = memoryview(data)
            while view:
                fd = self._require_open()
                try:
                    written = os.write(fd, view)
                except BlockingIOError:
                    await self._ready(fd, writable=True)
                    continue
                except OSError as exc:
                    raise self._lost(f"write failed: {exc}") from exc
                view = view[written:]

    async def close(self) -> None:
        self._shut("closed")

    def _require_open(self) -> int:
        if self._fd is None:
            raise DriverError(f"serial line {self._device}: not open", reason="bus_unavailable")
        return self._fd

    async def _ready(self, fd: int, *, writable: bool) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        if writable:
            loop.add_writer(fd, wake)
        else:
            loop.add_reader(fd, wake)
        self._waiters.add(ready)
        try:
            await ready
        finally:
            self._waiters.discard(ready)
            if self._fd == fd:  # once closed, the number may already belong to another file
                if writable:
                    loop.remove_writer(fd)
                else:
                    loop.remove_reader(fd)

    def _lost(self, why: str) -> DriverError:
        log.warning("serial line %s lost: %s", self._device, why)
        self._shut(why)
        return DriverError(f"serial line {self._device}: {why}", reason="bus_unavailable")

    def _shut(self, why: str) -> None:
        """Forget the device: wake every waiter with an error, unregister, close."""
        fd, port = self._fd, self._port
        if fd is None:
            return
        self._fd = self._port = None
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        loop.remove_writer(fd)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(
                    DriverError(f"serial line {self._device}: {why}", reason="bus_unavailable")
                )
        try:
            port.close()
        except OSError as exc:
            log.debug("serial line %s: closing: %s", self._device, exc)
        if why == "closed":
            log.info("serial line %s closed", self._device)
