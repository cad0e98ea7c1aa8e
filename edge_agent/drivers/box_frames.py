"""The dispensing box's main-board frames (``docs/protocols/cabinet.md``): bytes and values only.

Pure: no I/O and no clock; the caller passes the time a chunk arrived. ``encode`` and
``FrameDecoder`` do the framing (header, length, CRC-16/MODBUS, resynchronisation); ``to_frame``
and ``parse`` turn frames into typed messages and back; ``SeqCounter`` numbers the host's
requests. Both sides of the line are covered, so tests and tools can play the board too.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum, StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self, get_type_hints, overload

HEADER = b"\xaa\x55"
MIN_LEN, MAX_LEN = 2, 130
MAX_PAYLOAD = MAX_LEN - 2
MAX_FRAME = MAX_LEN + 5
#: A partial frame that gets no byte for this long is dropped; so is a garbage run reported.
FRAME_TIMEOUT_S = 0.1
#: A garbage run this long is reported without waiting for its end.
GARBAGE_REPORT_BYTES = 1024
DISPLAY_TEXT_MAX = 32

#: Why a box request failed (the same codes as ``DriverError``, plus ``nak``).
BoardReason = Literal["no_response", "nak", "bad_answer", "bus_unavailable"]
FaultReason = Literal["garbage", "bad_length", "bad_crc", "timeout"]


class BoardError(Exception):
    """The root of the box board's errors: ``reason`` says how, ``nak`` why the board refused.

    Not a ``DriverError``: that one's reason codes have no ``nak``. ``BoxBoard`` turns the
    line's ``DriverError`` into ``BoardError("bus_unavailable")``, so a caller catches one root.
    """

    def __init__(self, message: str, *, reason: BoardReason, nak: NakReason | None = None) -> None:
        super().__init__(message)
        self.reason: BoardReason = reason
        self.nak = nak


class BoxProtocolError(BoardError):
    """A frame that is well framed but not a message of the document."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="bad_answer")


class Direction(StrEnum):
    TO_BOARD = "to_board"
    TO_HOST = "to_host"


class VendResult(IntEnum):
    DELIVERED = 0x00
    JAMMED = 0x01
    MOTOR_FAULT = 0x02
    NO_DROP = 0x03
    DROP_SENSOR_FAULT = 0x04
    INTERRUPTED = 0x05
    IN_PROGRESS = 0x10
    UNKNOWN = 0xFE


#: The results a VEND_DONE may carry; the others are answers to RESULT only.
FINAL_RESULTS = frozenset(VendResult) - {VendResult.IN_PROGRESS, VendResult.UNKNOWN}


class NakReason(IntEnum):
    UNKNOWN_COMMAND = 0x01
    BAD_PAYLOAD = 0x02
    BUSY = 0x03
    NO_SUCH_SLOT = 0x04
    DOOR_OPEN = 0x05


class Light(IntEnum):
    OFF = 0
    GREEN = 1
    RED = 2
    AMBER = 3


BUTTON_CONFIRM = 0x80
BUTTON_CANCEL = 0x81
BUTTONS = frozenset([*range(0x01, 0x11), BUTTON_CONFIRM, BUTTON_CANCEL])


def _crc_entry(value: int) -> int:
    for _ in range(8):
        value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
    return value


_CRC_TABLE = [_crc_entry(value) for value in range(256)]


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: reflected poly 0xA001, init 0xFFFF; check("123456789") = 0x4B37."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True)
class Frame:
    seq: int
    cmd: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.seq <= 255 and 0 <= self.cmd <= 255):
            raise ValueError(f"SEQ {self.seq} or CMD {self.cmd} is not a byte")
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes (at most {MAX_PAYLOAD})")


@dataclass(frozen=True)
class FrameFault:
    """Bytes the decoder threw away: ``reason`` says why, ``dropped`` how many."""

    reason: FaultReason
    dropped: int


def encode(frame: Frame) -> bytes:
    body = bytes([len(frame.payload) + 2, frame.seq, frame.cmd]) + frame.payload
    crc = crc16_modbus(body)
    return HEADER + body + bytes([crc & 0xFF, crc >> 8])


def is_event(cmd: int) -> bool:
    """Whether a board's CMD is an event (sent on its own, acknowledged by the host)."""
    return 0x90 <= cmd <= 0x9F


class FrameDecoder:
    """Finds frames in a byte stream, resynchronising as the document says.

    An invalid LEN or CRC drops the header's first byte and the rest is scanned again, so a
    frame inside garbage is still found. Bytes before a header are one garbage run, reported
    when the run ends (a header, ``timeout_s`` of quiet, or ``GARBAGE_REPORT_BYTES``). A partial
    frame that gets no byte for ``timeout_s`` is dropped as a timeout; ``feed(b"", now)`` checks
    that without new bytes. The buffer holds at most one partial frame.
    """

    def __init__(self, timeout_s: float = FRAME_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._buf = bytearray()
        self._last_byte_at = 0.0
        self._garbage = 0

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (fewer than ``MAX_FRAME``)."""
        return len(self._buf)

    @property
    def deadline(self) -> float | None:
        """When ``feed(b"", t)`` would resolve something pending; None when nothing is."""
        if not self._buf and not self._garbage:
            return None
        return self._last_byte_at + self._timeout_s

    def feed(self, data: bytes, now: float) -> list[Frame | FrameFault]:
        out: list[Frame | FrameFault] = []
        if now - self._last_byte_at > self._timeout_s:
            while self._buf:
                if self._buf.startswith(HEADER):
                    out.append(FrameFault("timeout", 1))
                else:
                    self._add_garbage(1, out)
                del self._buf[:1]
                self._scan(out)
            self._flush_garbage(out)
        for start in range(0, len(data), MAX_FRAME):
            self._buf += data[start : start + MAX_FRAME]
            self._last_byte_at = now
            self._scan(out)
        return out

    def _scan(self, out: list[Frame | FrameFault]) -> None:
        buf = self._buf
        while buf:
            at = buf.find(HEADER)
            if at < 0:
                keep = 1 if buf[-1] == HEADER[0] else 0
                self._add_garbage(len(buf) - keep, out)
                del buf[: len(buf) - keep]
                return
            if at:
                self._add_garbage(at, out)
                del buf[:at]
            self._flush_garbage(out)
            if len(buf) < 3:
                return
            length = buf[2]
            if not MIN_LEN <= length <= MAX_LEN:
                out.append(FrameFault("bad_length", 1))
                del buf[:1]
                continue
            if len(buf) < length + 5:
                return
            body = bytes(buf[2 : 3 + length])
            if crc16_modbus(body) != buf[3 + length] | buf[4 + length] << 8:
                out.append(FrameFault("bad_crc", 1))
                del buf[:1]
                continue
            out.append(Frame(body[1], body[2], body[3:]))
            del buf[: length + 5]

    def _add_garbage(self, count: int, out: list[Frame | FrameFault]) -> None:
        self._garbage += count
        while self._garbage >= GARBAGE_REPORT_BYTES:
            out.append(FrameFault("garbage", GARBAGE_REPORT_BYTES))
            self._garbage -= GARBAGE_REPORT_BYTES

    def _flush_garbage(self, out: list[Frame | FrameFault]) -> None:
        if self._garbage:
            out.append(FrameFault("garbage", self._garbage))
            self._garbage = 0


def encode_display_text(text: str) -> bytes:
    """GB2312, cut to ``DISPLAY_TEXT_MAX`` bytes between characters; what it lacks becomes "?"."""
    out = bytearray()
    for char in text:
        try:
            code = char.encode("gb2312")
        except UnicodeEncodeError:
            code = b"?"
        if len(out) + len(code) > DISPLAY_TEXT_MAX:
            break
        out += code
    return bytes(out)


def _check(value: int, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} {value} is outside {low} … {high}")


@dataclass(frozen=True)
class _Range:
    low: int
    high: int


#: A one-byte field of a message; ``Annotated[int, _Range(…)]`` narrows it.
Byte = Annotated[int, _Range(0, 255)]
Seq = Annotated[int, _Range(1, 255)]
Slot = Annotated[int, _Range(1, 255)]
_TYPES: dict[type, dict[str, Any]] = {}


def _types(cls: type) -> dict[str, Any]:
    if cls not in _TYPES:
        _TYPES[cls] = get_type_hints(cls, include_extras=True)
    return _TYPES[cls]


@dataclass(frozen=True)
class Message:
    """A typed message. By default its payload is one byte per field, in order (an ``IntEnum``
    its code, a ``bool`` bit 0); values are checked on creation (``ValueError``, which ``parse``
    turns into ``BoxProtocolError``)."""

    CMD: ClassVar[int]

    def __post_init__(self) -> None:
        for f in fields(self):
            kind, value = _types(type(self))[f.name], getattr(self, f.name)
            if isinstance(kind, type) and issubclass(kind, IntEnum):
                object.__setattr__(self, f.name, kind(value))
            for limits in getattr(kind, "__metadata__", ()):
                _check(value, limits.low, limits.high, f.name.replace("_", " "))

    def payload(self) -> bytes:
        return bytes(int(getattr(self, f.name)) for f in fields(self))

    @classmethod
    def from_payload(cls, payload: bytes) -> Self:
        names = [f.name for f in fields(cls)]
        if len(payload) != len(names):
            raise ValueError(f"payload of {len(payload)} bytes, {len(names)} expected")
        kinds = _types(cls)
        return cls(
            **{
                n: bool(b & 1) if kinds[n] is bool else b
                for n, b in zip(names, payload, strict=True)
            }
        )


@dataclass(frozen=True)
class Status(Message):
    CMD: ClassVar[int] = 0x01


@dataclass(frozen=True)
class Vend(Message):
    CMD: ClassVar[int] = 0x02
    slot: Slot
    drop_detection: bool = True


@dataclass(frozen=True)
class Result(Message):
    CMD: ClassVar[int] = 0x03
    vend_seq: Seq


@dataclass(frozen=True)
class Unlock(Message):
    CMD: ClassVar[int] = 0x04
    seconds: Annotated[int, _Range(1, 60)]


@dataclass(frozen=True)
class Display(Message):
    """``line`` 0 clears the display and writes line 1, 1 writes line 2; ``text`` goes through
    ``encode_display_text``, so it may be cut or get "?"."""

    CMD: ClassVar[int] = 0x05
    line: Annotated[int, _Range(0, 1)]
    hold_s: Byte
    text: str

    def payload(self) -> bytes:
        return bytes([self.line, self.hold_s]) + encode_display_text(self.text)

    @classmethod
    def from_payload(cls, payload: bytes) -> Self:
        if not 2 <= len(payload) <= 2 + DISPLAY_TEXT_MAX:
            raise ValueError(f"payload of {len(payload)} bytes")
        return cls(payload[0], payload[1], payload[2:].decode("gb2312"))


@dataclass(frozen=True)
class Signal(Message):
    CMD: ClassVar[int] = 0x07
    beep_10ms: Byte
    light: Light


@dataclass(frozen=True)
class Ack(Message):
    """Both ways: the board's answer to a request, and the host's to a board event."""

    CMD: ClassVar[int] = 0x06
    cmd: Byte


@dataclass(frozen=True)
class Nak(Message):
    CMD: ClassVar[int] = 0x15
    cmd: Byte
    reason: NakReason


@dataclass(frozen=True)
class StatusReport(Message):
    """``last_result`` is None exactly when ``last_vend_seq`` is 0 (sent as 0xFE)."""

    CMD: ClassVar[int] = 0x81
    door_open: bool
    drop_sensor_fault: bool
    vending: bool
    slots: Byte
    last_vend_seq: Byte
    last_result: VendResult | None
    firmware: Byte

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.last_result is not None:
            object.__setattr__(self, "last_result", VendResult(self.last_result))
        if (self.last_result is None) != (self.last_vend_seq == 0):
            raise ValueError("a last vend result needs a last vend SEQ, and only then")

    def payload(self) -> bytes:
        flags = self.door_open | self.drop_sensor_fault << 1 | self.vending << 2
        result = VendResult.UNKNOWN if self.last_result is None else self.last_result
        return bytes([flags, self.slots, self.last_vend_seq, result, self.firmware])

    @classmethod
    def from_payload(cls, payload: bytes) -> Self:
        if len(payload) != 5:
            raise ValueError(f"payload of {len(payload)} bytes, 5 expected")
        flags, slots, last_seq, result, firmware = payload
        door, sensor, vending = (bool(flags & bit) for bit in (1, 2, 4))
        last_result = VendResult(result) if last_seq else None
        return cls(door, sensor, vending, slots, last_seq, last_result, firmware)


@dataclass(frozen=True)
class ResultReport(Message):
    """The board's answer to RESULT, and to a repeated VEND."""

    CMD: ClassVar[int] = 0x83
    vend_seq: Seq
    slot: Byte
    result: VendResult


@dataclass(frozen=True)
class Button(Message):
    """``button``: 0x01 … 0x10 a product's, ``BUTTON_CONFIRM`` or ``BUTTON_CANCEL``."""

    CMD: ClassVar[int] = 0x90
    button: int

    def __post_init__(self) -> None:
        if self.button not in BUTTONS:
            raise ValueError(f"no button {self.button:#04x}")


@dataclass(frozen=True)
class Door(Message):
    CMD: ClassVar[int] = 0x91
    opened: bool


@dataclass(frozen=True)
class PowerUp(Message):
    CMD: ClassVar[int] = 0x92
    firmware: Byte
    slots: Byte


@dataclass(frozen=True)
class VendDone(Message):
    CMD: ClassVar[int] = 0x93
    vend_seq: Seq
    slot: Slot
    result: VendResult

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.result not in FINAL_RESULTS:
            raise ValueError(f"VEND_DONE cannot carry result {self.result:#04x}")


HostMessage = Status | Vend | Result | Unlock | Display | Signal | Ack
BoardEvent = Button | Door | PowerUp | VendDone
BoardMessage = Ack | Nak | StatusReport | ResultReport | BoardEvent
AnyMessage = HostMessage | BoardMessage

_TO_BOARD: dict[int, type[HostMessage]] = {
    m.CMD: m for m in (Status, Vend, Result, Unlock, Display, Signal, Ack)
}
_TO_HOST: dict[int, type[BoardMessage]] = {
    m.CMD: m for m in (Ack, Nak, StatusReport, ResultReport, Button, Door, PowerUp, VendDone)
}


def to_frame(seq: int, message: AnyMessage) -> Frame:
    _check(seq, 1, 255, "SEQ")
    return Frame(seq, message.CMD, message.payload())


@overload
def parse(frame: Frame, direction: Literal[Direction.TO_BOARD]) -> HostMessage: ...
@overload
def parse(frame: Frame, direction: Literal[Direction.TO_HOST]) -> BoardMessage: ...
@overload
def parse(frame: Frame, direction: Direction) -> AnyMessage: ...
def parse(frame: Frame, direction: Direction) -> AnyMessage:
    """The message a frame carries, read as sent in ``direction``."""
    table: dict[int, type[HostMessage]] | dict[int, type[BoardMessage]]
    table = _TO_BOARD if direction is Direction.TO_BOARD else _TO_HOST
    kind = table.get(frame.cmd)
    if kind is None:
        raise BoxProtocolError(f"unknown command {frame.cmd:#04x} ({direction})")
    if frame.seq == 0:
        raise BoxProtocolError(f"command {frame.cmd:#04x} with SEQ 0")
    try:
        return kind.from_payload(frame.payload)
    except ValueError as exc:  # UnicodeDecodeError included
        raise BoxProtocolError(f"command {frame.cmd:#04x}: {exc}") from exc


class SeqCounter:
    """The host's request numbers: 1 … 255, wrapping to 1. ``last`` is what to persist."""

    def __init__(self, last: int = 0) -> None:
        _check(last, 0, 255, "stored SEQ")
        self._last = last

    @property
    def last(self) -> int:
        return self._last

    def allocate(self) -> int:
        self._last = self._last % 255 + 1
        return self._last

    def skip_past(self, seq: int) -> None:
        """Number on after ``seq`` (the board's last VEND) unless the counter is already past
        it (within half the ring): a new request must never look like that vend's repeat, and
        going back could make it look like the request just before it."""
        _check(seq, 0, 255, "SEQ")
        if seq and (self._last == 0 or (seq - self._last) % 255 < 128):
            self._last = seq
