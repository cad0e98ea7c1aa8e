"""What a reading means: validation, the storeroom's state, and when to record.

Pure: values in, values out, time passed in as seconds. No I/O and no clock reads, so the
rules are tested directly and fast, and the service around them stays a thin loop.

The GSP rules these follow (docs/architecture.md): readings refreshed at least every minute;
recorded at least every 30 minutes in range and every 2 minutes out of range, and at once on
entering or leaving a range; plausible range −25…60 °C and 0…100 %RH.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

PLAUSIBLE_TEMP_C = (-25.0, 60.0)
PLAUSIBLE_RH_PCT = (0.0, 100.0)
#: Faster than this is not air in a storeroom changing, it is a sensor fault or a hand on it.
SPIKE_C_PER_MIN = 5.0
#: GSP maxima for the record interval; configuration may only shorten them.
MAX_RECORD_IN_RANGE_S = 30 * 60
MAX_RECORD_OUT_OF_RANGE_S = 2 * 60


class RoomState(StrEnum):
    NORMAL = "normal"
    WARNING = "warning"
    ALARM = "alarm"


#: From least to most severe.
_ORDER = (RoomState.NORMAL, RoomState.WARNING, RoomState.ALARM)


@dataclass(frozen=True)
class Limits:
    """A storeroom's limits and how its state machine reacts to them."""

    temp_min_c: float = 10.0
    temp_max_c: float = 30.0
    rh_min_pct: float = 35.0
    rh_max_pct: float = 75.0
    #: Within this of a limit (inside the range) is a warning.
    warn_margin_c: float = 1.0
    warn_margin_pct: float = 3.0
    #: To leave a state, values must come back past the boundary by this much.
    hysteresis_c: float = 0.5
    hysteresis_pct: float = 2.0
    #: Consecutive out-of-range samples before the alarm; consecutive good ones to clear it.
    alarm_after_samples: int = 2
    clear_after_samples: int = 2

    def in_range(self, t: float, rh: float) -> bool:
        return self.temp_min_c <= t <= self.temp_max_c and self.rh_min_pct <= rh <= self.rh_max_pct

    def _inside_by(self, t: float, rh: float, margin_c: float, margin_pct: float) -> bool:
        return (
            self.temp_min_c + margin_c <= t <= self.temp_max_c - margin_c
            and self.rh_min_pct + margin_pct <= rh <= self.rh_max_pct - margin_pct
        )

    def level(self, t: float, rh: float, current: RoomState) -> RoomState:
        """The state these values call for, with hysteresis around each boundary."""
        hc, hp = self.hysteresis_c, self.hysteresis_pct
        if not self.in_range(t, rh):
            return RoomState.ALARM
        if current is RoomState.ALARM and not self._inside_by(t, rh, hc, hp):
            return RoomState.ALARM  # back in range, but not yet clearly
        wc, wp = self.warn_margin_c, self.warn_margin_pct
        if current is RoomState.NORMAL:
            return RoomState.NORMAL if self._inside_by(t, rh, wc, wp) else RoomState.WARNING
        return RoomState.NORMAL if self._inside_by(t, rh, wc + hc, wp + hp) else RoomState.WARNING


@dataclass(frozen=True)
class Transition:
    """A room's change of state; ``temperature_c``/``humidity_pct`` are ``sensor``'s reading."""

    storeroom: str
    before: RoomState
    after: RoomState
    temperature_c: float
    humidity_pct: float
    sensor: str


@dataclass
class RoomMonitor:
    """One storeroom's state: normal → warning → alarm (after N samples) → back.

    Fed each valid reading of each of the room's sensors; the room follows its worst sensor.
    An alarm needs ``alarm_after_samples`` consecutive out-of-range readings, and clears only
    after ``clear_after_samples`` consecutive readings clearly inside, so a value hovering on a
    limit does not flap.
    """

    storeroom: str
    limits: Limits
    state: RoomState = RoomState.NORMAL
    _latest: dict[str, tuple[float, float]] = field(default_factory=dict)
    _out_runs: dict[str, int] = field(default_factory=dict)
    _good_run: int = 0

    def forget(self, sensor: str) -> None:
        """A sensor that stopped giving valid readings no longer speaks for the room."""
        self._latest.pop(sensor, None)
        self._out_runs.pop(sensor, None)

    def feed(self, sensor: str, t: float, rh: float) -> Transition | None:
        """Take one valid reading; return the room's change of state, if any.

        A change names the sensor whose values call for the new state (the worst one; the
        sensor just read when it is among the worst) and carries that sensor's values, so an
        event never pairs one sensor's name with another's reading.
        """
        self._latest[sensor] = (t, rh)
        levels = {
            name: self.limits.level(st, srh, self.state) for name, (st, srh) in self._latest.items()
        }
        worst = max(levels.values(), key=_ORDER.index)
        speaker = (
            sensor if levels[sensor] is worst else min(n for n, lv in levels.items() if lv is worst)
        )
        out = not self.limits.in_range(t, rh)
        self._out_runs[sensor] = self._out_runs.get(sensor, 0) + 1 if out else 0
        confirmed = max(self._out_runs.values()) >= self.limits.alarm_after_samples
        target = worst
        rising = self.state is not RoomState.ALARM and target is RoomState.ALARM
        if rising and not confirmed:
            target = RoomState.WARNING if self.state is RoomState.NORMAL else self.state
        if self.state is RoomState.ALARM and target is not RoomState.ALARM:
            self._good_run += 1
            if self._good_run < self.limits.clear_after_samples:
                target = RoomState.ALARM
        else:
            self._good_run = 0
        if target is self.state:
            return None
        before, self.state = self.state, target
        self._good_run = 0
        speaker_t, speaker_rh = self._latest[speaker]
        return Transition(self.storeroom, before, target, speaker_t, speaker_rh, speaker)


@dataclass
class RecordPolicy:
    """When a sensor's reading becomes a record that goes to the server."""

    in_range_s: float = MAX_RECORD_IN_RANGE_S
    out_of_range_s: float = MAX_RECORD_OUT_OF_RANGE_S
    #: The time to the next reading: a record is taken now if waiting for that one would
    #: overshoot the interval.
    slack_s: float = 0.0
    _last_at: float | None = None
    _last_in_range: bool | None = None

    def __post_init__(self) -> None:
        self.in_range_s = min(self.in_range_s, MAX_RECORD_IN_RANGE_S)
        self.out_of_range_s = min(self.out_of_range_s, MAX_RECORD_OUT_OF_RANGE_S)

    def due(self, now: float, in_range: bool) -> bool:
        """Whether to record now; if so the policy counts it as recorded."""
        interval = self.in_range_s if in_range else self.out_of_range_s
        due = (
            self._last_at is None
            or in_range != self._last_in_range
            or now - self._last_at + self.slack_s > interval
            or now - self._last_at >= interval
        )
        if due:
            self._last_at, self._last_in_range = now, in_range
        return due


class Quality(StrEnum):
    SPIKE = "spike"
    STUCK = "stuck"
    CALIBRATION_DUE = "calibration_due"
    CALIBRATION_EXPIRED = "calibration_expired"


@dataclass
class SensorHealth:
    """Validation of one sensor's readings over time: plausibility, spikes, stuck values, faults.

    ``check`` returns the quality flags of a reading, or None when the reading is not valid
    at all. ``fault_after_s`` without a valid reading makes the sensor faulty (``faulty``
    turns true once, for one fault event); the next valid reading recovers it.
    """

    fault_after_s: float = 120.0
    stuck_after_s: float = 3600.0
    spike_c_per_min: float = SPIKE_C_PER_MIN
    #: After this many spikes in a row the new level is taken as real.
    spikes_to_accept: int = 3
    _last_valid_at: float | None = None
    _last: tuple[float, float] | None = None
    _accepted: tuple[float, float] | None = None
    _accepted_at: float | None = None
    _spikes: int = 0
    _unchanged_since: float | None = None
    _started_at: float | None = None
    faulty: bool = False

    def check(self, now: float, t: float, rh: float) -> list[Quality] | None:
        if self._started_at is None:
            self._started_at = now
        if not (
            PLAUSIBLE_TEMP_C[0] <= t <= PLAUSIBLE_TEMP_C[1]
            and PLAUSIBLE_RH_PCT[0] <= rh <= PLAUSIBLE_RH_PCT[1]
        ):
            return None
        flags: list[Quality] = []
        if self._accepted is not None and self._accepted_at is not None:
            minutes = max((now - self._accepted_at) / 60, 1 / 60)
            if abs(t - self._accepted[0]) / minutes > self.spike_c_per_min:
                self._spikes += 1
                if self._spikes < self.spikes_to_accept:
                    flags.append(Quality.SPIKE)
        if Quality.SPIKE not in flags:
            self._accepted, self._accepted_at, self._spikes = (t, rh), now, 0
        if self._last == (t, rh):
            since = self._unchanged_since
            if since is not None and now - since >= self.stuck_after_s:
                flags.append(Quality.STUCK)
        else:
            self._unchanged_since = now
        self._last = (t, rh)
        self._last_valid_at = now
        return flags

    def fault_deadline(self) -> float | None:
        """When the sensor becomes faulty if no valid reading comes before."""
        since = self._last_valid_at if self._last_valid_at is not None else self._started_at
        return None if since is None else since + self.fault_after_s

    def fault_due(self, now: float) -> bool:
        """True once when no valid reading has come for ``fault_after_s``."""
        since = self._last_valid_at if self._last_valid_at is not None else self._started_at
        if since is None:
            self._started_at = since = now
        if not self.faulty and now - since >= self.fault_after_s:
            self.faulty = True
            return True
        return False

    def recovered(self) -> bool:
        """True once when a faulty sensor gave a valid reading (call after ``check``)."""
        if self.faulty and self._last_valid_at is not None:
            self.faulty = False
            return True
        return False


@dataclass(frozen=True)
class Sample:
    """One sensor's valid reading and the monotonic time (seconds) it was read."""

    temperature_c: float
    humidity_pct: float
    at: float


@dataclass(frozen=True)
class Disagreement:
    """Two sensors of one room, read close together, further apart than the margin."""

    sensors: tuple[str, str]
    samples: tuple[Sample, Sample]
    delta_c: float
    delta_pct: float

    @property
    def apart_s(self) -> float:
        """How far apart in time the two compared readings were taken."""
        return abs(self.samples[0].at - self.samples[1].at)


def disagreement(
    samples: Mapping[str, Sample], margin_c: float, margin_pct: float, within_s: float
) -> Disagreement | None:
    """The worst pair (largest Δ°C, then Δ%RH) further apart than the margin, of the pairs whose
    readings were taken within ``within_s`` of each other; values read at different moments are
    never compared."""
    worst: Disagreement | None = None
    names = sorted(samples)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            sa, sb = samples[a], samples[b]
            if abs(sa.at - sb.at) > within_s:
                continue
            dt = round(abs(sa.temperature_c - sb.temperature_c), 2)
            drh = round(abs(sa.humidity_pct - sb.humidity_pct), 2)
            if not (dt > margin_c or drh > margin_pct):
                continue
            if worst is None or (dt, drh) > (worst.delta_c, worst.delta_pct):
                worst = Disagreement((a, b), (sa, sb), dt, drh)
    return worst


@dataclass
class AgreementMonitor:
    """Whether a room's sensors agree, judged only on readings taken close together.

    Each sensor's latest valid reading is kept with the time it was read. On each new reading
    the readings of the last ``within_s`` (so all read within ``within_s`` of each other) are
    compared: one further apart than the margin starts an episode (``feed`` returns it, once);
    an episode ends when readings taken together agree again. When no two readings are recent
    enough to compare, nothing is concluded either way.
    """

    margin_c: float
    margin_pct: float
    within_s: float
    disagreeing: bool = False
    _latest: dict[str, Sample] = field(default_factory=dict)

    def forget(self, sensor: str) -> None:
        self._latest.pop(sensor, None)

    def feed(self, sensor: str, at: float, t: float, rh: float) -> Disagreement | None:
        self._latest[sensor] = Sample(t, rh, at)
        recent = {n: s for n, s in self._latest.items() if abs(at - s.at) <= self.within_s}
        if len(recent) < 2:
            return None
        found = disagreement(recent, self.margin_c, self.margin_pct, self.within_s)
        if found is None:
            self.disagreeing = False
            return None
        if self.disagreeing:
            return None
        self.disagreeing = True
        return found
