"""The agent's buses: RS485 lines and Modbus TCP gateways, shared by every device on them.

A bus belongs to the agent, not to a domain: climate sensors, a storeroom's alarm relay and a
dispensing box may hang on one RS485 line, and the line carries one frame at a time whoever
sends it. Each configured bus is opened once here, with its one lock and frame gap, and the
domains borrow it by id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from edge_agent.config import Bus, RtuBus, SerialBus, TcpBus
from edge_agent.drivers.modbus import ModbusBus, PymodbusBus, RtuSettings, TcpSettings
from edge_agent.drivers.serial_line import SerialLine

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
        configs = list(configs)
        self._buses: dict[str, ModbusBus] = {
            c.id: open_bus(c) for c in configs if not isinstance(c, SerialBus)
        }
        self._lines: dict[str, SerialLine] = {
            c.id: SerialLine(
                c.device,
                baudrate=c.baudrate,
                parity=c.parity,
                stopbits=c.stopbits,
                bytesize=c.bytesize,
            )
            for c in configs
            if isinstance(c, SerialBus)
        }

    def __getitem__(self, bus_id: str) -> ModbusBus:
        return self._buses[bus_id]

    def line(self, bus_id: str) -> SerialLine:
        """A raw serial line (a box's board, a card reader): one device, its protocol its own."""
        return self._lines[bus_id]

    def __contains__(self, bus_id: object) -> bool:
        return bus_id in self._buses

    def __len__(self) -> int:
        return len(self._buses)

    async def close(self) -> None:
        for bus in self._buses.values():
            await bus.close()
        for line in self._lines.values():
            await line.close()
