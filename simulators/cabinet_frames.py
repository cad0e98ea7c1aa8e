"""The main board's frames as the simulated board sees them, from docs/protocols/cabinet.md.

A second, independent reading of the document: nothing here is shared with the agent's codec
(``edge_agent/drivers/box_frames.py``), so a misreading on either side shows up as a failed
exchange instead of cancelling out.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = b"\xaa\x55"
MIN_LEN, MAX_LEN = 2, 130
#: A frame not completed within this long of its first byte is dropped.
PARTIAL_TIMEOUT_S = 0.1

# Host to board.
STATUS, VEND, RESULT, UNLOCK, DISPLAY, ACK, SIGNAL = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
# Board to host: answers and events.
NAK, STATUS_ANSWER, RESULT_ANSWER = 0x15, 0x81, 0x83
BUTTON, DOOR, POWER_UP, VEND_DONE = 0x90, 0x91, 0x92, 0x93
#: Requests that the repeat rule covers (the same SEQ and CMD as the previous one: not redone).
REPEATABLE = frozenset({VEND, UNLOCK, DISPLAY, SIGNAL})

# NAK reasons.
UNKNOWN_COMMAND, BAD_PAYLOAD, BUSY, NO_SUCH_SLOT, DOOR_OPEN = 0x01, 0x02, 0x03, 0x04, 0x05

# Vend results.
DELIVERED, JAMMED, MOTOR_FAULT = 0x00, 0x01, 0x02
NO_DROP, SENSOR_FAULT, INTERRUPTED = 0x03, 0x04, 0x05
IN_PROGRESS, UNKNOWN = 0x10, 0xFE
RESULT_NAMES = {
    DELIVERED: "delivered",
    JAMMED: "jammed",
    MOTOR_FAULT: "motor fault",
    NO_DROP: "no drop detected",
    SENSOR_FAULT: "drop sensor fault",
    INTERRUPTED: "interrupted",
    IN_PROGRESS: "in progress",
    UNKNOWN: "unknown",
}

# Buttons.
CONFIRM_BUTTON, CANCEL_BUTTON = 0x80, 0x81


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: reflected poly 0xA001, init 0xFFFF (check value of b"123456789": 0x4B37)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def encode(seq: int, cmd: int, payload: bytes = b"") -> bytes:
    """One frame: header, LEN, SEQ, CMD, payload and the CRC (low byte first)."""
    if not 1 <= seq <= 255:
        raise ValueError(f"SEQ must be 1..255, not {seq}")
    if len(payload) > MAX_LEN - 2:
        raise ValueError(f"payload of {len(payload)} bytes is too long")
    body = bytes([len(payload) + 2, seq, cmd]) + payload
    crc = crc16_modbus(body)
    return HEADER + body + bytes([crc & 0xFF, crc >> 8])


@dataclass(frozen=True)
class Frame:
    seq: int
    cmd: int
    payload: bytes


class FrameReader:
    """Finds frames in a byte stream the way the document tells a receiver to: look for
    ``AA 55``; a bad LEN or CRC drops the first header byte and the search goes on (so a frame
    inside garbage is still found); a partial frame that receives no byte for 100 ms (the gap
    between bytes, not the whole frame) loses its first byte and the rest is scanned again."""

    def __init__(self, timeout_s: float = PARTIAL_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._buf = bytearray()
        self._last_byte: float | None = None
        #: Counters, for tests and the ``show`` command.
        self.frames = 0
        self.invalid = 0
        self.garbage_bytes = 0
        self.timeouts = 0

    def feed(self, data: bytes, now: float) -> list[Frame]:
        frames: list[Frame] = []
        if self._buf and self._last_byte is not None and now - self._last_byte > self.timeout_s:
            self.timeouts += 1
            del self._buf[:1]  # the stale partial frame's header; what follows is searched again
            frames += self._scan()
        if data:
            self._last_byte = now
            self._buf += data
        frames += self._scan()
        return frames

    def _scan(self) -> list[Frame]:
        frames: list[Frame] = []
        while True:
            start = self._buf.find(HEADER)
            if start < 0:
                keep = 1 if self._buf[-1:] == HEADER[:1] else 0
                self.garbage_bytes += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
                return frames
            self.garbage_bytes += start
            del self._buf[:start]
            if len(self._buf) < 3:
                return frames
            length = self._buf[2]
            if not MIN_LEN <= length <= MAX_LEN:
                self.invalid += 1
                del self._buf[:1]
                continue
            if len(self._buf) < length + 5:
                return frames
            body = bytes(self._buf[2 : 3 + length])
            crc = self._buf[3 + length] | self._buf[4 + length] << 8
            if crc16_modbus(body) != crc:
                self.invalid += 1
                del self._buf[:1]
                continue
            frames.append(Frame(body[1], body[2], body[3:]))
            self.frames += 1
            del self._buf[: length + 5]

    def clear(self) -> None:
        """Forget a partial frame (the board lost power: its UART buffer is gone)."""
        self._buf.clear()
        self._last_byte = None
