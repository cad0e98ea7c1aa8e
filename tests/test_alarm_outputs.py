"""Each room's sound-and-light output is driven on its own: a dead relay board delays no other."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from edge_agent.buses import Buses
from edge_agent.climate.alarm import AlarmOutputs
from edge_agent.config import AlarmOutput
from edge_agent.drivers.modbus import DeviceError
from edge_agent.drivers.registers import ReadBlock


class FakeBus:
    """A bus whose coil writes either land at once or hang until the timeout and fail."""

    def __init__(self, name: str, dead: bool) -> None:
        self.name = name
        self.dead = dead
        self.written: list[tuple[int, int, bool]] = []
        self.changed = asyncio.Event()

    async def read(self, unit: int, block: ReadBlock) -> Sequence[int]:
        raise NotImplementedError

    async def write_coil(self, unit: int, coil: int, on: bool, *, urgent: bool = False) -> None:
        if self.dead:
            await asyncio.sleep(30)  # a board that never answers: each write waits its timeout
            raise DeviceError(f"bus {self.name} unit {unit}: no response")
        self.written.append((unit, coil, on))
        self.changed.set()

    async def close(self) -> None:
        return None


async def test_a_dead_relay_board_does_not_delay_another_rooms_alarm() -> None:
    dead, live = FakeBus("dead", dead=True), FakeBus("live", dead=False)
    outputs = AlarmOutputs(
        {
            "no1": AlarmOutput(bus="dead", address=7),
            "no2": AlarmOutput(bus="live", address=8),
        },
        cast(Buses, cast(Any, {"dead": dead, "live": live})),
    )
    task = asyncio.create_task(outputs.run())
    try:
        async with asyncio.timeout(5):
            while not live.written:  # the initial "off" of no2, while no1's write hangs
                live.changed.clear()
                await live.changed.wait()
        outputs.set("no1", True)
        outputs.set("no2", True)
        async with asyncio.timeout(2):  # far less than the dead board's 30 s
            while (8, 0, True) not in live.written:
                live.changed.clear()
                await live.changed.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
