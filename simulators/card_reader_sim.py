"""A simulated card reader on a real pseudo-terminal, in the three output formats of
docs/protocols/cabinet.md ("Card readers"): ``hex-line``, ``binary`` and ``id-line``.

Written from the document only (the agent's decoder is ``edge_agent/drivers/card_reader.py``):
``encode`` is what the reader's firmware would send for one read of a card.
"""

from __future__ import annotations

import asyncio
import logging
import re

from simulators.cabinet_config import ReaderSettings
from simulators.cabinet_line import SimLine

log = logging.getLogger(__name__)

STX, ETX = 0x02, 0x03
HEX_LINE_UID_BYTES = (4, 7, 8, 10)
BINARY_UID_BYTES = (4, 7, 8, 10)
ID_NUMBER = re.compile(r"^\d{17}[\dXx]$")


def parse_uid(card: str) -> bytes:
    """A UID written as hex, with or without spaces or colons between the bytes."""
    digits = re.sub(r"[\s:]", "", card)
    if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", digits):
        raise ValueError(f"not a card UID in hex: {card!r}")
    return bytes.fromhex(digits)


def encode(settings: ReaderSettings, card: str) -> bytes:
    """The bytes the reader sends for one read of ``card`` (a hex UID, or an ID number)."""
    if settings.format == "id-line":
        if not ID_NUMBER.match(card):
            raise ValueError(f"not an 18-character ID number: {card!r}")
        return card.upper().encode("ascii") + settings.line_end.encode("ascii")
    uid = parse_uid(card)
    allowed = HEX_LINE_UID_BYTES if settings.format == "hex-line" else BINARY_UID_BYTES
    if len(uid) not in allowed:
        raise ValueError(
            f"a {settings.format} reader reads UIDs of {allowed} bytes, not {len(uid)}"
        )
    if settings.uid_reversed:
        uid = uid[::-1]
    if settings.format == "hex-line":
        text = settings.separator.join(f"{b:02X}" for b in uid)
        if settings.lowercase:
            text = text.lower()
        return (text + settings.line_end).encode("ascii")
    length = 1 + len(uid)
    bcc = length ^ settings.card_type
    for b in uid:
        bcc ^= b
    return bytes([STX, length, settings.card_type, *uid, bcc, ETX])


class ReaderSim:
    """One reader. ``start()`` (in a running loop) makes the pseudo-terminal and the symlink
    ``settings.link``; ``stop()`` removes them."""

    def __init__(self, settings: ReaderSettings, name: str = "reader") -> None:
        self.settings = settings
        self.name = name
        self.link = settings.link
        self.line = SimLine(settings.link, f"reader {name}")
        #: Every report sent, in order (for tests and ``show``).
        self.sent: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hold: asyncio.Task[int] | None = None

    @property
    def device_path(self) -> str:
        return self.line.device_path

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.line.open(self._ignore)
        self.line.resume()
        log.info("reader %s (%s) on %s", self.name, self.settings.format, self.link)

    async def stop(self) -> None:
        await self.lift()
        self.line.close()

    def swipe(self, card: str) -> bytes:
        """One read of a card held briefly to the reader; returns the bytes sent."""
        data = encode(self.settings, card)
        self.send_raw(data)
        self.sent.append(data)
        return data

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are (a misread, a broken frame)."""
        self.line.write(data)

    async def hold(self, card: str, seconds: float) -> int:
        """A card left on the reader for ``seconds``: reported at once and again every
        ``repeat_s``, as a real reader does; returns how many reports were sent."""
        encode(self.settings, card)  # refuse a bad card before the first report
        loop = asyncio.get_running_loop()
        start = loop.time()
        reports = 0
        while True:
            self.swipe(card)
            reports += 1
            due = start + reports * self.settings.repeat_s
            if due > start + seconds:
                return reports
            await asyncio.sleep(due - loop.time())

    def hold_in_background(self, card: str, seconds: float) -> asyncio.Task[int]:
        """``hold`` as a task (a new hold replaces one still running)."""
        encode(self.settings, card)
        if self._hold is not None:
            self._hold.cancel()
        self._hold = asyncio.get_running_loop().create_task(self.hold(card, seconds))
        return self._hold

    async def lift(self) -> None:
        """Take a held card away."""
        task, self._hold = self._hold, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def _ignore(self, data: bytes) -> None:
        """The reader ignores what it is sent (read anyway, so the line never fills up)."""
        log.debug("reader %s ignores %d bytes", self.name, len(data))
