"""``edge-agent --config FILE run|check|silence|cabinet``."""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
from pathlib import Path

import click

from edge_agent.config import AgentConfig, load_config
from edge_agent.configfile import ConfigError


def _load(path: Path) -> AgentConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("/etc/edge-agent/agent.toml"),
    show_default=True,
    help="The agent's TOML configuration.",
)
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def main(ctx: click.Context, config_path: Path, log_level: str) -> None:
    """Edge agent: storeroom climate and dispensing boxes, buffered to the county server."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = config_path


@main.command()
@click.pass_obj
def check(config_path: Path) -> None:
    """Validate the configuration and exit (status 2 when invalid)."""
    config = _load(config_path)
    rooms = len(config.climate.storerooms)
    sensors = len(config.climate.sensors)
    boxes = len(config.cabinet.boxes)
    key_file = config.cabinet.card_key_file
    if key_file is not None and any(b.mode == "card" for b in config.cabinet.boxes):
        from edge_agent.pseudonym import PseudonymError, load_key

        try:
            key = load_key(key_file)
        except PseudonymError as exc:
            click.echo(f"{config_path}: cabinet.card_key_file: {exc}", err=True)
            sys.exit(2)
        click.echo(f"{config_path}: card key {key.key_id}")
    click.echo(
        f"{config_path}: ok (agent {config.agent.id}, {rooms} storerooms, {sensors} sensors, "
        f"{boxes} boxes)"
    )
    if "[[climate.buses]]" in config_path.read_text(encoding="utf-8-sig"):
        click.echo(
            f"{config_path}: warning: [[climate.buses]] is read as [[buses]] (buses are shared "
            "by sensors, relays and boxes); rename the section",
            err=True,
        )
    for room in config.climate.storerooms:
        count = sum(1 for s in config.climate.sensors if s.storeroom == room.id)
        if count < 2:
            click.echo(
                f"{config_path}: warning: storeroom {room.id} has {count} sensor(s); "
                "GSP asks for at least 2",
                err=True,
            )


@main.command()
@click.pass_obj
def run(config_path: Path) -> None:
    """Run the agent until SIGTERM or Ctrl-C."""
    from edge_agent.app import run as run_agent
    from edge_agent.outbox import OutboxError

    config = _load(config_path)
    try:
        code = asyncio.run(run_agent(config, config_path=config_path))
    except OutboxError as exc:
        logging.getLogger("edge_agent").critical("%s", exc)
        sys.exit(1)
    sys.exit(code)


@main.command()
@click.argument("storeroom")
@click.option("--by", default="on site", help="Who silences it (recorded with the event).")
@click.pass_obj
def silence(config_path: Path, storeroom: str, by: str) -> None:
    """Silence the sound-and-light alarm of STOREROOM on the running agent."""
    _control(config_path, "silence", f"silence {storeroom} {by}")


def _control(config_path: Path, what: str, line: str) -> None:
    """One request to the running agent's control socket; exit 0 on ``ok``, 2 on a refusal."""
    from edge_agent.control import SOCKET_NAME, ControlError, request

    config = _load(config_path)
    try:
        reply = request(config.agent.data_dir / SOCKET_NAME, line)
    except ControlError as exc:
        click.echo(f"{what}: {exc}", err=True)
        sys.exit(1)
    click.echo(reply)
    sys.exit(0 if reply.startswith("ok") else 2)


@main.group()
def cabinet() -> None:
    """Record by hand what a technician did to a box (the running agent records it)."""


# The arguments go to the running agent as typed: it checks them, and says what is wrong in its
# own words rather than the command-line library's.


@cabinet.command()
@click.argument("box")
@click.argument("slot")
@click.argument("batch")
@click.argument("expiry")
@click.argument("quantity")
@click.pass_obj
def restock(config_path: Path, box: str, slot: str, batch: str, expiry: str, quantity: str) -> None:
    """QUANTITY units of BATCH (expiring EXPIRY, YYYY-MM-DD) loaded into SLOT of BOX."""
    line = shlex.join(["cabinet", "restock", box, slot, batch, expiry, quantity])
    _control(config_path, "restock", line)


@cabinet.command()
@click.argument("box")
@click.argument("slot")
@click.argument("quantity")
@click.argument("reason", metavar="expired|damaged|recalled|other")
@click.pass_obj
def remove(config_path: Path, box: str, slot: str, quantity: str, reason: str) -> None:
    """QUANTITY units taken out of the front of SLOT of BOX, and why."""
    line = shlex.join(["cabinet", "remove", box, slot, quantity, reason])
    _control(config_path, "remove", line)


@cabinet.command()
@click.argument("box")
@click.argument("slot")
@click.argument("lots", nargs=-1)
@click.pass_obj
def count(config_path: Path, box: str, slot: str, lots: tuple[str, ...]) -> None:
    """What a count found in SLOT of BOX, front first: BATCH:YYYY-MM-DD:QUANTITY each."""
    _control(config_path, "count", shlex.join(["cabinet", "count", box, slot, *lots]))


@cabinet.command()
@click.pass_obj
def status(config_path: Path) -> None:
    """Each box's slots and counts, as the running agent's books have them."""
    _control(config_path, "status", "cabinet status")
