"""``edge-server --config FILE run|check|db upgrade|db copy|schema|climate latest|climate tail|
link status|events replay|command send|command list|broker add-user|broker provision-agent|
cards ...|boxes|boxes tail|verify|backup``; the ``cards`` group lives in ``server/cards/cli.py``,
``verify`` and ``backup`` in ``server/integrity/cli.py``, ``climate series|mkt|export`` in
``server/climate/cli.py``."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import click
import sqlalchemy as sa

from server.climate.queries import Notice
from server.clisupport import LazyGroup, exit_with, failing, language
from server.clisupport import config_or_exit as _config
from server.clisupport import engine_or_exit as _engine
from server.config import ServerConfig
from server.i18n import Language, fault_text, pad, t, table

#: The commands of the domains' own modules, imported when run (``LazyGroup``).
LAZY = {
    "alerts": "server.alerts.cli:alerts",
    "cards": "server.cards.cli:cards",
    "users": "server.users.cli:users",
    "verify": "server.integrity.cli:verify",
    "backup": "server.integrity.cli:backup",
    **{name: f"server.ledger.cli:{attribute}" for name, attribute in (
        ("product", "product"), ("site", "site"), ("batch", "batch"), ("receive", "receive"),
        ("inspect", "inspect"), ("transfer", "transfer"), ("return", "return_"),
        ("suggest", "suggest"), ("adjust", "adjust"), ("dispose", "dispose"),
        ("stocktake", "stocktake"), ("stock", "stock"), ("movements", "movements"),
        ("restock", "restock"),
    )},
}  # fmt: skip
CLIMATE_LAZY = {
    "series": "server.climate.cli:series",
    "mkt": "server.climate.cli:mkt",
    "export": "server.climate.cli:export",
    "sheet": "server.climate.cli:sheet_",
}


@click.group(cls=LazyGroup, lazy=LAZY)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("/etc/edge-server/server.toml"),
    show_default=True,
    help="The server's TOML configuration.",
)
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def main(ctx: click.Context, config_path: Path, log_level: str) -> None:
    """County server: ingest, stock ledger, climate history, alerts."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    ctx.obj = config_path


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the configuration and exit (status 2 when invalid)."""
    config = _config(ctx)
    click.echo(f"{ctx.obj}: ok (database {sa.engine.make_url(config.database.url).drivername})")


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Migrate the database and ingest events from the broker until SIGTERM or Ctrl-C."""
    from server.app import IngestService

    config = _config(ctx)
    IngestService(config, _engine(config, migrate=True)).run()


@main.command()
@click.option("--host", default=None, help="Listen here instead of [web] host.")
@click.option("--port", type=int, default=None, help="Listen here instead of [web] port.")
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the dashboard and the HTTP API alone (no ingest), until SIGTERM or Ctrl-C: for more
    web processes beside the one in 'run', or a separate machine."""
    from server.web.app import serve

    config = _config(ctx)
    changed = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    config = config.model_copy(update={"web": config.web.model_copy(update=changed)})
    serve(config, _engine(config))


@main.group()
def db() -> None:
    """The server's database."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create the database or migrate it to this version's schema."""
    from server.store.db import current_revision

    config = _config(ctx.find_root())
    engine = _engine(config, migrate=True)
    click.echo(f"database schema at {current_revision(engine)}")


@db.command("copy")
@click.option(
    "--to",
    "target_url",
    required=True,
    metavar="URL",
    help="An empty database to fill, e.g. postgresql+psycopg://edge@localhost/edge.",
)
@click.option(
    "--chunk",
    type=click.IntRange(1, 1_000_000),
    default=5000,
    show_default=True,
    help="Rows read and written at a time.",
)
@click.pass_context
def db_copy(ctx: click.Context, target_url: str, chunk: int) -> None:
    """Move this store into another database: the journal first, then a replay there.

    Stop every ingest process first. The target must be empty; it is created or migrated,
    filled in one transaction, and its projections are rebuilt by replaying the journal.
    """
    from pydantic import ValidationError

    from server.config import DatabaseSection
    from server.store.copy import CopyError, copy_store, rebuild_projections
    from server.store.db import StoreError, make_engine

    try:
        DatabaseSection.model_validate({"url": target_url})
        url = sa.engine.make_url(target_url)
    except ValidationError as exc:
        _fail(f"--to {str(exc.errors()[0]['msg']).removeprefix('Value error, ')}", 2)
    except (sa.exc.ArgumentError, ValueError) as exc:
        _fail(f"--to is not a database URL ({exc})", 2)
    source = _engine(_config(ctx.find_root()))
    if url == source.url:
        _fail("--to names the configured database itself", 2)
    shown = url.render_as_string(hide_password=True)
    try:
        target = make_engine(target_url)
        copied = copy_store(source, target, chunk)
    except CopyError as exc:
        _fail(str(exc))
    except ImportError as exc:
        _fail(f"no driver for {shown} ({exc.name}): pip install '.[postgres]' installs psycopg")
    except (StoreError, sa.exc.SQLAlchemyError, OSError) as exc:
        _fail(f"{shown}: {_first_line(exc)}")
    for name, rows in copied.tables:
        click.echo(f"{name}: {rows} rows copied")
    try:
        rebuilt = rebuild_projections(target)
    except sa.exc.SQLAlchemyError as exc:
        _fail(
            f"rows copied, but the replay failed ({_first_line(exc)}); "
            "point [database] url at the copy and run `edge-server events replay`"
        )
    click.echo(
        f"replay: {rebuilt.streams} projection streams, {rebuilt.numbers} numbers, "
        f"{rebuilt.understood} events newly understood; "
        + ", ".join(f"{name} {rows} rows" for name, rows in rebuilt.tables)
    )


def _fail(message: str, code: int = 1) -> NoReturn:
    exit_with(f"db copy: {message}", code)


def _first_line(exc: BaseException) -> str:
    """A driver's message without SQLAlchemy's statement and link, in one line."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [cause.__class__.__name__])[0]


@main.command()
def schema() -> None:
    """Print the wire protocol's JSON Schema."""
    from edge_agent.wire import json_schema

    click.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))


_from_start = click.option(
    "--from-start",
    is_flag=True,
    help="Print what is already stored first (else only what arrives from now on).",
)


@main.group(cls=LazyGroup, lazy=CLIMATE_LAZY)
def climate() -> None:
    """Storeroom temperature and humidity."""


def _lang(config: ServerConfig, lang: str | None) -> Language:
    return language(config, lang)


@climate.command()
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.pass_context
def latest(ctx: click.Context, lang: str | None) -> None:
    """The newest reading of every sensor."""
    from server.climate.queries import latest as latest_readings

    config = _config(ctx.find_root())
    language = _lang(config, lang)
    readings = latest_readings(_engine(config))
    if not readings:
        click.echo(t("no_readings", language))
        return
    zone = config.server.zone
    header = [t(k, language) for k in ("site", "storeroom", "sensor", "temperature", "humidity")]
    header.append(f"{t('time', language)} ({config.server.timezone})")
    rows = [
        [
            r.site_id,
            r.storeroom,
            r.sensor,
            f"{r.temperature_c:.1f}",
            f"{r.humidity_pct:.1f}",
            r.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
            + ("" if r.clock_synced else f" ({t('clock_unsynced', language)})"),
        ]
        for r in readings
    ]
    click.echo(table(header, rows))


@climate.command()
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between looks.",
)
@_from_start
@click.pass_context
def tail(ctx: click.Context, lang: str | None, interval: float, from_start: bool) -> None:
    """Print readings, alarms and sensor faults as they arrive, until Ctrl-C."""
    from server.climate.queries import last_id, last_notice_id, notices_since, since

    config = _config(ctx.find_root())
    language = _lang(config, lang)
    engine = _engine(config)
    zone = config.server.zone
    cursor = 0 if from_start else last_id(engine)
    notice_cursor = 0 if from_start else last_notice_id(engine)
    try:
        while True:
            for n in notices_since(engine, notice_cursor):
                notice_cursor = n.id
                when = n.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
                click.echo(f"{when}  {n.site_id}  {describe_notice(n, language)}")
            for r in since(engine, cursor):
                cursor = r.id
                when = r.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
                click.echo(
                    f"{when}  {r.site_id}  {pad(r.storeroom, 14)} {pad(r.sensor, 8)} "
                    f"{r.temperature_c:6.1f} °C {r.humidity_pct:6.1f} %RH"
                    + ("" if r.clock_synced else f"  ({t('clock_unsynced', language)})")
                )
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


def describe_notice(n: Notice, lang: Language) -> str:
    p = n.payload
    room = str(p.get("storeroom", ""))
    kind = n.kind.removeprefix("climate.")
    if kind == "state":
        return (
            f"{pad(room, 14)} {t('state.' + str(p['state']), lang)}  "
            f"({p['sensor']} {float(p['temperature_c']):.1f} °C {float(p['humidity_pct']):.1f} %RH)"  # type: ignore[arg-type]
        )
    if kind == "sensor_fault":
        why = fault_text(p.get("reason"), p.get("exception_code"), lang)
        return f"{pad(room, 14)} {t(kind, lang)} {p['sensor']}: {why}"
    if kind == "sensor_recovered":
        return f"{pad(room, 14)} {t(kind, lang)} {p['sensor']}"
    if kind == "alarm_silenced":
        return f"{pad(room, 14)} {t(kind, lang)} ({p['by']})"
    if kind == "disagreement":
        sensors = p.get("sensors")
        names = " / ".join(str(s) for s in sensors) if isinstance(sensors, list) else ""
        delta = f"Δ{p['delta_c']} °C Δ{p['delta_pct']} %RH"
        return f"{pad(room, 14)} {t(kind, lang)}: {names} {delta}"
    return f"{pad(room, 14)} {t('calibration.' + str(p['state']), lang)}: {p['sensor']}"


@main.group()
def link() -> None:
    """The agents' links: progress, gaps, status."""


@link.command("status")
@click.pass_context
def link_status(ctx: click.Context) -> None:
    """Every agent: online, acknowledged and highest seq, gap, backlog, storage, clock."""
    from datetime import UTC, timedelta

    from server.link import agent_links

    config = _config(ctx.find_root())
    zone = config.server.zone
    offline_after = timedelta(seconds=config.ingest.offline_after_s)
    links = agent_links(_engine(config), datetime.now(UTC), offline_after)
    header = ["site", "agent", "online", "epoch", "acked", "highest", "gap since", "backlog"]
    header += ["storage", "clock", "not understood", "refused", "conflicts", "last heard"]

    def local(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%m-%d %H:%M:%S") if value else "-"

    out = []
    for a in links:
        out.append(
            [
                a.site_id,
                a.agent_id,
                "?" if a.online is None else ("yes" if a.online else "no"),
                (a.epoch or "-")[:8] + (f" +{a.other_epochs}" if a.other_epochs else ""),
                str(a.acked_seq),
                str(a.highest_seq),
                local(a.gap_since),
                str(a.status.get("backlog", "?")),
                str(a.status.get("storage", "?")),
                str(a.status.get("clock", "?")),
                str(a.not_understood),
                str(a.malformed + a.dead_lettered),
                str(a.conflicts),
                local(a.last_heard_at),
            ]
        )
    click.echo(table(header, out) if out else "no agents yet")
    for a in links:
        if a.identity_conflict:
            click.echo(f"agent {a.agent_id}: duplicate agent identity: {a.identity_conflict}")


@main.group()
def events() -> None:
    """The event journal."""


@events.command("replay")
@click.option("--projection", "names", multiple=True, help="Only this projection (repeatable).")
@click.option("--agent", default=None, help="Only this agent's streams.")
@click.pass_context
def events_replay(ctx: click.Context, names: tuple[str, ...], agent: str | None) -> None:
    """Rebuild projections from the journal (idempotent; safe while ingest runs)."""
    from server.projections import default_projections, replay

    config = _config(ctx.find_root())
    engine = _engine(config)
    chosen = default_projections()
    known = [p.name for p in chosen]
    unknown = [n for n in names if n not in known]
    if unknown:
        exit_with(f"events: unknown projection {unknown[0]!r} (known: {', '.join(known)})")
    if names:
        chosen = [p for p in chosen if p.name in names]
    done = replay(engine, chosen, agent)
    for r in done:
        click.echo(f"{r.projection}\t{r.agent_id}\t{r.epoch}\t{r.events} numbers replayed")
    understood = sum({(r.agent_id, r.epoch): r.now_understood for r in done}.values())
    click.echo(f"{len(done)} projection streams replayed; {understood} events newly understood")


@main.group()
def command() -> None:
    """Commands to agents (ping, time.set, config.update, cards.sync, cards.usage,
    restock.order)."""


@command.command("send")
@click.argument("agent")
@click.argument("kind")
@click.option("--data", default="{}", help="The command's fields as JSON.")
@click.option("--data-file", type=click.Path(path_type=Path, dir_okay=False), default=None)
@click.pass_context
def command_send(
    ctx: click.Context, agent: str, kind: str, data: str, data_file: Path | None
) -> None:
    """Queue a command for AGENT and publish it; print its id."""
    from datetime import UTC, datetime

    from server import commands

    config = _config(ctx.find_root())
    engine = _engine(config)
    with failing("command", commands.CommandError, OSError):
        try:
            fields = json.loads(data_file.read_text(encoding="utf-8") if data_file else data)
        except json.JSONDecodeError as exc:
            exit_with(f"command: --data is not JSON: {exc.msg} at position {exc.pos}")
        if not isinstance(fields, dict):
            raise commands.CommandError("--data must be a JSON object, e.g. '{\"version\": 1}'")
        body = commands.parse_body(kind, fields)
        out = commands.queue(engine, config.mqtt.topic_prefix, agent, body, datetime.now(UTC))
    click.echo(out.id)


@command.command("list")
@click.option("--agent", default=None)
@click.pass_context
def command_list(ctx: click.Context, agent: str | None) -> None:
    """Commands and their results, newest first."""
    from server.store.schema import commands as commands_table

    config = _config(ctx.find_root())
    engine = _engine(config)
    query = sa.select(commands_table).order_by(commands_table.c.created_at.desc()).limit(100)
    if agent:
        query = query.where(commands_table.c.agent_id == agent)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out = [
        [
            r.id,
            r.agent_id,
            r.kind,
            str(r.attempts),
            {True: "ok", False: "failed", None: "waiting"}[r.result_ok],
            (r.result_detail or "")[:60],
        ]
        for r in rows
    ]
    click.echo(table(["id", "agent", "kind", "sent", "result", "detail"], out) if out else "none")


@main.group()
def broker() -> None:
    """The broker: accounts, ACL and TLS certificates; agent config skeletons."""


def _note_unreadable(path: Path) -> None:
    from server.broker import unreadable_note

    if note := unreadable_note(path):
        click.echo(f"broker: {note}", err=True)


@broker.command("add-user")
@click.argument("username")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False), required=True)
def broker_add_user(username: str, password_file: Path) -> None:
    """Add or reset a broker user (e.g. edge-server); print the new password.

    Run as root, the file is left owned by root, group mosquitto, mode 0640, so that Mosquitto
    reads it after dropping privileges."""
    from server.broker import BrokerAccountError, add_user

    with failing("broker", BrokerAccountError, OSError, code=1):
        click.echo(add_user(password_file, username))
    _note_unreadable(password_file)


@broker.command("acl")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the ACL here (root:mosquitto, 0640) instead of printing it.",
)
@click.pass_context
def broker_acl(ctx: click.Context, out: Path | None) -> None:
    """Mosquitto's ACL for this server's mqtt.topic_prefix and mqtt.username."""
    from server.broker import acl_text, hand_to_mosquitto

    config = _config(ctx.find_root())
    text = acl_text(config.mqtt.topic_prefix, config.mqtt.username or "edge-server")
    if out is None:
        click.echo(text, nl=False)
        return
    with failing("broker", OSError, code=1):
        out.write_text(text, encoding="utf-8")
        hand_to_mosquitto(out)
    click.echo(f"ACL for topic prefix {config.mqtt.topic_prefix!r} written to {out}")
    _note_unreadable(out)


@broker.command("make-certs")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory for ca.key, ca.crt, broker.key, broker.crt (e.g. /etc/mosquitto/edge/tls).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    metavar="NAME",
    help="A DNS name or IP address clients use to reach the broker; repeat for each.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 36500),
    default=1825,
    show_default=True,
    help="How long the broker's certificate is valid.",
)
def broker_make_certs(out: Path, hosts: tuple[str, ...], days: int) -> None:
    """A county CA and the broker's TLS certificate signed by it (with the openssl command).

    The CA is made once (ca.key, ca.crt) and reused when DIR already holds it, so running
    this again renews the broker's certificate (or changes its names) without touching the
    agents, which trust ca.crt."""
    from server.broker import CertificateError, make_certs

    with failing("broker", CertificateError, OSError, code=1):
        certs = make_certs(out, list(hosts), days)
    made = "made" if certs.ca_created else "kept"
    click.echo(f"county CA {made}: {certs.ca_cert} (give it to agents and the server)")
    click.echo(f"  {certs.ca_key}: root only; it signs the next broker certificate")
    click.echo(
        f"broker certificate for {', '.join(hosts)} until {certs.broker_expires}: "
        f"{certs.broker_cert}, {certs.broker_key} (root:mosquitto 0640)"
    )
    _note_unreadable(certs.broker_key)


@broker.command("provision-agent")
@click.option("--agent", "agent_id", required=True)
@click.option("--site", required=True)
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--broker-host", default=None, help="As the agent reaches it (default: mqtt.host).")
@click.option("--broker-port", type=int, default=None)
@click.pass_context
def broker_provision_agent(
    ctx: click.Context,
    agent_id: str,
    site: str,
    password_file: Path,
    out: Path,
    broker_host: str | None,
    broker_port: int | None,
) -> None:
    """Create the agent's broker account and write its agent.toml skeleton to --out."""
    from pydantic import TypeAdapter, ValidationError

    from edge_agent.wire import Ident
    from server.broker import BrokerAccountError, add_user, agent_config_skeleton

    config = _config(ctx.find_root())
    try:
        TypeAdapter(Ident).validate_python(agent_id)
        TypeAdapter(Ident).validate_python(site)
    except ValidationError:
        exit_with("broker: agent and site must be lower-case identifiers")
    if out.exists():
        exit_with(f"broker: {out} exists; not overwritten")
    with failing("broker", BrokerAccountError, OSError, code=1):
        password = add_user(password_file, agent_id)
        out.write_text(
            agent_config_skeleton(
                agent_id=agent_id,
                site=site,
                host=broker_host or config.mqtt.host,
                port=broker_port or config.mqtt.port,
                prefix=config.mqtt.topic_prefix,
                password=password,
                tls=config.mqtt.tls,
            ),
            encoding="utf-8",
        )
        out.chmod(0o600)
    click.echo(f"agent {agent_id} (site {site}): broker account in {password_file}, config {out}")
    _note_unreadable(password_file)
    click.echo("reload the broker to take the new account: systemctl reload mosquitto")


@main.group(invoke_without_command=True)
@click.option("--site", default=None, help="Only this site's boxes.")
@click.option("--days", type=click.IntRange(1, 90), default=7, show_default=True)
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.pass_context
def boxes(ctx: click.Context, site: str | None, days: int, lang: str | None) -> None:
    """Every dispensing box: its slots, board, door, open faults and recent days
    (boxes tail: their events as they arrive)."""
    if ctx.invoked_subcommand is not None:
        return
    from datetime import UTC

    from server.cabinet.queries import boxes as box_states
    from server.cabinet.text import describe_box

    config = _config(ctx.find_root())
    language_ = _lang(config, lang)
    found = box_states(_engine(config), config.server.zone, datetime.now(UTC), site, days)
    if not found:
        click.echo(t("boxes.none", language_))
        return
    click.echo("\n\n".join(describe_box(b, language_, config.server.zone, days) for b in found))


@boxes.command("tail")
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between looks.",
)
@_from_start
@click.pass_context
def boxes_tail(ctx: click.Context, lang: str | None, interval: float, from_start: bool) -> None:
    """Print box events as they arrive (takes, refusals and why, failed vends, slots running
    low, the door, tamper, the board), until Ctrl-C. No card is ever shown."""
    from server.cabinet.queries import TailCursor, events_since, tail_cursor
    from server.cabinet.text import tail_line

    config = _config(ctx.find_root())
    language_ = _lang(config, lang)
    engine = _engine(config)
    zone = config.server.zone
    cursor = TailCursor() if from_start else tail_cursor(engine)
    try:
        while True:
            found, cursor = events_since(engine, cursor)
            for event in found:
                click.echo(tail_line(event, language_, zone))
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
