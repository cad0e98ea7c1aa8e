"""Reading one card from a desk reader on a serial line, for ``cards issue --reader``.

Deliberately small and blocking (the agent's reader driver, written apart, does repeats,
reconnection and the rest): open the device, wait for one line or frame in the reader's
format (``docs/protocols/cabinet.md``, "Card readers"), and return the card's pseudonym. The
card's number never leaves this module: it is hashed as soon as it is decoded, and no error
says what was read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import serial

from edge_agent.pseudonym import CardKey, PseudonymError, normalise_uid, of_id_number, of_uid

Format = Literal["hex-line", "binary", "id-line"]
FORMATS: tuple[Format, ...] = ("hex-line", "binary", "id-line")
STX, ETX = 0x02, 0x03
_LONGEST = 256


class ReaderError(Exception):
    """No card could be read; ``key`` names the people's text (``i18n``)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def read_card(
    device: str,
    fmt: Format,
    key: CardKey,
    timeout_s: float,
    baud: int = 9600,
    reversed_uid: bool = False,
    on_open: Callable[[], None] | None = None,
) -> str:
    """Wait up to ``timeout_s`` for one card on ``device``; return its pseudonym.

    ``on_open`` is called once the device is open, to tell the person to present the card.
    ``reversed_uid``: the reader sends the UID least significant byte first. Raises
    ``ReaderError``: ``reader.open_failed``, ``reader.timeout``, ``reader.bad`` (not a card),
    ``id.check`` (an ID number whose check character is wrong: a misread).
    """
    try:
        port = serial.Serial(device, baud, timeout=0.1)
    except (serial.SerialException, OSError, ValueError):
        raise ReaderError("reader.open_failed") from None
    with port:
        if on_open is not None:
            on_open()
        deadline = time.monotonic() + timeout_s
        buffer = bytearray()
        while time.monotonic() < deadline:
            try:
                buffer += port.read(64)
            except (serial.SerialException, OSError):
                raise ReaderError("reader.open_failed") from None
            found = _take(buffer, fmt, key, reversed_uid)
            if found is not None:
                return found
            if len(buffer) > _LONGEST:
                raise ReaderError("reader.bad")
    raise ReaderError("reader.timeout")


def _take(buffer: bytearray, fmt: Format, key: CardKey, reversed_uid: bool) -> str | None:
    """The pseudonym of the first complete line or frame in ``buffer``, or None for more."""
    if fmt == "binary":
        start = buffer.find(STX)
        if start < 0 or len(buffer) < start + 2:
            return None
        length = buffer[start + 1]
        end = start + length + 4
        if len(buffer) < end:
            return None
        frame = bytes(buffer[start:end])
        buffer.clear()
        body = frame[1 : length + 2]
        bcc = 0
        for byte in body:
            bcc ^= byte
        if frame[-1] != ETX or bcc != frame[-2] or length < 2:
            raise ReaderError("reader.bad")
        return _uid(key, body[2:], reversed_uid)
    for end_byte in (b"\r", b"\n"):
        end = buffer.find(end_byte)
        if end < 0:
            continue
        line = bytes(buffer[:end]).strip()
        del buffer[: end + 1]
        if not line:
            return None
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise ReaderError("reader.bad") from None
        if fmt == "id-line":
            try:
                return of_id_number(key, text)
            except PseudonymError:
                raise ReaderError("id.check") from None
        return _uid(key, text, reversed_uid)
    return None


def _uid(key: CardKey, uid: bytes | str, reversed_uid: bool) -> str:
    """A UID that no card has is the reader's misread (or the wrong format)."""
    try:
        value = bytes.fromhex(normalise_uid(uid))
        return of_uid(key, value[::-1] if reversed_uid else value)
    except PseudonymError:
        raise ReaderError("reader.bad") from None
