"""How much of one agent's bad input is kept: pure bookkeeping, time passed in.

A buggy or hostile sender can produce refusals as fast as the broker delivers. Each agent may
have ``per_window`` refusals kept (stored as dead letters, logged, answered with a ``Nack``)
in each window; beyond that a refusal is only counted, and the count is logged once when the
window closes. Memory is one small entry per agent that refused something recently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass
class _Window:
    start: datetime
    kept: int = 0
    dropped: int = 0


class RefusalLimit:
    def __init__(self, per_window: int, window: timedelta = timedelta(minutes=1)) -> None:
        self.per_window = per_window
        self.window = window
        self._windows: dict[str, _Window] = {}

    def allow(self, agent: str, now: datetime) -> bool:
        """Whether this refusal of ``agent`` is kept (True) or only counted (False)."""
        w = self._windows.get(agent)
        if w is None or now - w.start >= self.window:
            w = self._windows[agent] = _Window(now)
        if w.kept < self.per_window:
            w.kept += 1
            return True
        w.dropped += 1
        return False

    def closed(self, now: datetime) -> dict[str, int]:
        """Agents whose window has ended, with how many refusals were only counted in it;
        forgets them."""
        done = {a: w for a, w in self._windows.items() if now - w.start >= self.window}
        for agent in done:
            del self._windows[agent]
        return {a: w.dropped for a, w in done.items() if w.dropped}
