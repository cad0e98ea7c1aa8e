"""The climate loop: read every transmitter, judge each reading, record, alarm.

This is the thin I/O shell around the pure rules (``rules.py``): one task per sensor reads its
registers, the rules decide what the reading means, and what they decide becomes outbox events
and the state of the room's sound-and-light output. Time for the rules is the loop's monotonic
clock; wall time only goes into the events' stamps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from pydantic import BaseModel

from edge_agent.buses import Buses
from edge_agent.climate.alarm import AlarmOutputs
from edge_agent.climate.rules import (
    Limits,
    Quality,
    RecordPolicy,
    RoomMonitor,
    RoomState,
    SensorHealth,
    Transition,
    disagreement,
)
from edge_agent.clock import Clock
from edge_agent.config import ClimateSection, Sensor, Storeroom
from edge_agent.drivers.modbus import DriverError, ModbusBus
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
    RoomStateChange,
    SensorDisagreement,
    SensorFault,
    SensorRecovered,
)

log = logging.getLogger(__name__)

CALIBRATION_DUE_DAYS = 335  # about 11 months
CALIBRATION_EXPIRED_DAYS = 365


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


@dataclass
class _Room:
    config: Storeroom
    monitor: RoomMonitor
    latest: dict[str, tuple[float, float]] = field(default_factory=dict)
    disagreeing: bool = False


class ClimateService:
    def __init__(
        self,
        config: ClimateSection,
        buses: Buses,
        outbox: AsyncOutbox,
        clock: Clock,
        on_record: Callable[[datetime], None] | None = None,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> None:
        self._config = config
        self._outbox = outbox
        self._clock = clock
        self._on_record = on_record
        self._heartbeat = heartbeat
        self._buses = buses
        self._rooms = {r.id: _Room(r, RoomMonitor(r.id, limits_of(r))) for r in config.storerooms}
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
        async with asyncio.TaskGroup() as group:
            group.create_task(self.alarms.run(), name="climate:alarm-outputs")
            for sensor in self._config.sensors:
                group.create_task(self._poll(sensor), name=f"climate:{sensor.id}")

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

    async def _poll(self, sensor: Sensor) -> None:
        run = self._start(sensor)
        bus = self._buses[sensor.bus]
        loop = asyncio.get_running_loop()
        checked_on: date | None = None
        poll = self._config.poll_interval_s
        next_at = loop.time()
        while True:
            self._heartbeat()
            try:
                today = self._clock.now().date()
                if today != checked_on:
                    await self._check_calibration(run, today)
                    checked_on = today
                ok = await self._poll_once(run, bus, loop.time())
            except Exception:  # one sensor's trouble must never stop the others or the agent
                log.exception("sensor %s: poll failed", sensor.id)
                ok = False
            run.failures = 0 if ok else run.failures + 1
            # Readings on a fixed grid; a failing sensor backs off on its own (doubling, capped),
            # but is asked again in time to be declared faulty after fault_after_s.
            backoff = min(
                poll * 2 ** min(run.failures, 6), max(poll, self._config.sensor_backoff_max_s)
            )
            next_at = max(next_at + poll, loop.time()) if ok else loop.time() + backoff
            fault_at = run.health.fault_deadline()
            if fault_at is not None and not run.health.faulty:
                next_at = min(next_at, max(loop.time(), fault_at + 0.05))
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _poll_once(self, run: _SensorRun, bus: ModbusBus, now: float) -> bool:
        """Read, judge and record one reading; return whether the sensor answered properly."""
        sensor = run.sensor
        room = self._rooms[sensor.storeroom]
        try:
            data = [await bus.read(sensor.address, block) for block in run.blocks]
            values = read_values(run.fields, run.blocks, data)
        except (DriverError, RegisterDecodeError) as exc:
            await self._failed(run, room, now, str(exc))
            return False
        raw_t, raw_rh = values["temperature"], values["humidity"]
        cal = sensor.calibration
        t = raw_t + (cal.temperature_offset_c if cal else 0.0)
        rh = raw_rh + (cal.humidity_offset_pct if cal else 0.0)
        flags = run.health.check(now, t, rh)
        if flags is None:
            await self._failed(run, room, now, f"implausible reading {t:.1f} °C {rh:.1f} %RH")
            return False
        if run.health.recovered():
            log.info("sensor %s answers again", sensor.id)
            await self._emit(
                "climate.sensor_recovered",
                SensorRecovered(storeroom=sensor.storeroom, sensor=sensor.id),
            )
        transition = None
        if Quality.SPIKE not in flags:
            transition = room.monitor.feed(sensor.id, t, rh)
            room.latest[sensor.id] = (t, rh)
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
        await self._check_disagreement(room)
        return True

    async def _failed(self, run: _SensorRun, room: _Room, now: float, error: str) -> None:
        sensor = run.sensor
        if run.failures == 0:
            log.warning("sensor %s: %s", sensor.id, error)
        if run.health.fault_due(now):
            room.monitor.forget(sensor.id)
            room.latest.pop(sensor.id, None)
            fault = SensorFault(storeroom=sensor.storeroom, sensor=sensor.id, error=error[:500])
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

    async def _check_disagreement(self, room: _Room) -> None:
        found = disagreement(
            room.latest, self._config.disagreement_c, self._config.disagreement_pct
        )
        if found is None:
            room.disagreeing = False
            return
        if room.disagreeing:
            return
        room.disagreeing = True
        a, b, dt, drh = found
        log.warning(
            "storeroom %s: sensors %s and %s differ by %.1f °C, %.1f %%RH",
            room.config.id,
            a,
            b,
            dt,
            drh,
        )
        await self._emit(
            "climate.disagreement",
            SensorDisagreement(storeroom=room.config.id, sensors=[a, b], delta_c=dt, delta_pct=drh),
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
