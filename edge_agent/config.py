"""The agent's configuration file (``agent.toml``): what this site has and where to send it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date as date_type
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edge_agent.configfile import Port, Positive, Strict, between, duplicates, load
from edge_agent.drivers.registers import PROFILES, ByteOrder, DataType
from edge_agent.wire import Ident


class AgentSection(Strict):
    id: Ident
    site: Ident
    data_dir: Path = Path("/var/lib/edge-agent")


class MqttSection(Strict):
    host: str = "127.0.0.1"
    port: Port = 1883
    topic_prefix: Ident = "fp"
    username: str | None = None
    password: str | None = None
    keepalive_s: Annotated[int, between(5, 3600)] = 60


class LinkSection(Strict):
    batch_max_events: Annotated[int, between(1, 5000)] = 500
    batch_max_bytes: Annotated[int, between(1024, 4_000_000)] = 256_000
    ack_timeout_s: Annotated[float, between(1, 3600)] = 30.0
    max_in_flight_batches: Annotated[int, between(1, 100)] = 8
    status_interval_s: Annotated[float, between(1, 3600)] = 60.0
    reconnect_min_s: Annotated[float, between(0.1, 60)] = 1.0
    reconnect_max_s: Annotated[float, between(1, 3600)] = 60.0


class OutboxSection(Strict):
    #: Past this many events, unsent climate records are folded into summaries.
    max_events: Annotated[int, between(100, 50_000_000)] = 500_000
    #: The outbox file never grows past this (SQLite max_page_count); protects the SD card.
    max_mb: Annotated[float, between(1, 1_000_000)] = 1024.0


class AlarmOutput(Strict):
    """A relay coil driven over Modbus (function 5) while the room is in alarm."""

    bus: Ident
    address: Annotated[int, between(1, 247)]
    coil: Annotated[int, between(0, 65535)] = 0


class Storeroom(Strict):
    id: Ident
    name: str = Field(min_length=1, max_length=64)
    product_group: Literal["condoms", "pills", "iud", "other"]
    temp_min_c: Annotated[float, between(-25, 60)] = 10.0
    temp_max_c: Annotated[float, between(-25, 60)] = 30.0
    rh_min_pct: Annotated[float, between(0, 100)] = 35.0
    rh_max_pct: Annotated[float, between(0, 100)] = 75.0
    #: Within this of a limit is a warning; leaving a state needs this much hysteresis.
    warn_margin_c: Annotated[float, between(0, 10)] = 1.0
    warn_margin_pct: Annotated[float, between(0, 30)] = 3.0
    hysteresis_c: Annotated[float, between(0, 5)] = 0.5
    hysteresis_pct: Annotated[float, between(0, 10)] = 2.0
    #: Consecutive samples out of range before the alarm, and clearly back in to clear it.
    alarm_after_samples: Annotated[int, between(1, 60)] = 2
    clear_after_samples: Annotated[int, between(1, 60)] = 2
    #: The sound-and-light output for this room (a relay coil), if any.
    alarm_output: AlarmOutput | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Storeroom:
        if self.temp_min_c >= self.temp_max_c:
            raise ValueError("temp_min_c must be below temp_max_c")
        if self.rh_min_pct >= self.rh_max_pct:
            raise ValueError("rh_min_pct must be below rh_max_pct")
        return self


class TcpBus(Strict):
    id: Ident
    kind: Literal["tcp"]
    host: str = Field(min_length=1)
    port: Port = 502
    timeout_s: Positive = 1.0
    retries: Annotated[int, between(0, 5)] = 1
    #: Quiet time between one answer and the next request.
    frame_gap_ms: Annotated[float, between(0, 1000)] = 0.0


class RtuBus(Strict):
    id: Ident
    kind: Literal["rtu"]
    device: str = Field(min_length=1)
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: Positive = 1.0
    retries: Annotated[int, between(0, 5)] = 1
    #: Quiet time between frames; at least 3.5 characters are always kept (Modbus RTU).
    frame_gap_ms: Annotated[float, between(0, 1000)] = 5.0
    #: For adapters that hear their own transmission (2-wire RS485 without echo suppression).
    local_echo: bool = False


Bus = Annotated[TcpBus | RtuBus, Field(discriminator="kind")]


class RegisterFieldConfig(Strict):
    function: Literal[3, 4]
    address: Annotated[int, between(0, 65535)]
    type: DataType = DataType.INT16
    byte_order: ByteOrder = ByteOrder.ABCD
    scale: float = 1.0
    offset: float = 0.0


class RegisterMapConfig(Strict):
    temperature: RegisterFieldConfig
    humidity: RegisterFieldConfig


class Calibration(Strict):
    """From the sensor's calibration certificate; applied by the agent, never written to it."""

    certificate: str = Field(min_length=1, max_length=64)
    date: date_type
    temperature_offset_c: Annotated[float, between(-5, 5)] = 0.0
    humidity_offset_pct: Annotated[float, between(-20, 20)] = 0.0


class Sensor(Strict):
    id: Ident
    storeroom: Ident
    bus: Ident
    address: Annotated[int, between(1, 247)]
    profile: str | None = None
    registers: RegisterMapConfig | None = None
    serial: str | None = Field(default=None, max_length=64)
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _one_map(self) -> Sensor:
        if (self.profile is None) == (self.registers is None):
            raise ValueError("give either profile or registers, not both or neither")
        if self.profile is not None and self.profile not in PROFILES:
            known = ", ".join(sorted(PROFILES))
            raise ValueError(f"unknown profile {self.profile!r} (known: {known})")
        return self


class ClimateSection(Strict):
    #: How often each sensor is read (GSP: at least every minute).
    poll_interval_s: Annotated[float, between(1, 60)] = 60.0
    #: How often a reading is recorded; never longer than GSP's 30 min / 2 min.
    record_in_range_s: Annotated[float, between(1, 1800)] = 1800.0
    record_out_of_range_s: Annotated[float, between(1, 120)] = 120.0
    #: No valid reading for this long is a sensor fault.
    fault_after_s: Annotated[float, between(10, 3600)] = 120.0
    #: A change faster than this is flagged as a spike and kept out of the room's state.
    spike_c_per_min: Annotated[float, between(0.1, 10_000)] = 5.0
    #: A value unchanged for this long is flagged as stuck.
    stuck_after_s: Annotated[float, between(60, 7 * 86400)] = 6 * 3600.0
    #: Two sensors of one room further apart than this raise a warning.
    disagreement_c: Annotated[float, between(0.1, 20)] = 2.0
    disagreement_pct: Annotated[float, between(0.5, 50)] = 10.0
    #: A failing sensor is asked again after this long at most (its own backoff).
    sensor_backoff_max_s: Annotated[float, between(1, 600)] = 60.0
    storerooms: list[Storeroom] = Field(default_factory=list)
    buses: list[Bus] = Field(default_factory=list)
    sensors: list[Sensor] = Field(default_factory=list)


class ClockSection(Strict):
    #: "auto": trust the kernel clock when it says it is synchronised, else adopt the server's.
    #: "server": always adopt the server's time (a device known to have no working NTP).
    source: Literal["auto", "server"] = "auto"


class AgentConfig(Strict):
    agent: AgentSection
    mqtt: MqttSection = Field(default_factory=MqttSection)
    link: LinkSection = Field(default_factory=LinkSection)
    outbox: OutboxSection = Field(default_factory=OutboxSection)
    clock: ClockSection = Field(default_factory=ClockSection)
    climate: ClimateSection = Field(default_factory=ClimateSection)

    def cross_check(self) -> Iterable[tuple[str, str]]:
        c = self.climate
        yield from duplicates("climate.storerooms", [s.id for s in c.storerooms])
        yield from duplicates("climate.buses", [b.id for b in c.buses])
        yield from duplicates("climate.sensors", [s.id for s in c.sensors])
        rooms = {s.id for s in c.storerooms}
        buses = {b.id for b in c.buses}
        for i, room in enumerate(c.storerooms):
            out = room.alarm_output
            if out is not None and out.bus not in buses:
                yield f"climate.storerooms[{i}].alarm_output.bus", _unknown("bus", out.bus, buses)
        taken: set[tuple[str, int]] = set()
        for i, sensor in enumerate(c.sensors):
            where = f"climate.sensors[{i}]"
            if sensor.storeroom not in rooms:
                yield f"{where}.storeroom", _unknown("storeroom", sensor.storeroom, rooms)
            if sensor.bus not in buses:
                yield f"{where}.bus", _unknown("bus", sensor.bus, buses)
            if (sensor.bus, sensor.address) in taken:
                yield (
                    f"{where}.address",
                    f"address {sensor.address} is already used on bus {sensor.bus!r}",
                )
            taken.add((sensor.bus, sensor.address))

    @property
    def outbox_path(self) -> Path:
        return self.agent.data_dir / "outbox.db"


def _unknown(what: str, value: str, known: set[str]) -> str:
    return f"unknown {what} {value!r} (known: {', '.join(sorted(known)) or 'none'})"


def load_config(path: Path | str) -> AgentConfig:
    return load(path, AgentConfig)
