"""The agent's configuration file (``agent.toml``): what this site has and where to send it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date as date_type
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from edge_agent.cabinet import config as cabinet_config
from edge_agent.cabinet.config import CabinetSection
from edge_agent.configfile import Port, Positive, Strict, TlsSection, between, duplicates, load
from edge_agent.drivers.registers import PROFILES, ByteOrder, DataType
from edge_agent.wire import Ident


class AgentSection(Strict):
    id: Ident
    site: Ident
    data_dir: Path = Path("/var/lib/edge-agent")
    #: A configuration pushed by the server that cannot reach the broker within this long is
    #: rolled back to the previous one.
    config_probation_s: Annotated[float, between(10, 86400)] = 300.0


class MqttSection(TlsSection):
    host: str = Field(default="127.0.0.1", min_length=1, pattern=r"^\S+$")
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
    #: Reconnect delays double from min to max, each drawn at random below its cap, so agents
    #: that lost one broker come back spread out, yet within max of it being back.
    reconnect_min_s: Annotated[float, between(0.1, 60)] = 1.0
    reconnect_max_s: Annotated[float, between(1, 3600)] = 8.0


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


class SerialBus(Strict):
    """A raw serial line for one device with a protocol of its own: a box's main board or a
    card reader (neither protocol has an address, so the line is that device's alone)."""

    id: Ident
    kind: Literal["serial"]
    device: str = Field(min_length=1)
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


Bus = Annotated[TcpBus | RtuBus | SerialBus, Field(discriminator="kind")]


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
    #: No longer used: every sensor, failing or not, is asked once per poll interval, so one
    #: that answers again is read within it. Accepted so older files still load.
    sensor_backoff_max_s: Annotated[float, between(1, 600)] = 60.0
    storerooms: list[Storeroom] = Field(default_factory=list)
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
    #: The agent's lines and gateways, shared by every device on them (sensors, relays, boxes).
    buses: list[Bus] = Field(default_factory=list)
    climate: ClimateSection = Field(default_factory=ClimateSection)
    cabinet: CabinetSection = Field(default_factory=CabinetSection)

    @model_validator(mode="before")
    @classmethod
    def _legacy_buses(cls, data: Any) -> Any:
        """``[[climate.buses]]`` (before buses were shared) is read as ``[[buses]]``."""
        if isinstance(data, dict):
            moved = _legacy_buses(data)
            if moved is not None:
                return moved
        return data

    @classmethod
    def cross_check(cls, data: dict[str, Any]) -> Iterable[tuple[str, str]]:
        """Problems spanning sections, found in the raw file so that they are reported together
        with every field error, not one run after another."""
        data = _legacy_buses(data) or data
        climate = _table(data.get("climate"))
        buses = _list(data, "buses")
        rooms = _list(climate, "storerooms")
        sensors = _list(climate, "sensors")
        yield from duplicates("buses", [str(b.get("id")) for _, b in buses])
        yield from duplicates("climate.storerooms", [str(r.get("id")) for _, r in rooms])
        yield from duplicates("climate.sensors", [str(s.get("id")) for _, s in sensors])
        serial_ids = {str(b.get("id")) for _, b in buses if b.get("kind") == "serial"}
        bus_ids = {str(b.get("id")) for _, b in buses} - serial_ids
        room_ids = {str(r.get("id")) for _, r in rooms}
        devices = _Devices()
        for i, sensor in sensors:
            where = f"climate.sensors[{i}]"
            if "storeroom" in sensor and str(sensor["storeroom"]) not in room_ids:
                yield f"{where}.storeroom", _unknown("storeroom", sensor["storeroom"], room_ids)
            if "bus" in sensor and str(sensor["bus"]) not in bus_ids:
                yield f"{where}.bus", _unknown("Modbus bus", sensor["bus"], bus_ids)
            clash = devices.take(sensor.get("bus"), sensor.get("address"), "sensor", where)
            if clash:
                yield f"{where}.address", clash
        for i, room in rooms:
            out = _table(room.get("alarm_output"))
            if not out:
                continue
            where = f"climate.storerooms[{i}].alarm_output"
            if "bus" in out and str(out["bus"]) not in bus_ids:
                yield f"{where}.bus", _unknown("Modbus bus", out["bus"], bus_ids)
            coil = out.get("coil", 0)
            clash = devices.take(out.get("bus"), out.get("address"), "relay", where, coil)
            if clash:
                yield f"{where}.address", clash
        yield from cabinet_config.cross_check(_table(data.get("cabinet")), serial_ids, bus_ids)

    @property
    def outbox_path(self) -> Path:
        return self.agent.data_dir / "outbox.db"

    @property
    def state_path(self) -> Path:
        """What the agent keeps apart from the outbox (last epoch and number) to notice its loss."""
        return self.agent.data_dir / "outbox.state"


class _Devices:
    """Addresses taken on each bus: one device per address, except a relay board's several
    coils (one board, one address, one coil each)."""

    def __init__(self) -> None:
        self._taken: dict[tuple[str, int], tuple[str, str, set[Any]]] = {}

    def take(self, bus: Any, address: Any, kind: str, where: str, coil: Any = None) -> str | None:
        if not isinstance(bus, str) or not isinstance(address, int):
            return None
        key = (bus, address)
        held = self._taken.get(key)
        if held is None:
            self._taken[key] = (kind, where, {coil})
            return None
        held_kind, held_where, coils = held
        if kind == "relay" and held_kind == "relay" and coil not in coils:
            coils.add(coil)
            return None
        if kind == "relay" and held_kind == "relay":
            return (
                f"coil {coil} at address {address} on bus {bus!r} is already used by {held_where}"
            )
        return f"address {address} on bus {bus!r} is already used by {held_where}"


def _legacy_buses(data: dict[str, Any]) -> dict[str, Any] | None:
    climate = data.get("climate")
    if not isinstance(climate, dict) or "buses" not in climate:
        return None
    legacy = climate["buses"]
    current = data.get("buses", [])
    if not isinstance(legacy, list) or not isinstance(current, list):
        return None
    rest = {k: v for k, v in climate.items() if k != "buses"}
    return {**data, "buses": [*current, *legacy], "climate": rest}


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(section: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    items = section.get(key)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _unknown(what: str, value: Any, known: set[str]) -> str:
    return f"unknown {what} {value!r} (known: {', '.join(sorted(known)) or 'none'})"


def load_config(path: Path | str) -> AgentConfig:
    return load(path, AgentConfig)
