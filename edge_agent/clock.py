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
from typing import Literal

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
    """The agent's one source of time; rules never read the clock themselves.

    When the kernel's clock is not synchronised (no RTC, no NTP yet), the agent adopts the
    server's time as an offset to its own wall clock: events are then stamped with corrected
    times and marked synchronised. The system clock itself is left alone (setting it needs
    privileges the agent does not have); NTP or an operator sets that.
    """

    def __init__(
        self,
        synchronised: Callable[[], bool] = kernel_clock_synchronised,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._synchronised = synchronised
        self._wall = wall
        self._monotonic = monotonic
        self._offset_s: float | None = None
        self.boot_id = read_boot_id()

    @property
    def source(self) -> Literal["kernel", "server", "unsynced"]:
        if self._synchronised():
            return "kernel"
        return "server" if self._offset_s is not None else "unsynced"

    def adopt(self, server_time: datetime) -> bool:
        """Take the server's time when our own is not trustworthy; say whether it was taken."""
        if self._synchronised():
            self._offset_s = None
            return False
        offset = server_time.timestamp() - self._wall()
        if self._offset_s is None or abs(offset - self._offset_s) > 1.0:
            log.info("clock not synchronised; adopting server time (offset %+.1f s)", offset)
        self._offset_s = offset
        return True

    def now(self) -> datetime:
        return self.stamp().occurred_at

    def stamp(self) -> Stamp:
        synced = self._synchronised()
        wall = self._wall()
        if not synced and self._offset_s is not None:
            wall += self._offset_s
            synced = True
        return Stamp(
            occurred_at=datetime.fromtimestamp(wall, UTC),
            clock_synced=synced,
            boot_id=self.boot_id,
            mono_s=self._monotonic(),
        )
