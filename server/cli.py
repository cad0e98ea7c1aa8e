"""``edge-server --config FILE run|check|schema|climate latest|climate tail``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click
import sqlalchemy as sa

from edge_agent.configfile import ConfigError
from server.config import ServerConfig, load_config
from server.i18n import Language, pad, t, table


def _config(ctx: click.Context) -> ServerConfig:
    path: Path = ctx.obj
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def _engine(config: ServerConfig) -> sa.Engine:
    from server.store.db import StoreError, open_store

    try:
        return open_store(config.database.url)
    except (StoreError, OSError) as exc:
        click.echo(f"database: {exc}", err=True)
        sys.exit(1)


@click.group()
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
    IngestService(config, _engine(config)).run()


@main.command()
def schema() -> None:
    """Print the wire protocol's JSON Schema."""
    from edge_agent.wire import json_schema

    click.echo(json.dumps(json_schema(), indent=2, ensure_ascii=False))


@main.group()
def climate() -> None:
    """Storeroom temperature and humidity."""


def _lang(config: ServerConfig, lang: str | None) -> Language:
    return "en" if (lang or config.server.language) == "en" else "zh"


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
@click.option("--interval", type=float, default=1.0, show_default=True)
@click.pass_context
def tail(ctx: click.Context, lang: str | None, interval: float) -> None:
    """Print readings as they arrive, until Ctrl-C."""
    from server.climate.queries import last_id, since

    config = _config(ctx.find_root())
    language = _lang(config, lang)
    engine = _engine(config)
    zone = config.server.zone
    cursor = last_id(engine)
    try:
        while True:
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
