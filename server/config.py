"""The server's configuration file (``server.toml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from edge_agent.configfile import Strict, TlsSection, between, load
from edge_agent.wire import Ident
from server.alerts.config import AlertsSection


class ServerSection(Strict):
    language: Literal["zh", "en"] = "zh"
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. 'Asia/Shanghai')") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DatabaseSection(Strict):
    #: SQLAlchemy URL: ``sqlite:////var/lib/edge-server/server.db`` or ``postgresql+psycopg://...``
    url: str = "sqlite:////var/lib/edge-server/server.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql")):
            raise ValueError(
                "must be sqlite:////absolute/path/server.db or postgresql+psycopg://USER@HOST/DB"
            )
        if value.startswith("sqlite:///") and value in ("sqlite:///", "sqlite:///:memory:"):
            raise ValueError("names no database file: sqlite:////var/lib/edge-server/server.db")
        if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
            raise ValueError(
                "needs an absolute path (four slashes): sqlite:////var/lib/edge-server/server.db"
            )
        return value


class MqttSection(TlsSection):
    host: str = Field(default="127.0.0.1", min_length=1, pattern=r"^\S+$")
    topic_prefix: Ident = "fp"
    username: str | None = None
    password: str | None = None
    client_id: str = Field(default="edge-server-ingest-1", min_length=1, max_length=64)
    #: Ingest processes sharing this group split the agents' messages between them.
    shared_group: Ident = "ingest"
    #: How long the broker keeps this process's session (its subscriptions and the events
    #: queued for it) while it is down: long enough for a restart or an upgrade. A process
    #: retired for good keeps its share of the shared subscription this long (agents resend
    #: it after ``link.ack_timeout_s``). 0: forget it at once (agents resend when it is back).
    session_expiry_s: Annotated[int, between(0, 30 * 86400)] = 3600


class IngestSection(Strict):
    #: A gap in an agent's sequence older than this is logged as an error.
    gap_report_after_s: Annotated[float, between(10, 30 * 86400)] = 3600.0
    #: How far beyond its acknowledged number an agent's events may be; further is refused
    #: (agents keep at most ``max_in_flight_batches`` x ``batch_max_events`` = 500,000 in flight).
    max_seq_ahead: Annotated[int, between(1000, 10**9)] = 1_000_000
    #: A new outbox epoch is adopted after the old one has been silent this long.
    epoch_proof_s: Annotated[float, between(1, 86400)] = 120.0
    #: An agent not heard from (no events, no status) for this long is offline, whatever its
    #: last status said (agents send a status every ``link.status_interval_s``, 60 s).
    offline_after_s: Annotated[float, between(10, 7 * 86400)] = 300.0
    #: Refusals of one agent kept a minute (dead letter, log line, negative acknowledgement);
    #: more are only counted (``link status``), so a flood cannot fill the disk or the log.
    refusals_per_min: Annotated[int, between(1, 100_000)] = 30
    #: Messages of one agent waiting in this process at most; more are dropped and counted. An
    #: agent keeps at most ``link.max_in_flight_batches`` (8) unacknowledged, so only a flood
    #: meets this, and it cannot push other agents' messages back.
    queue_share: Annotated[int, between(8, 100_000)] = 100


class CommandsSection(Strict):
    #: How often queued commands are looked at.
    poll_s: Annotated[float, between(0.2, 600)] = 5.0
    #: How long after its first publish a command without a result is sent again; the wait
    #: doubles with each publish up to ``retry_max_s``.
    retry_s: Annotated[float, between(1, 86400)] = 60.0
    retry_max_s: Annotated[float, between(1, 86400)] = 900.0
    #: Answered commands are deleted this long after their answer (the journal keeps the
    #: results; restock proposals look back 30 days at orders).
    keep_days: Annotated[int, between(30, 3650)] = 30


class CardsSection(Strict):
    #: The county card key (64 hex digits, ``edge-server cards make-key``): the same file the
    #: agents hold. Needed by the commands that turn a card number into its pseudonym.
    key_file: Path | None = None
    #: How often the ingest process sends the boxes' agents what changed in the registry and
    #: the takes recorded at other boxes.
    sync_interval_s: Annotated[float, between(1, 86400)] = 30.0


class ClimateSection(Strict):
    #: ΔH/R in kelvin for the mean kinetic temperature (``climate mkt``): the activation energy
    #: of degradation over the gas constant. 10,000 K is ΔH 83.144 kJ/mol (USP); a product's
    #: own value may be set, between 1,000 and 30,000 K (ΔH about 8 to 250 kJ/mol).
    mkt_delta_h_over_r_k: Annotated[float, between(1000, 30000)] = 10000.0
    #: The fixed times of the day's checks on the record sheet (``climate sheet``), in
    #: ``server.timezone``: 08:00 and 16:00, or 09:00 and 15:00 at some stations.
    check_times: list[str] = Field(default_factory=lambda: ["08:00", "16:00"])

    @field_validator("check_times")
    @classmethod
    def _times(cls, value: list[str]) -> list[str]:
        from server.climate.sheet import parse_times

        try:
            parse_times(value)
        except ValueError:
            raise ValueError(
                f"must be distinct times of day HH:MM, e.g. ['08:00', '16:00'], not {value}"
            ) from None
        return value


class BackupSection(Strict):
    """The daily backup that ``edge-server run`` takes of a SQLite store (``server/integrity``).
    A PostgreSQL store is backed up with its own tools (pg_dump; see deploy/README.md)."""

    #: Where backups go (an absolute path); none: no daily backup (``edge-server backup --to
    #: DIR`` still makes one).
    directory: Path | None = None
    #: The time of day, in ``server.timezone``, HH:MM.
    time: str = "02:30"
    #: Backups older than this are deleted after a backup that checked sound.
    retention_days: Annotated[int, between(1, 3650)] = 30

    @field_validator("time")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        hour, _, minute = value.partition(":")
        if not (
            len(hour) == len(minute) == 2
            and hour.isdigit()
            and minute.isdigit()
            and int(hour) < 24
            and int(minute) < 60
        ):
            raise ValueError(f"must be a time of day HH:MM, e.g. '02:30', not {value!r}")
        return value

    @field_validator("directory")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path, e.g. /var/backups/edge-server")
        return value

    @property
    def hour_minute(self) -> tuple[int, int]:
        hour, minute = self.time.split(":")
        return int(hour), int(minute)


class WebSection(Strict):
    """The dashboard and the HTTP API (``server/web``), served by ``edge-server run`` when
    enabled, or alone by ``edge-server web`` (as many processes as wanted: sessions and login
    limits live in the database)."""

    enabled: bool = False
    host: str = Field(default="127.0.0.1", min_length=1, pattern=r"^\S+$")
    port: Annotated[int, between(0, 65535)] = 8080
    #: HTTPS straight from the server; otherwise put a TLS proxy in front on any real network.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Cookies only over HTTPS; unset: when ``tls_cert`` is set. Set it true behind a TLS proxy.
    secure_cookies: bool | None = None
    #: Proxies whose ``X-Forwarded-For`` is believed (for the login limits per address).
    trusted_proxies: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _tls_pair(self) -> WebSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    @property
    def cookies_secure(self) -> bool:
        return self.tls_cert is not None if self.secure_cookies is None else self.secure_cookies


class ServerConfig(Strict):
    server: ServerSection = Field(default_factory=ServerSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    commands: CommandsSection = Field(default_factory=CommandsSection)
    cards: CardsSection = Field(default_factory=CardsSection)
    backup: BackupSection = Field(default_factory=BackupSection)
    climate: ClimateSection = Field(default_factory=ClimateSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    web: WebSection = Field(default_factory=WebSection)


def load_config(path: Path | str) -> ServerConfig:
    return load(path, ServerConfig)
