"""The simulated world the transmitters measure: storerooms over a day, weather, incidents.

Time runs ``time_scale`` times faster than the wall clock, so a demo shows an air-conditioning
failure push a room over 30 °C in minutes. Everything is a closed-form function of simulated
time (plus a seeded random walk), so a reading can be computed whenever a transmitter is asked.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from edge_agent.configfile import Strict, between

AC_FAILURE_C = 34.0
WET_PCT = 88.0
TAU_H = 0.5

Incident = Literal["ac_failure", "wet_week", "door_open"]
Fault = Literal["silent", "bad_crc", "frozen", "nonsense", "unplug"]


class RoomConfig(Strict):
    id: str
    base_c: Annotated[float, between(-20, 50)] = 21.0
    base_pct: Annotated[float, between(5, 95)] = 55.0
    #: Half the day-night swing.
    daily_c: Annotated[float, between(0, 15)] = 2.0
    daily_pct: Annotated[float, between(0, 30)] = 5.0
    #: Weather: a slow random walk, this many units per square-root hour.
    drift_c: Annotated[float, between(0, 5)] = 0.2
    drift_pct: Annotated[float, between(0, 10)] = 1.0
    seed: int = 1


class ScenarioEvent(Strict):
    """At ``at_h`` simulated hours, for ``duration_h``: an incident in a room or a fault on a
    transmitter (``target`` is a room id, a transmitter name, or an RTU cable's link path)."""

    at_h: Annotated[float, between(0, 10_000)]
    duration_h: Annotated[float, between(0, 10_000)]
    kind: Incident | Fault
    target: str


@dataclass
class _Walk:
    rng: random.Random
    step_h: float = 0.25
    value: float = 0.0
    at_h: float = 0.0

    def at(self, hours: float, scale: float) -> float:
        while self.at_h + self.step_h <= hours:
            self.at_h += self.step_h
            self.value += self.rng.gauss(0, scale * math.sqrt(self.step_h))
            self.value *= 0.98  # weather returns to the seasonal mean
        return self.value


def _approach(start: float, target: float, hours: float) -> float:
    return target + (start - target) * math.exp(-max(hours, 0.0) / TAU_H)


class World:
    def __init__(
        self,
        rooms: list[RoomConfig],
        scenario: list[ScenarioEvent],
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rooms = {r.id: r for r in rooms}
        self.scenario = scenario
        self.time_scale = time_scale
        self._clock = clock
        self._t0 = clock()
        self._walks = {
            r.id: (_Walk(random.Random(r.seed)), _Walk(random.Random(r.seed + 1000))) for r in rooms
        }

    def hours(self) -> float:
        return (self._clock() - self._t0) * self.time_scale / 3600

    def active(self, kind: str, target: str, hours: float | None = None) -> bool:
        h = self.hours() if hours is None else hours
        return any(
            e.kind == kind and e.target == target and e.at_h <= h < e.at_h + e.duration_h
            for e in self.scenario
        )

    def room(self, room_id: str, hours: float | None = None) -> tuple[float, float]:
        """Temperature and humidity in a room at simulated ``hours``."""
        h = self.hours() if hours is None else hours
        r = self.rooms[room_id]
        walk_t, walk_rh = self._walks[room_id]
        phase = 2 * math.pi * (h - 9) / 24  # warmest mid-afternoon
        t = r.base_c + r.daily_c * math.sin(phase) + walk_t.at(h, r.drift_c)
        rh = r.base_pct - r.daily_pct * math.sin(phase) + walk_rh.at(h, r.drift_pct)
        for e in self.scenario:
            if e.target != room_id or h < e.at_h:
                continue
            since, end = h - e.at_h, e.at_h + e.duration_h
            if e.kind == "ac_failure":
                peak = _approach(t, AC_FAILURE_C, min(since, e.duration_h))
                t = peak if h < end else _approach(peak, t, h - end)
            elif e.kind == "wet_week":
                peak = _approach(rh, WET_PCT, min(since, e.duration_h))
                rh = peak if h < end else _approach(peak, rh, h - end)
            elif e.kind == "door_open" and h < end:
                t, rh = t + 1.5, rh + 6
        return t, min(100.0, max(0.0, rh))
