"""The storerooms' sound-and-light outputs: relay coils that follow the alarm state.

Works with no network: the decision is the agent's own. The coil is written as soon as a room's
state changes (so within seconds of the alarm) and written again every ``REASSERT_S``, so a
relay board that lost power or missed a write comes back in step. A write that fails is retried
every ``RETRY_S``. A keeper can silence a room; the output then stays off until the room clears
and alarms again. Each output is driven by its own task, so a dead relay board (each write
waiting out its timeout) never delays another room's alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge_agent.config import AlarmOutput
from edge_agent.drivers.modbus import DriverError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from edge_agent.buses import Buses

log = logging.getLogger(__name__)

REASSERT_S = 30.0
RETRY_S = 2.0


@dataclass
class _Output:
    config: AlarmOutput
    alarm: bool = False
    silenced: bool = False
    written: bool | None = None
    written_at: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def wanted(self) -> bool:
        return self.alarm and not self.silenced


class AlarmOutputs:
    def __init__(self, outputs: Mapping[str, AlarmOutput], buses: Buses) -> None:
        self._outputs = {room: _Output(cfg) for room, cfg in outputs.items()}
        self._buses = buses

    def set(self, storeroom: str, alarm: bool) -> None:
        out = self._outputs.get(storeroom)
        if out is None:
            return
        if alarm and not out.alarm:
            out.silenced = False  # a new alarm sounds again
        out.alarm = alarm
        out.changed.set()

    def silence(self, storeroom: str) -> bool:
        """Silence a sounding output; False when there is nothing to silence."""
        out = self._outputs.get(storeroom)
        if out is None or not out.wanted:
            return False
        out.silenced = True
        out.changed.set()
        return True

    def state(self, storeroom: str) -> bool | None:
        out = self._outputs.get(storeroom)
        return None if out is None else out.wanted

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for room, out in self._outputs.items():
                group.create_task(self._drive(room, out), name=f"alarm-output:{room}")

    async def _drive(self, room: str, out: _Output) -> None:
        cfg = out.config
        while True:
            out.changed.clear()
            failed = False
            now = time.monotonic()
            if out.written != out.wanted or now - out.written_at >= REASSERT_S:
                value = out.wanted  # what is written; the wish may change during the write
                try:
                    await self._buses[cfg.bus].write_coil(cfg.address, cfg.coil, value, urgent=True)
                except DriverError as exc:
                    failed = True
                    log.error("alarm output of %s not set: %s", room, exc)
                except Exception:  # the loop must outlive any one failed write
                    failed = True
                    log.exception("alarm output of %s not set", room)
                else:
                    if out.written != value:
                        log.info("alarm output of %s %s", room, "on" if value else "off")
                    out.written, out.written_at = value, now
                    if out.wanted != value:
                        out.changed.set()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the event is set, and the agent would not stop.
            left = RETRY_S if failed else max(0.0, out.written_at + REASSERT_S - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await out.changed.wait()
