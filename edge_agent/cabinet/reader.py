"""A box's card reader on its serial line: each card it reports becomes a swipe, its pseudonym
taken in the same step, so the raw identifier never leaves this module's loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import date

from edge_agent.cabinet.config import ReaderConfig
from edge_agent.drivers.card_reader import (
    Decoded,
    ReaderDecoder,
    ReaderFormat,
    ReadFault,
    RepeatFilter,
    Swipe,
    identify,
)
from edge_agent.drivers.modbus import DriverError
from edge_agent.drivers.serial_line import SerialLine
from edge_agent.pseudonym import CardKey, PseudonymError

log = logging.getLogger(__name__)

REOPEN_AFTER_S = 5.0


async def read_swipes(
    box_id: str,
    line: SerialLine,
    config: ReaderConfig,
    key: CardKey,
    *,
    today: Callable[[], date],
    monotonic: Callable[[], float],
    swiped: Callable[[Swipe], Awaitable[None]],
    misread: Callable[[], Awaitable[None]],
) -> None:
    """Read for ever; a card left on the reader is one swipe, a reader that vanishes is opened
    again every few seconds."""
    repeats = RepeatFilter(config.repeat_window_s)
    while True:
        decoder = ReaderDecoder(ReaderFormat(config.format), uid_reversed=config.uid_reversed)
        try:
            if not line.is_open:
                await line.open()
            while True:
                for decoded in decoder.feed(await line.read()):
                    swipe = _pseudonymous(box_id, decoded, key, today())
                    if swipe is None:
                        if isinstance(decoded, ReadFault) and decoded.reason != "misread":
                            continue
                        await misread()
                    elif repeats.fresh(swipe.card, monotonic()):
                        await swiped(swipe)
        except DriverError as exc:
            log.warning("box %s: card reader unavailable: %s", box_id, exc)
        await asyncio.sleep(REOPEN_AFTER_S)


def _pseudonymous(box_id: str, decoded: Decoded, key: CardKey, today: date) -> Swipe | None:
    if isinstance(decoded, ReadFault):
        log.info("box %s: card reader sent %s (%d bytes)", box_id, decoded.reason, decoded.size)
        return None
    try:
        return identify(decoded, key, today)
    except PseudonymError:
        log.info("box %s: a card that gives no pseudonym (a birth date ahead of today)", box_id)
        return None
