"""The agent's asyncio main: outbox, climate loop, link, commands and the systemd watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import datetime
from pathlib import Path
from typing import TypedDict

from edge_agent import __version__, control, probation
from edge_agent import commands as commands_domain
from edge_agent.buses import Buses
from edge_agent.cabinet import store as cabinet_store
from edge_agent.cabinet.domain import Cabinet
from edge_agent.climate import compaction as climate_compaction
from edge_agent.climate.service import ClimateService
from edge_agent.clock import Clock
from edge_agent.commands import CommandHandler
from edge_agent.config import AgentConfig
from edge_agent.link import Link
from edge_agent.outbox import AsyncOutbox, Compaction, DomainSchema, Outbox, OutboxCorrupt
from edge_agent.watchdog import Watchdog, sd_notify, watchdog_interval
from edge_agent.wire import AgentStarted, OutboxReset

log = logging.getLogger(__name__)

#: Exit status asking the service manager for a restart (a new configuration was saved).
EXIT_RESTART = 75


class _Stopping(Exception):
    """Raised inside the task group to cancel every task on a stop request."""


async def _verify(outbox: AsyncOutbox, stop: asyncio.Event) -> None:
    """The outbox's full integrity check, after start so it never delays READY. A damaged file
    is set aside at the next start; the agent stops now so that systemd starts it again."""
    try:
        await outbox.verify()
    except OutboxCorrupt as exc:
        log.critical("%s; restarting to set it aside", exc)
        stop.set()


#: Domains' tables kept in the outbox file, and the events they let be folded.
SCHEMAS = [commands_domain.SCHEMA, cabinet_store.SCHEMA]
COMPACTION = [climate_compaction.COMPACTION]


class OutboxOptions(TypedDict):
    path: Path
    agent_id: str
    max_events: int
    max_bytes: int
    schemas: list[DomainSchema]
    compaction: list[Compaction]


def outbox_options(config: AgentConfig) -> OutboxOptions:
    return {
        "path": config.outbox_path,
        "agent_id": config.agent.id,
        "max_events": config.outbox.max_events,
        "max_bytes": int(config.outbox.max_mb * 1024 * 1024),
        "schemas": SCHEMAS,
        "compaction": COMPACTION,
    }


def open_outbox(config: AgentConfig) -> AsyncOutbox:
    return AsyncOutbox(**outbox_options(config))


def open_outbox_sync(config: AgentConfig) -> Outbox:
    """The same outbox for tools outside the agent's loop (``edge-sim inject``)."""
    return Outbox(**outbox_options(config))


async def run(
    config: AgentConfig,
    stop: asyncio.Event | None = None,
    config_path: Path | None = None,
    clock: Clock | None = None,
) -> int:
    """Run until ``stop`` is set or SIGTERM/SIGINT arrives; return the exit status."""
    stop = stop or asyncio.Event()
    exit_code = 0
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    if clock is None:
        clock = Clock(lambda: False) if config.clock.source == "server" else Clock()
    outbox = open_outbox(config)
    sync_outbox = await outbox.open()
    watchdog = Watchdog(watchdog_interval())

    def request_restart() -> None:
        nonlocal exit_code
        exit_code = EXIT_RESTART
        stop.set()

    buses = Buses(config.buses)
    cabinet = Cabinet(
        config.cabinet, site=config.agent.site, buses=buses, outbox=outbox, clock=clock
    )
    commands = CommandHandler(
        agent_id=config.agent.id,
        outbox=outbox,
        clock=clock,
        config_path=config_path,
        data_dir=config.agent.data_dir,
        request_restart=request_restart,
        probation_s=config.agent.config_probation_s,
        domains=cabinet.appliers(),
        applied=cabinet.applied,
    )
    link = Link(
        config.mqtt,
        config.link,
        site=config.agent.site,
        agent_id=config.agent.id,
        outbox=outbox,
        clock=clock,
        version=__version__,
        on_command=commands.handle,
        on_bad_command=commands.refuse,
        heartbeat=watchdog.register("link", max_age_s=30.0),
        cards_version=lambda: cabinet.cards_version,
    )
    climate_beat = (
        watchdog.register("climate", max_age_s=2 * config.climate.poll_interval_s + 60)
        if config.climate.sensors
        else lambda: None
    )

    def reading_seen(at: datetime) -> None:
        link.last_reading_at = at

    climate = ClimateService(
        config.climate, buses, outbox, clock, on_record=reading_seen, heartbeat=climate_beat
    )
    if sync_outbox.reset is not None:
        lost = sync_outbox.reset
        reset = OutboxReset(
            reason=lost.reason[:500],
            kept_as=str(lost.kept_as or "")[:500],
            cause=lost.cause,
            previous_epoch=lost.previous_epoch,
            previous_last_seq=lost.previous_last_seq,
            lost_events=lost.lost_events,
        )
        await outbox.append("agent.outbox_reset", reset, clock.stamp())
    await outbox.append("agent.started", AgentStarted(version=__version__), clock.stamp())
    rolled_back = probation.take_rollback_note(config.agent.data_dir)
    if rolled_back is not None:
        await outbox.append("agent.config_rolled_back", rolled_back, clock.stamp())
        probation.forget_rollback_note(config.agent.data_dir)
    on_probation = probation.current(config.agent.data_dir)
    log.info(
        "agent %s (site %s) started: %d sensors, %d boxes, outbox %s (epoch %s, backlog %d)",
        config.agent.id,
        config.agent.site,
        len(config.climate.sensors),
        len(config.cabinet.boxes),
        config.outbox_path,
        sync_outbox.epoch,
        sync_outbox.backlog,
    )
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(link.run(), name="link")
            group.create_task(climate.run(), name="climate")
            group.create_task(cabinet.run(), name="cabinet")
            group.create_task(watchdog.run(), name="watchdog")
            group.create_task(_verify(outbox, stop), name="outbox-check")
            if on_probation is not None:
                group.create_task(
                    probation.watch(
                        config.agent.data_dir,
                        on_probation,
                        link.connected,
                        lambda: link.last_error,
                        request_restart,
                    ),
                    name="config-probation",
                )
            group.create_task(
                control.serve(config.agent.data_dir / control.SOCKET_NAME, climate, cabinet),
                name="control",
            )
            await stop.wait()
            raise _Stopping
    except* _Stopping:
        log.info("agent stopping")
        sd_notify("STOPPING=1")
    finally:
        await buses.close()
        await outbox.close()
    return exit_code
