"""The climate loop: poll every transmitter, turn registers into records, append to the outbox.

This is the thin I/O shell; what a reading means is decided by pure code (register decoding
now; limits, record intervals and alarm states as they are added).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from edge_agent.clock import Clock
from edge_agent.config import ClimateSection, RtuBus, Sensor, TcpBus
from edge_agent.drivers.modbus import DriverError, ModbusBus, PymodbusBus, RtuSettings, TcpSettings
from edge_agent.drivers.registers import (
    PROFILES,
    ClimateMap,
    ReadBlock,
    RegisterField,
    plan_reads,
    read_values,
)
from edge_agent.outbox import AsyncOutbox, OutboxError
from edge_agent.wire import ClimateRecord, SensorFault

log = logging.getLogger(__name__)


def climate_map(sensor: Sensor) -> ClimateMap:
    if sensor.profile is not None:
        return PROFILES[sensor.profile]
    assert sensor.registers is not None
    t, h = sensor.registers.temperature, sensor.registers.humidity
    return ClimateMap(
        temperature=RegisterField(t.function, t.address, t.type, t.byte_order, t.scale, t.offset),
        humidity=RegisterField(h.function, h.address, h.type, h.byte_order, h.scale, h.offset),
    )


def open_bus(config: TcpBus | RtuBus) -> ModbusBus:
    if isinstance(config, TcpBus):
        return PymodbusBus(
            config.id, TcpSettings(config.host, config.port, config.timeout_s, config.retries)
        )
    return PymodbusBus(
        config.id,
        RtuSettings(
            config.device,
            config.baudrate,
            config.parity,
            config.stopbits,
            config.bytesize,
            config.timeout_s,
            config.retries,
        ),
    )


def make_record(sensor: Sensor, temperature: float, humidity: float) -> ClimateRecord:
    """Raises ValueError (pydantic's) when a value is outside what any sensor can report."""
    return ClimateRecord(
        storeroom=sensor.storeroom,
        sensor=sensor.id,
        serial=sensor.serial,
        temperature_c=round(temperature, 3),
        humidity_pct=round(humidity, 3),
        raw_temperature_c=round(temperature, 3),
        raw_humidity_pct=round(humidity, 3),
    )


class ClimateService:
    def __init__(
        self,
        config: ClimateSection,
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
        self._buses: dict[str, ModbusBus] = {b.id: open_bus(b) for b in config.buses}

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for sensor in self._config.sensors:
                    group.create_task(self._poll(sensor), name=f"climate:{sensor.id}")
        finally:
            for bus in self._buses.values():
                await bus.close()

    async def _poll(self, sensor: Sensor) -> None:
        cmap = climate_map(sensor)
        fields = {"temperature": cmap.temperature, "humidity": cmap.humidity}
        blocks = plan_reads(fields.values())
        bus = self._buses[sensor.bus]
        healthy: bool | None = None
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self._heartbeat()
            try:
                healthy = await self._poll_once(sensor, bus, fields, blocks, healthy)
            except OutboxError as exc:
                log.error("sensor %s: event not stored: %s", sensor.id, exc)
            next_at += self._config.poll_interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _poll_once(
        self,
        sensor: Sensor,
        bus: ModbusBus,
        fields: dict[str, RegisterField],
        blocks: list[ReadBlock],
        healthy: bool | None,
    ) -> bool:
        """One reading of one sensor; return whether it answered properly."""
        try:
            data = [await bus.read(sensor.address, block) for block in blocks]
            values = read_values(fields, blocks, data)
            record = make_record(sensor, values["temperature"], values["humidity"])
        except (DriverError, ValueError) as exc:
            if healthy is not False:
                log.warning("sensor %s: %s", sensor.id, exc)
                fault = SensorFault(
                    storeroom=sensor.storeroom, sensor=sensor.id, error=str(exc)[:500]
                )
                await self._outbox.append("climate.sensor_fault", fault, self._clock.stamp())
            return False
        if healthy is False:
            log.info("sensor %s answers again", sensor.id)
        stamp = self._clock.stamp()
        await self._outbox.append("climate.record", record, stamp)
        if self._on_record is not None:
            self._on_record(stamp.occurred_at)
        return True
