"""The agent's buses: RS485 lines and Modbus TCP gateways, shared by every device on them.

A bus belongs to the agent, not to a domain: climate sensors, a storeroom's alarm relay and a
dispensing box may hang on one RS485 line, and the line carries one frame at a time whoever
sends it. Each configured bus is opened once here, with its one lock and frame gap, and the
domains borrow it by id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from edge_agent.config import Bus, RtuBus, TcpBus
from edge_agent.drivers.modbus import ModbusBus, PymodbusBus, RtuSettings, TcpSettings

log = logging.getLogger(__name__)


def open_bus(config: TcpBus | RtuBus) -> ModbusBus:
    gap = config.frame_gap_ms / 1000
    if isinstance(config, TcpBus):
        return PymodbusBus(
            config.id,
            TcpSettings(config.host, config.port, config.timeout_s, config.retries, gap),
        )
    return PymodbusBus(
        config.id,
        RtuSettings(
            config.device,
            config.baudrate,
            config.parity,
            config.stopbits,
            config.bytesize,
            config.timeout_s,
            config.retries,
            gap,
            config.local_echo,
        ),
    )


class Buses:
    """Every bus of the agent by id; opened lazily by the driver on first use."""

    def __init__(self, configs: Iterable[Bus]) -> None:
        self._buses: dict[str, ModbusBus] = {c.id: open_bus(c) for c in configs}

    def __getitem__(self, bus_id: str) -> ModbusBus:
        return self._buses[bus_id]

    def __contains__(self, bus_id: object) -> bool:
        return bus_id in self._buses

    def __len__(self) -> int:
        return len(self._buses)

    async def close(self) -> None:
        for bus in self._buses.values():
            await bus.close()
