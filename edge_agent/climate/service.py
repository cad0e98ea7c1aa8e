"""The climate loop: read every transmitter, judge each reading, record, alarm.

This is the thin I/O shell around the pure rules (``rules.py``): one task per sensor reads its
registers, the rules decide what the reading means, and what they decide becomes outbox events
and the state of the room's sound-and-light output. Time for the rules is the loop's monotonic
clock; wall time only goes into the events' stamps.

Schedule: every sensor is read on one common grid, every ``poll_interval_s`` from the service's
start, so the sensors of a room are read together (within one round of the bus) and their
readings can be compared. A sensor that fails is asked again at the next tick like every other
(and once more at its fault deadline), so a transmitter that answers again is read within one
poll interval plus its timeout. A dead sensor costs its bus one timeout per poll interval. There
is no longer a per-sensor backoff: it could only ever have been capped at one poll interval,
which is the grid itself; ``climate.sensor_backoff_max_s`` is still accepted but has no effect.

Liveness: the climate part's watchdog heartbeat comes from its own small task, which beats
while every sensor's loop keeps its schedule: sleeping until its next tick, or inside a poll
for less than ``poll_stuck_after_s``. A sensor that fails (or a whole bus of dead sensors) is a
healthy loop and keeps the agent alive; a loop that hangs stops the heartbeat.

What people read about a fault is chosen by the server from the fault's ``reason`` code; the
library's error text goes to the log only.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import cast, get_args

from pydantic import BaseModel

from edge_agent.buses import Buses
from edge_agent.climate.alarm import AlarmOutputs
from edge_agent.climate.rules import (
    AgreementMonitor,
    Disagreement,
    Limits,
    Quality,
    RecordPolicy,
    RoomMonitor,
    RoomState,
    SensorHealth,
    Transition,
)
from edge_agent.clock import Clock
from edge_agent.config import ClimateSection, Sensor, Storeroom
from edge_agent.drivers.modbus import BusUnavailable, DriverError, ModbusBus
from edge_agent.drivers.registers import (
    PROFILES,
    ClimateMap,
    ReadBlock,
    RegisterDecodeError,
    RegisterField,
    plan_reads,
    read_values,
)
from edge_agent.outbox import AsyncOutbox
from edge_agent.wire import (
    AlarmSilenced,
    CalibrationNotice,
    ClimateRecord,
    FaultReason,
    RoomStateChange,
    SensorDisagreement,
    SensorFault,
    SensorRecovered,
)

log = logging.getLogger(__name__)

CALIBRATION_DUE_DAYS = 335  # about 11 months
CALIBRATION_EXPIRED_DAYS = 365

#: A poll (waiting for the bus included) running longer than this is a hung loop: the climate
#: heartbeat stops and the watchdog has the agent restarted.
POLL_STUCK_AFTER_S = 120.0
#: A sensor's loop may wake this late from its sleep before it counts as hung.
LATE_WAKE_S = 10.0
#: How often the liveness task looks at the sensors' loops (and beats).
ALIVE_CHECK_S = 1.0

_REASONS: frozenset[str] = frozenset(get_args(FaultReason))


def climate_map(sensor: Sensor) -> ClimateMap:
    if sensor.profile is not None:
        return PROFILES[sensor.profile]
    assert sensor.registers is not None
    t, h = sensor.registers.temperature, sensor.registers.humidity
    return ClimateMap(
        temperature=RegisterField(t.function, t.address, t.type, t.byte_order, t.scale, t.offset),
        humidity=RegisterField(h.function, h.address, h.type, h.byte_order, h.scale, h.offset),
    )


def limits_of(room: Storeroom) -> Limits:
    return Limits(
        temp_min_c=room.temp_min_c,
        temp_max_c=room.temp_max_c,
        rh_min_pct=room.rh_min_pct,
        rh_max_pct=room.rh_max_pct,
        warn_margin_c=room.warn_margin_c,
        warn_margin_pct=room.warn_margin_pct,
        hysteresis_c=room.hysteresis_c,
        hysteresis_pct=room.hysteresis_pct,
        alarm_after_samples=room.alarm_after_samples,
        clear_after_samples=room.clear_after_samples,
    )


def fault_reason(exc: Exception) -> FaultReason | None:
    """The reason code of a failed read: the driver's own (``exc.reason``) when it gives one,
    else what the kind of error says; None when unknown (people are then shown a generic
    "reading failed")."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason in _REASONS:
        return cast(FaultReason, reason)
    if isinstance(exc, BusUnavailable):
        return "bus_unavailable"
    if isinstance(exc, RegisterDecodeError):
        return "bad_answer"
    return None


def exception_code(exc: Exception) -> int | None:
    code = getattr(exc, "exception_code", None)
    return code if isinstance(code, int) and 0 <= code <= 255 else None


def fault_detail(
    sensor: Sensor, reason: FaultReason | None, code: int | None, exc: Exception
) -> str:
    """A short English technical line for ``SensorFault.error`` (the full error is logged)."""
    where = f"unit {sensor.address} on bus {sensor.bus}"
    if reason == "no_response":
        return f"no response from {where}"
    if reason == "exception":
        return f"{where} answered exception code {code if code is not None else '?'}"
    if reason == "bad_answer":
        return f"bad answer from {where}"
    if reason == "bus_unavailable":
        return f"bus {sensor.bus} unavailable"
    first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"read of {where} failed: {first_line}"[:200]


def calibration_state(sensor: Sensor, today: date) -> Quality | None:
    cal = sensor.calibration
    if cal is None:
        return None
    age = (today - cal.date).days
    if age >= CALIBRATION_EXPIRED_DAYS:
        return Quality.CALIBRATION_EXPIRED
    if age >= CALIBRATION_DUE_DAYS:
        return Quality.CALIBRATION_DUE
    return None


@dataclass
class _SensorRun:
    sensor: Sensor
    fields: dict[str, RegisterField]
    blocks: list[ReadBlock]
    health: SensorHealth
    policy: RecordPolicy
    calibration: Quality | None = None
    failures: int = 0
    #: The loop time by which this sensor's loop must show progress (see ``_keep_alive``).
    due_by: float = math.inf


@dataclass
class _Room:
    config: Storeroom
    monitor: RoomMonitor
    agreement: AgreementMonitor


class ClimateService:
    def __init__(
        self,
        config: ClimateSection,
        buses: Buses,
        outbox: AsyncOutbox,
        clock: Clock,
        on_record: Callable[[datetime], None] | None = None,
        heartbeat: Callable[[], None] = lambda: None,
        poll_stuck_after_s: float = POLL_STUCK_AFTER_S,
    ) -> None:
        self._config = config
        self._outbox = outbox
        self._clock = clock
        self._on_record = on_record
        self._heartbeat = heartbeat
        self._poll_stuck_after_s = poll_stuck_after_s
        self._buses = buses
        #: Two readings are compared only when read within this of each other: sensors on the
        #: common grid are read within one round of the bus; a reading of the previous tick,
        #: a poll interval earlier, is too old to compare.
        self._pair_window_s = config.poll_interval_s / 2
        self._rooms = {
            r.id: _Room(
                r,
                RoomMonitor(r.id, limits_of(r)),
                AgreementMonitor(
                    config.disagreement_c, config.disagreement_pct, self._pair_window_s
                ),
            )
            for r in config.storerooms
        }
        self._runs = [self._start(sensor) for sensor in config.sensors]
        self._t0 = 0.0
        if "sensor_backoff_max_s" in config.model_fields_set:
            log.info(
                "climate.sensor_backoff_max_s is no longer used: a failing sensor is asked "
                "again every poll interval (%g s)",
                config.poll_interval_s,
            )
        self.alarms = AlarmOutputs(
            {r.id: r.alarm_output for r in config.storerooms if r.alarm_output},
            self._buses,
        )
        for room in config.storerooms:
            count = sum(1 for s in config.sensors if s.storeroom == room.id)
            if count < 2:
                log.warning(
                    "storeroom %s has %d sensor(s); GSP asks for at least 2", room.id, count
                )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        for run in self._runs:
            run.due_by = self._t0 + self._poll_stuck_after_s
        async with asyncio.TaskGroup() as group:
            group.create_task(self.alarms.run(), name="climate:alarm-outputs")
            group.create_task(self._keep_alive(), name="climate:alive")
            for run in self._runs:
                group.create_task(self._poll(run), name=f"climate:{run.sensor.id}")

    # --- liveness ------------------------------------------------------------------------------

    def stalled(self, now: float) -> list[str]:
        """Sensors whose loop is past its time: a poll hung, or a sleep that never ended."""
        return sorted(r.sensor.id for r in self._runs if now > r.due_by)

    async def _keep_alive(self) -> None:
        """The climate heartbeat: beats while every sensor's loop keeps its schedule, whether
        its sensor answers or not. Waiting for a dead sensor is healthy; a hung loop is not."""
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        while True:
            stalled = self.stalled(loop.time())
            if not stalled:
                self._heartbeat()
            if stalled != reported:
                if stalled:
                    log.error(
                        "climate loop of sensor(s) %s not progressing; heartbeat withheld",
                        ", ".join(stalled),
                    )
                else:
                    log.warning("climate loops progressing again; heartbeat resumed")
                reported = stalled
            await asyncio.sleep(ALIVE_CHECK_S)

    # --- local alarm -----------------------------------------------------------------------

    async def silence(self, storeroom: str, by: str) -> bool:
        """A keeper silenced the room's alarm on site: output off until the next alarm."""
        if storeroom not in self._rooms:
            raise KeyError(storeroom)
        if not self.alarms.silence(storeroom):
            return False
        await self._emit("climate.alarm_silenced", AlarmSilenced(storeroom=storeroom, by=by[:64]))
        return True

    # --- one sensor ---------------------------------------------------------------------------

    def _start(self, sensor: Sensor) -> _SensorRun:
        cmap = climate_map(sensor)
        fields = {"temperature": cmap.temperature, "humidity": cmap.humidity}
        return _SensorRun(
            sensor,
            fields,
            plan_reads(fields.values()),
            SensorHealth(
                self._config.fault_after_s,
                self._config.stuck_after_s,
                self._config.spike_c_per_min,
            ),
            RecordPolicy(
                self._config.record_in_range_s,
                self._config.record_out_of_range_s,
                slack_s=self._config.poll_interval_s,
            ),
        )

    def _next_tick(self, after: float) -> float:
        """The first tick of the common grid after ``after``."""
        poll = self._config.poll_interval_s
        # A sleep may end a hair before its tick: that poll belongs to the tick.
        return self._t0 + (math.floor((after - self._t0 + 0.001) / poll) + 1) * poll

    async def _poll(self, run: _SensorRun) -> None:
        sensor = run.sensor
        bus = self._buses[sensor.bus]
        loop = asyncio.get_running_loop()
        checked_on: date | None = None
        while True:
            started = loop.time()
            run.due_by = started + self._poll_stuck_after_s
            try:
                today = self._clock.now().date()
                if today != checked_on:
                    await self._check_calibration(run, today)
                    checked_on = today
                ok = await self._poll_once(run, bus)
            except Exception:  # one sensor's trouble must never stop the others or the agent
                log.exception("sensor %s: poll failed", sensor.id)
                ok = False
            run.failures = 0 if ok else run.failures + 1
            now = loop.time()
            # Answered or not, the sensor is asked again at the next tick (at once if this poll
            # overran it), and a failing one also in time to be declared faulty after
            # fault_after_s.
            next_at = max(now, self._next_tick(started))
            fault_at = run.health.fault_deadline()
            if fault_at is not None and not run.health.faulty:
                next_at = min(next_at, max(now, fault_at + 0.05))
            run.due_by = next_at + LATE_WAKE_S
            await asyncio.sleep(next_at - now)

    async def _poll_once(self, run: _SensorRun, bus: ModbusBus) -> bool:
        """Read, judge and record one reading; return whether the sensor answered properly."""
        sensor = run.sensor
        room = self._rooms[sensor.storeroom]
        loop = asyncio.get_running_loop()
        try:
            data = [await bus.read(sensor.address, block) for block in run.blocks]
            values = read_values(run.fields, run.blocks, data)
        except (DriverError, RegisterDecodeError) as exc:
            reason, code = fault_reason(exc), exception_code(exc)
            detail = fault_detail(sensor, reason, code, exc)
            await self._failed(run, room, loop.time(), reason, code, detail, str(exc))
            return False
        now = loop.time()  # when the reading arrived, not when the poll began to wait for the bus
        raw_t, raw_rh = values["temperature"], values["humidity"]
        cal = sensor.calibration
        t = raw_t + (cal.temperature_offset_c if cal else 0.0)
        rh = raw_rh + (cal.humidity_offset_pct if cal else 0.0)
        flags = run.health.check(now, t, rh)
        if flags is None:
            detail = f"implausible reading {t:.1f} °C {rh:.1f} %RH"
            await self._failed(run, room, now, "implausible", None, detail, detail)
            return False
        if run.health.recovered():
            log.info("sensor %s answers again", sensor.id)
            await self._emit(
                "climate.sensor_recovered",
                SensorRecovered(storeroom=sensor.storeroom, sensor=sensor.id),
            )
        transition = None
        found: Disagreement | None = None
        if Quality.SPIKE not in flags:
            transition = room.monitor.feed(sensor.id, t, rh)
            found = room.agreement.feed(sensor.id, now, t, rh)
        if transition is not None:
            # The sound-and-light output first: it must not wait for (or fail with) the disk.
            self.alarms.set(room.config.id, transition.after is RoomState.ALARM)
        in_range = room.monitor.limits.in_range(t, rh)
        try:
            if run.policy.due(now, in_range) or transition is not None:
                quality = [str(q) for q in flags]
                if run.calibration is not None:
                    quality.append(str(run.calibration))
                await self._record(run, t, rh, raw_t, raw_rh, quality)
        finally:
            if transition is not None:
                await self._state_changed(room, transition)
        if found is not None:
            await self._disagreed(room, found)
        return True

    async def _failed(
        self,
        run: _SensorRun,
        room: _Room,
        now: float,
        reason: FaultReason | None,
        code: int | None,
        detail: str,
        error: str,
    ) -> None:
        """A read that gave no valid reading: ``detail`` is our short line for the event,
        ``error`` the full text (the library's included), for the log only."""
        sensor = run.sensor
        if run.failures == 0:
            log.warning("sensor %s: %s", sensor.id, error)
        if run.health.fault_due(now):
            room.monitor.forget(sensor.id)
            room.agreement.forget(sensor.id)
            log.warning(
                "sensor %s: no valid reading for %.0f s: fault (%s: %s)",
                sensor.id,
                self._config.fault_after_s,
                reason or "unknown",
                detail,
            )
            fault = SensorFault(
                storeroom=sensor.storeroom,
                sensor=sensor.id,
                error=detail[:500],
                reason=reason,
                exception_code=code if reason == "exception" else None,
            )
            await self._emit("climate.sensor_fault", fault)

    async def _record(
        self,
        run: _SensorRun,
        t: float,
        rh: float,
        raw_t: float,
        raw_rh: float,
        quality: list[str],
    ) -> None:
        sensor = run.sensor
        record = ClimateRecord(
            storeroom=sensor.storeroom,
            sensor=sensor.id,
            serial=sensor.serial,
            temperature_c=round(t, 3),
            humidity_pct=round(min(100.0, max(0.0, rh)), 3),
            raw_temperature_c=round(raw_t, 3),
            raw_humidity_pct=round(min(100.0, max(0.0, raw_rh)), 3),
            quality=quality,
            calibration=sensor.calibration.certificate if sensor.calibration else None,
        )
        stamp = self._clock.stamp()
        await self._outbox.append("climate.record", record, stamp)
        if self._on_record is not None:
            self._on_record(stamp.occurred_at)

    async def _state_changed(self, room: _Room, change: Transition) -> None:
        state, before = change.after, change.before
        sensor, t, rh = change.sensor, change.temperature_c, change.humidity_pct
        log.log(
            logging.WARNING if state is RoomState.ALARM else logging.INFO,
            "storeroom %s: %s -> %s (%s: %.1f °C, %.1f %%RH)",
            room.config.id,
            before,
            state,
            sensor,
            t,
            rh,
        )
        event = RoomStateChange(
            storeroom=room.config.id,
            state=state.value,
            previous=before.value,
            sensor=sensor,
            temperature_c=round(t, 3),
            humidity_pct=round(min(100.0, max(0.0, rh)), 3),
        )
        await self._emit("climate.state", event)

    async def _disagreed(self, room: _Room, found: Disagreement) -> None:
        (a, b), (sa, sb) = found.sensors, found.samples
        log.warning(
            "storeroom %s: sensors %s (%.1f °C, %.1f %%RH) and %s (%.1f °C, %.1f %%RH), "
            "read %.1f s apart, differ by %.1f °C, %.1f %%RH",
            room.config.id,
            a,
            sa.temperature_c,
            sa.humidity_pct,
            b,
            sb.temperature_c,
            sb.humidity_pct,
            found.apart_s,
            found.delta_c,
            found.delta_pct,
        )
        await self._emit(
            "climate.disagreement",
            SensorDisagreement(
                storeroom=room.config.id,
                sensors=[a, b],
                delta_c=found.delta_c,
                delta_pct=min(100.0, found.delta_pct),
                temperatures_c=[round(sa.temperature_c, 3), round(sb.temperature_c, 3)],
                humidities_pct=[
                    round(min(100.0, max(0.0, sa.humidity_pct)), 3),
                    round(min(100.0, max(0.0, sb.humidity_pct)), 3),
                ],
                apart_s=round(found.apart_s, 3),
            ),
        )

    async def _check_calibration(self, run: _SensorRun, today: date) -> None:
        state = calibration_state(run.sensor, today)
        if state == run.calibration:
            return
        run.calibration = state
        if state is None:
            return
        sensor, cal = run.sensor, run.sensor.calibration
        expired = state is Quality.CALIBRATION_EXPIRED
        log.warning(
            "sensor %s: calibration %s (certificate %s of %s)%s",
            sensor.id,
            "expired" if expired else "due",
            cal.certificate if cal else "-",
            cal.date if cal else "-",
            "; its records are flagged non-compliant" if expired else "",
        )
        await self._emit(
            "climate.calibration",
            CalibrationNotice(
                storeroom=sensor.storeroom,
                sensor=sensor.id,
                certificate=cal.certificate if cal else None,
                calibrated_on=cal.date if cal else None,
                state="expired" if expired else "due",
            ),
        )

    async def _emit(self, kind: str, payload: BaseModel) -> None:
        await self._outbox.append(kind, payload, self._clock.stamp())
