"""A virtual RS485 cable: two pseudo-terminals joined back to back, with faults on demand.

The simulated transmitters (a pymodbus RTU server) open one pseudo-terminal; the agent opens
the other through a stable symlink (like ``/dev/serial/by-id/...``). Bytes are copied between
the two, so both sides run the real Modbus RTU framing over real serial devices. The cable can
be unplugged (the agent's side disappears, the symlink with it) and plugged in again, and it can
make one unit fall silent or answer with a broken CRC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import termios
import tty
from pathlib import Path

log = logging.getLogger(__name__)


def request_length(buf: bytes) -> int | None:
    """Length of the Modbus RTU request at the start of ``buf``; None if not yet known."""
    if len(buf) < 2:
        return None
    function = buf[1]
    if function in (1, 2, 3, 4, 5, 6):
        return 8
    if function in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    return len(buf)  # unknown function: pass through what we have


def response_length(buf: bytes) -> int | None:
    """Length of the Modbus RTU response at the start of ``buf``; None if not yet known."""
    if len(buf) < 3:
        return None
    function = buf[1]
    if function & 0x80:
        return 5
    if function in (1, 2, 3, 4):
        return 5 + buf[2]
    if function in (5, 6, 15, 16):
        return 8
    return len(buf)


def _raw_pty() -> tuple[int, int, str]:
    """(controller fd, device fd, device path). We keep the device fd open ourselves, so the
    controller never reads EIO (and spins the loop) while nobody else has the device open."""
    controller, device = os.openpty()
    tty.setraw(device)
    attrs = termios.tcgetattr(controller)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(controller, termios.TCSANOW, attrs)
    os.set_blocking(controller, False)
    return controller, device, os.ttyname(device)


class PtyCable:
    def __init__(self, link: Path) -> None:
        self.link = link
        self.silent_units: set[int] = set()
        self.bad_crc_units: set[int] = set()
        self._device_fd, self._device_keep, self.device_path = _raw_pty()
        self._host_fd: int | None = None
        self._host_keep: int | None = None
        self._from_host = b""
        self._from_device = b""
        self._corrupt_next = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def plugged(self) -> bool:
        return self._host_fd is not None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._device_fd, self._device_readable)
        self.plug()

    def plug(self) -> None:
        """Connect the agent's side: a new pseudo-terminal behind the same symlink."""
        if self._host_fd is not None or self._closed:
            return
        assert self._loop is not None
        self._host_fd, self._host_keep, host_path = _raw_pty()
        self._loop.add_reader(self._host_fd, self._host_readable)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(host_path)
        tmp.replace(self.link)
        log.info("cable %s plugged (%s)", self.link, host_path)

    def unplug(self) -> None:
        """Pull the USB adapter: the agent's device and its symlink disappear."""
        if self._host_fd is None or self._loop is None:
            return
        self._loop.remove_reader(self._host_fd)
        for fd in (self._host_fd, self._host_keep):
            with contextlib.suppress(OSError, TypeError):
                os.close(fd)  # type: ignore[arg-type]
        self._host_fd = self._host_keep = None
        self._from_host = b""
        self.link.unlink(missing_ok=True)
        log.info("cable %s unplugged", self.link)

    def close(self) -> None:
        """Unplug for good: the symlink is removed and both pseudo-terminals closed. Safe to
        call again (a descriptor is never closed twice: its number may be reused by then)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.unplug()
        finally:
            if self._loop is not None:
                self._loop.remove_reader(self._device_fd)
            for fd in (self._device_fd, self._device_keep):
                with contextlib.suppress(OSError):
                    os.close(fd)

    # --- copying, with faults ------------------------------------------------------------------

    def _host_readable(self) -> None:
        assert self._host_fd is not None
        try:
            self._from_host += os.read(self._host_fd, 4096)
        except OSError:
            return  # nobody has the agent's side open yet
        while (n := request_length(self._from_host)) is not None and len(self._from_host) >= n:
            frame, self._from_host = self._from_host[:n], self._from_host[n:]
            unit = frame[0]
            if unit in self.silent_units:
                continue  # a dead transmitter: the request goes unanswered
            self._corrupt_next = unit in self.bad_crc_units
            with contextlib.suppress(
                OSError
            ):  # a full device queue loses the frame, as a line would
                os.write(self._device_fd, frame)

    def _device_readable(self) -> None:
        try:
            self._from_device += os.read(self._device_fd, 4096)
        except OSError:
            return
        while (n := response_length(self._from_device)) is not None and len(self._from_device) >= n:
            frame, self._from_device = self._from_device[:n], self._from_device[n:]
            if self._corrupt_next:
                frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
                self._corrupt_next = False
            if self._host_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(self._host_fd, frame)
