"""Card readers' byte streams to card reads, and a read to the card's pseudonym.

Pure: bytes in, reads out; time is passed in. The formats are those of
``docs/protocols/cabinet.md`` ("Card readers"). A read holds the card's identifier only until
``identify`` turns it into the pseudonym, so nothing here ever shows an identifier: a
``CardRead`` hides its value in ``repr``, and a ``ReadFault`` carries a reason and a byte count,
never the bytes (a misread ID number is still most of a person's ID number).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Literal

from edge_agent.pseudonym import (
    PSEUDONYM_PATTERN,
    CardKey,
    CardKind,
    PseudonymError,
    age_on,
    birth_date,
    normalise_id_number,
    normalise_uid,
    of_id_number,
    of_uid,
)

#: The longest line kept; anything longer is no card (a hex UID with separators is 29 bytes).
MAX_LINE = 64

STX = 0x02
ETX = 0x03
#: LEN = 1 (TYPE) + a UID of 4, 7, 8 or 10 bytes.
_FRAME_LENGTHS = frozenset({5, 8, 9, 11})

FaultReason = Literal[
    "garbage",  # bytes that are no line or frame of the format
    "bad_length",  # a line with a number of characters no card has, or a frame's LEN byte
    "bad_bcc",  # a frame whose check byte is wrong
    "bad_etx",  # a frame not ended by 0x03 where its LEN says
    "truncated",  # a frame cut short by the start of a good one
    "too_long",  # a line longer than MAX_LINE (dropped up to its end)
    "misread",  # an ID number with a wrong check character or an impossible birth date
]


class ReaderFormat(StrEnum):
    HEX_LINE = "hex-line"
    BINARY = "binary"
    ID_LINE = "id-line"


@dataclass(frozen=True)
class CardRead:
    """A card as its reader reported it: ``value`` is the normalised identifier (upper-case UID
    hex, or the 18-character ID number). Hidden from ``repr`` and ``str``, so a read that ends
    up in a log line or an exception shows no identifier."""

    kind: CardKind
    value: str

    def __post_init__(self) -> None:
        # The same checks as the decoder's: a CardRead always holds a usable identifier.
        if self.kind == "ic":
            ok = normalise_uid(self.value) == self.value
        elif self.kind == "id":
            ok = normalise_id_number(self.value) == self.value
            birth_date(self.value)
        else:
            raise PseudonymError("a card read is of kind 'ic' or 'id'")
        if not ok:
            raise PseudonymError("a card read holds a normalised identifier")

    def __repr__(self) -> str:
        return f"CardRead(kind={self.kind!r}, value=<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class ReadFault:
    """Something a reader sent that is not a card: why, and how many bytes were dropped."""

    reason: FaultReason
    size: int


Decoded = CardRead | ReadFault


class ReaderDecoder:
    """One reader's byte stream, fed as it arrives (in pieces of any size), decoded into reads
    and faults. Never raises on input, and holds at most ``MAX_LINE`` bytes between feeds."""

    def __init__(self, format: ReaderFormat, *, uid_reversed: bool = False) -> None:
        self.format = ReaderFormat(format)
        if uid_reversed and self.format is ReaderFormat.ID_LINE:
            raise ValueError("uid_reversed applies to IC-card readers, not to an id-line reader")
        self.uid_reversed = uid_reversed
        self._buf = bytearray()
        self._skipping = False  # lines: dropping a too-long line up to its end
        # binary: bytes dropped in this feed and not yet reported
        self._pending_reason: FaultReason = "garbage"
        self._pending_size = 0

    @property
    def buffered(self) -> int:
        """Bytes held for a line or frame not yet complete (never more than ``MAX_LINE``)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Decoded]:
        if self.format is ReaderFormat.BINARY:
            return self._feed_frames(data)
        return self._feed_lines(data)

    # -- lines (hex-line, id-line) ------------------------------------------------------

    def _feed_lines(self, data: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        start = 0
        for m in _LINE_END.finditer(data):
            self._line_piece(data[start : m.start()], True, out)
            start = m.end()
        self._line_piece(data[start:], False, out)
        return out

    def _line_piece(self, piece: bytes, ended: bool, out: list[Decoded]) -> None:
        """Add the bytes up to a line end (``ended``) or up to the end of what has arrived.
        CR, LF and CR LF all end a line: CR LF is a line and a blank line, ignored."""
        if self._skipping:
            self._skipping = not ended
            return
        room = MAX_LINE + 1 - len(self._buf)
        if len(piece) >= room:
            out.append(ReadFault("too_long", len(self._buf) + len(piece)))
            self._buf.clear()
            self._skipping = not ended
            return
        self._buf += piece
        if ended:
            line = bytes(self._buf)
            self._buf.clear()
            decoded = self._line(line)
            if decoded is not None:
                out.append(decoded)

    def _line(self, line: bytes) -> Decoded | None:
        text = line.strip(b" \t")
        if not text:
            return None
        if self.format is ReaderFormat.HEX_LINE:
            return self._hex_line(text, len(line))
        return _id_line(text, len(line))

    def _hex_line(self, text: bytes, size: int) -> Decoded:
        if not _HEX_CHARS.fullmatch(text):
            return ReadFault("garbage", size)
        digits = text.replace(b" ", b"").replace(b":", b"")
        if len(digits) not in (8, 14, 16, 20):
            return ReadFault("bad_length", size)
        if not _HEX_BYTES.fullmatch(text):  # a separator inside a byte, or two in a row
            return ReadFault("garbage", size)
        return self._ic(bytes.fromhex(digits.decode("ascii")))

    # -- binary frames ------------------------------------------------------------------

    def _feed_frames(self, data: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        buf = self._buf
        buf += data
        while buf:
            start = buf.find(STX)
            if start < 0:
                self._drop("garbage", len(buf), out)
                break
            if start:
                self._drop("garbage", start, out)
            if len(buf) < 2:
                break  # a frame's LEN, or noise: the next byte tells
            status = _frame_status(buf, 0)
            if isinstance(status, int):
                uid = bytes(buf[3 : status - 2])
                del buf[:status]
                self._flush_faults(out)
                out.append(self._ic(uid))
            elif status == "incomplete":
                # A frame cut short (a reader reset mid-frame) must not hold back a good frame
                # behind it until enough bytes have come to fill the broken one.
                later = next((j for j in range(1, len(buf)) if _frame_ok(buf, j)), None)
                if later is None:
                    break
                self._drop("truncated", later, out)
            else:
                # Resynchronise on the next 0x02, which may be inside the broken frame. A bad
                # LEN is most often noise that happens to hold a 0x02.
                self._drop(status, _next_stx(buf), out)
        self._flush_faults(out)
        return out

    def _drop(self, reason: FaultReason, count: int, out: list[Decoded]) -> None:
        """Drop ``count`` bytes. Consecutive drops of one reason in a feed are one fault, so a
        stream of noise is a few faults per feed, not one per stray 0x02."""
        del self._buf[:count]
        if self._pending_size and self._pending_reason != reason:
            self._flush_faults(out)
        self._pending_reason = reason
        self._pending_size += count

    def _flush_faults(self, out: list[Decoded]) -> None:
        if self._pending_size:
            out.append(ReadFault(self._pending_reason, self._pending_size))
            self._pending_size = 0

    def _ic(self, uid: bytes) -> Decoded:
        if self.uid_reversed:
            uid = uid[::-1]
        try:
            return CardRead("ic", normalise_uid(uid))
        except PseudonymError:
            return ReadFault("bad_length", len(uid))


_LINE_END = re.compile(rb"[\r\n]")
_HEX_CHARS = re.compile(rb"[0-9A-Fa-f :]+")
_HEX_BYTES = re.compile(rb"[0-9A-Fa-f]{2}(?:[ :]?[0-9A-Fa-f]{2})*")
_ID_CHARS = re.compile(rb"[0-9]{17}[0-9Xx]")


def _id_line(text: bytes, size: int) -> Decoded:
    if len(text) != 18:
        return ReadFault("bad_length", size)
    if not _ID_CHARS.fullmatch(text):
        return ReadFault("garbage", size)
    try:
        number = normalise_id_number(text.decode("ascii"))
        birth_date(number)
    except PseudonymError:
        return ReadFault("misread", size)
    return CardRead("id", number)


def _frame_status(
    buf: bytearray, i: int
) -> int | Literal["incomplete", "bad_length", "bad_etx", "bad_bcc"]:
    """The frame starting with the 0x02 at ``buf[i]``: its total size if it is good."""
    if len(buf) < i + 2:
        return "incomplete"
    length = buf[i + 1]
    if length not in _FRAME_LENGTHS:
        return "bad_length"
    size = length + 4  # STX LEN [TYPE UID] BCC ETX
    if len(buf) < i + size:
        return "incomplete"
    if buf[i + size - 1] != ETX:
        return "bad_etx"
    bcc = 0
    for b in buf[i + 1 : i + size - 2]:
        bcc ^= b
    if bcc != buf[i + size - 2]:
        return "bad_bcc"
    return size


def _next_stx(buf: bytearray) -> int:
    """How many bytes to drop to resynchronise on the next 0x02 (all of them if none)."""
    after = buf.find(STX, 1)
    return after if after > 0 else len(buf)


def _frame_ok(buf: bytearray, i: int) -> bool:
    return buf[i] == STX and isinstance(_frame_status(buf, i), int)


class RepeatFilter:
    """Tells a new swipe from a card left on the reader, which reports it again and again.

    A card reported within ``window_s`` of its previous report (fresh or not) is the same
    swipe; once it has not been reported for ``window_s``, its next report is fresh. Keyed by
    pseudonym, so no identifier is kept. Remembers only cards seen within the window, and at
    most ``max_cards`` of them (the oldest forgotten first), whatever a reader sends.
    """

    def __init__(self, window_s: float = 3.0, *, max_cards: int = 256) -> None:
        if not (math.isfinite(window_s) and window_s >= 0):
            raise ValueError("window_s is a finite number of seconds, 0 or more")
        if max_cards < 1:
            raise ValueError("max_cards is at least 1")
        self.window_s = window_s
        self.max_cards = max_cards
        self._last: OrderedDict[str, float] = OrderedDict()  # oldest report first

    def fresh(self, key: str, now: float) -> bool:
        """Whether this report of ``key`` at ``now`` (monotonic seconds) is a new swipe."""
        while self._last:
            oldest, seen = next(iter(self._last.items()))
            if now - seen < self.window_s:
                break
            del self._last[oldest]
        previous = self._last.pop(key, None)
        self._last[key] = now
        while len(self._last) > self.max_cards:
            self._last.popitem(last=False)
        return previous is None or now - previous >= self.window_s

    def __len__(self) -> int:
        return len(self._last)


@dataclass(frozen=True)
class Swipe:
    """A card as the rest of the agent knows it: its pseudonym and, for an ID card, the
    holder's age in completed years (for an age policy; only its verdict is ever kept)."""

    card: str
    kind: CardKind
    age: int | None

    def __post_init__(self) -> None:
        if not re.fullmatch(PSEUDONYM_PATTERN, self.card):
            raise ValueError("a swipe's card is a pseudonym (64 lower-case hex digits)")

    def __repr__(self) -> str:
        # The age comes from the ID number; it stays out of logs like the number itself.
        age = "<hidden>" if self.age is not None else "None"
        return f"Swipe(card={self.card!r}, kind={self.kind!r}, age={age})"

    __str__ = __repr__


def identify(read: CardRead, key: CardKey, today: date) -> Swipe:
    """The read's pseudonym (and age, for an ID card, on ``today`` in the site's time zone).

    An ID card always gets an age, so an age policy is never skipped for lack of one: a birth
    date after ``today`` (a forged number, or the agent's clock far behind) raises
    ``PseudonymError``, to be handled like a misread. An impossible birth date never gets here:
    the decoder reports it as a ``misread`` fault.
    """
    if read.kind == "ic":
        return Swipe(of_uid(key, read.value), "ic", None)
    return Swipe(of_id_number(key, read.value), "id", age_on(read.value, today))
