"""``edge-sim sensors --config FILE``, ``edge-sim cabinet --config FILE``, ``edge-sim demo`` and
``edge-sim inject``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import click

from edge_agent.configfile import ConfigError


@click.group()
@click.option("--log-level", default="WARNING", show_default=True)
def main(log_level: str) -> None:
    """Simulated hardware and whole simulated sites."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command()
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), required=True
)
def sensors(config_path: Path) -> None:
    """Serve simulated temperature/humidity transmitters until Ctrl-C."""
    from simulators.sensors import load_sensors_config, serve

    try:
        config = load_sensors_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)

    def ready(lines: list[str]) -> None:
        for line in lines:
            click.echo(line)
        click.echo("ready", nl=True)
        sys.stdout.flush()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(config, ready))
    except ValueError as exc:
        click.echo(f"{config_path}: {exc}", err=True)
        sys.exit(2)


@main.command()
@click.option("--seconds", type=float, default=None, help="Stop by itself after this long.")
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
def demo(seconds: float | None, workdir: Path | None, lang: str) -> None:
    """Run a simulated county station end to end until Ctrl-C."""
    from simulators.demo import run_demo

    sys.exit(run_demo(seconds=seconds, workdir=workdir, lang=lang))


@main.command()
@click.option(
    "--agent-config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The agent whose outbox receives the events.",
)
@click.option("--count", type=click.IntRange(1, 10_000_000), required=True)
@click.option(
    "--kind",
    type=click.Choice(["climate", "dispense", "mixed"]),
    default="climate",
    show_default=True,
    help="mixed: six sensors' records with a dispense every 43rd event.",
)
def inject(config_path: Path, count: int, kind: str) -> None:
    """Append synthetic numbered events to an agent's outbox (load and failure tests only:
    they reach the server like real records)."""
    from edge_agent.app import open_outbox_sync
    from edge_agent.clock import Clock
    from edge_agent.config import load_config
    from edge_agent.outbox import OutboxError
    from simulators import synthetic

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    clock = Clock(lambda: False) if config.clock.source == "server" else Clock()
    try:
        outbox = open_outbox_sync(config)
        last = 0
        for event_kind, payload in synthetic.events(count, kind):
            last = outbox.append(event_kind, payload, clock.stamp())
        outbox.close()
    except OutboxError as exc:
        click.echo(f"inject: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{count} events appended; last seq {last}")


@main.command()
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), required=True
)
@click.option("--interactive", is_flag=True, help="Read commands on stdin (help lists them).")
def cabinet(config_path: Path, interactive: bool) -> None:
    """Run simulated dispensing boxes (board, card reader, crowd) until Ctrl-C."""
    from simulators.cabinet import load_cabinet_config, serve

    try:
        config = load_cabinet_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)

    def ready(lines: list[str]) -> None:
        for line in lines:
            click.echo(line)
        click.echo("ready")
        sys.stdout.flush()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(config, ready, interactive=interactive))
    except (ValueError, OSError) as exc:
        click.echo(f"{config_path}: {exc}", err=True)
        sys.exit(2)
