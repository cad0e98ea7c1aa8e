"""Time stamps for events on a computer that may have no real-time clock.

A Raspberry Pi boots with whatever time it last saved. Every event therefore carries, beside
its wall-clock time, whether the kernel considered the clock synchronised, the boot id and the
monotonic time since boot, so that the server can re-date events recorded before a clock fix.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"


@dataclass(frozen=True)
class Stamp:
    occurred_at: datetime
    clock_synced: bool
    boot_id: str
    mono_s: float


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        return None


def kernel_clock_synchronised() -> bool:
    """Ask the kernel (adjtimex) whether NTP or similar has synchronised the clock."""
    libc = _libc()
    if libc is None:
        return False
    try:
        buf = ctypes.create_string_buffer(512)  # larger than struct timex; modes=0 reads only
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError) as exc:
        log.warning("cannot read clock state with adjtimex: %s", exc)
        return False
    return state not in (-1, _TIME_ERROR)


def read_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        # Not Linux: one id per process is the best stand-in (monotonic restarts with it anyway).
        return str(uuid.uuid4())


class Clock:
    """The agent's one source of time; rules never read the clock themselves."""

    def __init__(self, synchronised: Callable[[], bool] = kernel_clock_synchronised) -> None:
        self._synchronised = synchronised
        self.boot_id = read_boot_id()

    def stamp(self) -> Stamp:
        return Stamp(
            occurred_at=datetime.now(UTC),
            clock_synced=self._synchronised(),
            boot_id=self.boot_id,
            mono_s=time.monotonic(),
        )
