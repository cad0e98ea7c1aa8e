"""The agent's asyncio main: opens the outbox, runs the climate loop and the link, stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import datetime

from edge_agent import __version__
from edge_agent.climate.service import ClimateService
from edge_agent.clock import Clock
from edge_agent.config import AgentConfig
from edge_agent.link import Link
from edge_agent.outbox import AsyncOutbox
from edge_agent.wire import AgentStarted

log = logging.getLogger(__name__)


async def run(config: AgentConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGTERM/SIGINT arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    clock = Clock()
    outbox = AsyncOutbox(config.outbox_path, config.agent.id)
    await outbox.open()
    link = Link(
        config.mqtt,
        config.link,
        site=config.agent.site,
        agent_id=config.agent.id,
        outbox=outbox,
        version=__version__,
    )

    def reading_seen(at: datetime) -> None:
        link.last_reading_at = at

    climate = ClimateService(config.climate, outbox, clock, on_record=reading_seen)
    await outbox.append("agent.started", AgentStarted(version=__version__), clock.stamp())
    log.info(
        "agent %s (site %s) started: %d sensors, outbox %s",
        config.agent.id,
        config.agent.site,
        len(config.climate.sensors),
        config.outbox_path,
    )
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(link.run(), name="link")
            group.create_task(climate.run(), name="climate")
            await stop.wait()
            raise _Stopping
    except* _Stopping:
        log.info("agent stopping")
    finally:
        await outbox.close()


class _Stopping(Exception):
    """Raised inside the task group to cancel every task on a stop request."""
