"""A simulated device's end of a serial line: a raw pseudo-terminal whose other end the agent
opens through a stable symlink (like ``/dev/serial/by-id/...``), with line noise on demand."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simulators.serial_link import _raw_pty

log = logging.getLogger(__name__)


@dataclass
class NoiseStats:
    garbage_out: int = 0
    corrupted_out: int = 0
    corrupted_in: int = 0


class SimLine:
    def __init__(self, link: Path, name: str, seed: int = 0) -> None:
        self.link = link
        self.name = name
        self.device_path = ""
        self.stats = NoiseStats()
        self._rng = random.Random(seed)
        self._garbage_rate = 0.0
        self._corrupt_rate = 0.0
        self._fd: int | None = None
        self._keep: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_data: Callable[[bytes], None] | None = None
        self._reading = False

    def open(self, on_data: Callable[[bytes], None]) -> None:
        """Make the pseudo-terminal and point the symlink at it (in a running loop)."""
        self._loop = asyncio.get_running_loop()
        self._on_data = on_data
        self._fd, self._keep, self.device_path = _raw_pty()
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.device_path)
        tmp.replace(self.link)

    def close(self) -> None:
        """Remove the symlink (if still ours) and the pseudo-terminal. Safe to call again."""
        self.pause()
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(self.link) == self.device_path:
                self.link.unlink()
        for fd in (self._fd, self._keep):
            with contextlib.suppress(OSError, TypeError):
                os.close(fd)  # type: ignore[arg-type]
        self._fd = self._keep = None

    def resume(self) -> None:
        """Start reading; what the agent sent while nobody read is lost, as on a dead UART."""
        if self._reading or self._fd is None or self._loop is None:
            return
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fd, 4096):
                pass
        self._loop.add_reader(self._fd, self._readable)
        self._reading = True

    def pause(self) -> None:
        """Stop reading (the device lost power)."""
        if self._reading and self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        self._reading = False

    def noise(self, rate: float, corrupt: float | None = None) -> None:
        """With probability ``rate`` garbage bytes precede each write; with probability
        ``corrupt`` (default rate / 4) one bit of a write, or of a read, is flipped."""
        corrupt = rate / 4 if corrupt is None else corrupt
        if not (0 <= rate <= 1 and 0 <= corrupt <= 1):
            raise ValueError("noise rates are probabilities, 0..1")
        self._garbage_rate, self._corrupt_rate = rate, corrupt

    def write(self, data: bytes) -> None:
        if self._fd is None:
            raise RuntimeError(f"{self.name}: the line is not open")
        if self._garbage_rate and self._rng.random() < self._garbage_rate:
            data = self._rng.randbytes(self._rng.randint(1, 8)) + data
            self.stats.garbage_out += 1
        if self._corrupt_rate and self._rng.random() < self._corrupt_rate:
            data = self._flip(data)
            self.stats.corrupted_out += 1
        try:
            os.write(self._fd, data)
        except OSError as exc:  # a full line loses the bytes, as a real one would
            log.warning("%s: %d bytes lost (%s)", self.name, len(data), exc)

    def _readable(self) -> None:
        assert self._fd is not None
        assert self._on_data is not None
        try:
            data = os.read(self._fd, 4096)
        except OSError:
            return  # nobody has the agent's side open yet
        if data and self._corrupt_rate and self._rng.random() < self._corrupt_rate:
            data = self._flip(data)
            self.stats.corrupted_in += 1
        if data:
            self._on_data(data)

    def _flip(self, data: bytes) -> bytes:
        i = self._rng.randrange(len(data))
        return data[:i] + bytes([data[i] ^ (1 << self._rng.randrange(8))]) + data[i + 1 :]
