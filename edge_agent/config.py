"""The agent's configuration file (``agent.toml``): what this site has and where to send it."""

from __future__ import annotations

from collections.abc import Iterable
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


class Storeroom(Strict):
    id: Ident
    name: str = Field(min_length=1, max_length=64)
    product_group: Literal["condoms", "pills", "iud", "other"]
    temp_min_c: Annotated[float, between(-25, 60)] = 10.0
    temp_max_c: Annotated[float, between(-25, 60)] = 30.0
    rh_min_pct: Annotated[float, between(0, 100)] = 35.0
    rh_max_pct: Annotated[float, between(0, 100)] = 75.0

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


class Sensor(Strict):
    id: Ident
    storeroom: Ident
    bus: Ident
    address: Annotated[int, between(1, 247)]
    profile: str | None = None
    registers: RegisterMapConfig | None = None
    serial: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _one_map(self) -> Sensor:
        if (self.profile is None) == (self.registers is None):
            raise ValueError("give either profile or registers, not both or neither")
        if self.profile is not None and self.profile not in PROFILES:
            known = ", ".join(sorted(PROFILES))
            raise ValueError(f"unknown profile {self.profile!r} (known: {known})")
        return self


class ClimateSection(Strict):
    poll_interval_s: Annotated[float, between(1, 60)] = 60.0
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
