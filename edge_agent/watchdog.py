"""systemd supervision: READY and WATCHDOG notifications, sent only while the agent is healthy.

A hung agent must be restarted, not only a dead one. The watchdog pings come from a task on the
agent's own event loop, so a blocked loop stops them; and each part of the agent (the link, the
climate loop) must have beaten recently, so a part stuck while the loop still runs stops them
too. Then systemd's ``WatchdogSec`` kills and restarts the service.

The notify protocol is one datagram to ``$NOTIFY_SOCKET``; it is written here directly rather
than pulling in a library for fifteen lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def sd_notify(message: str, env: Mapping[str, str] = os.environ) -> bool:
    """Send ``message`` to systemd; False when not run by systemd (no socket)."""
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", env.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """Half of systemd's watchdog timeout, or None when no watchdog is asked for."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 2_000_000)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None


class Watchdog:
    def __init__(
        self,
        interval_s: float | None,
        env: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._env = env
        self._clock = clock
        self._limits: dict[str, float] = {}
        self._beats: dict[str, float] = {}
        self._reported: frozenset[str] = frozenset()

    def register(self, name: str, max_age_s: float) -> Callable[[], None]:
        """Declare a part that must beat at least every ``max_age_s``; return its beat."""
        self._limits[name] = max_age_s
        self._beats[name] = self._clock()
        return lambda: self.beat(name)

    def beat(self, name: str) -> None:
        self._beats[name] = self._clock()

    def stale(self) -> list[str]:
        now = self._clock()
        return sorted(n for n, limit in self._limits.items() if now - self._beats[n] > limit)

    async def run(self) -> None:
        sd_notify("READY=1", self._env)
        if self.interval_s is None:
            return
        while True:
            stale = self.stale()
            if not stale:
                sd_notify("WATCHDOG=1", self._env)
                if self._reported:
                    log.warning("all parts beating again; watchdog pings resumed")
            elif frozenset(stale) != self._reported:
                log.error("parts not responding: %s; withholding watchdog pings", ", ".join(stale))
            self._reported = frozenset(stale)
            await asyncio.sleep(self.interval_s)
