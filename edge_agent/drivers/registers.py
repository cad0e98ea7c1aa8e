"""Register maps as data: how a transmitter lays out its values, and how to decode them.

Pure: no I/O. The vocabulary follows Telegraf's Modbus input (function code, 0-based address,
data type, byte order ABCD/DCBA/BADC/CDAB, scale, offset), which installers already know.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

FunctionCode = Literal[3, 4]

#: A Modbus read may return at most 125 registers.
MAX_READ_REGISTERS = 125


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"


class ByteOrder(StrEnum):
    ABCD = "ABCD"
    DCBA = "DCBA"
    BADC = "BADC"
    CDAB = "CDAB"


_STRUCT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
}


class RegisterDecodeError(ValueError):
    """The registers cannot be decoded as the map says (too few words, NaN, ...).

    ``reason`` is the same short code a ``DriverError`` carries: the device answered, but not
    with what the map expects.
    """

    reason: Literal["bad_answer"] = "bad_answer"


@dataclass(frozen=True)
class RegisterField:
    function: FunctionCode
    address: int
    type: DataType = DataType.INT16
    byte_order: ByteOrder = ByteOrder.ABCD
    scale: float = 1.0
    offset: float = 0.0

    @property
    def width(self) -> int:
        return 1 if self.type in (DataType.INT16, DataType.UINT16) else 2


def reorder(raw: bytes, order: ByteOrder) -> bytes:
    """Bring bytes as they came off the wire (A B C D) into big-endian value order."""
    if order is ByteOrder.ABCD:
        return raw
    if order is ByteOrder.DCBA:
        return raw[::-1]
    if order is ByteOrder.BADC:
        return bytes(b for i in range(0, len(raw), 2) for b in (raw[i + 1], raw[i]))
    # CDAB: words swapped, bytes within a word kept.
    return b"".join(raw[i : i + 2] for i in range(len(raw) - 2, -1, -2))


def decode(field: RegisterField, words: Sequence[int]) -> float:
    """Decode one field from exactly ``field.width`` registers, applying scale then offset."""
    if len(words) != field.width:
        raise RegisterDecodeError(f"{field.type} needs {field.width} registers, got {len(words)}")
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise RegisterDecodeError(f"register values out of 16-bit range: {list(words)}")
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    (value,) = struct.unpack(_STRUCT[field.type], reorder(raw, field.byte_order))
    result = float(value) * field.scale + field.offset
    if result != result or result in (float("inf"), float("-inf")):
        raise RegisterDecodeError(f"{field.type} value is not a finite number")
    return result


@dataclass(frozen=True)
class ReadBlock:
    """One Modbus request: a contiguous run of registers of one function code."""

    function: FunctionCode
    address: int
    count: int

    def slice(self, registers: Sequence[int], field: RegisterField) -> Sequence[int]:
        start = field.address - self.address
        return registers[start : start + field.width]

    def covers(self, field: RegisterField) -> bool:
        return (
            field.function == self.function
            and self.address <= field.address
            and field.address + field.width <= self.address + self.count
        )


def plan_reads(fields: Iterable[RegisterField], max_gap: int = 4) -> list[ReadBlock]:
    """Merge fields into as few requests as possible.

    Fields of one function code whose registers are at most ``max_gap`` apart share a request,
    since one round trip on a slow RS485 bus costs far more than a few unused registers.
    """
    blocks: list[ReadBlock] = []
    by_function: dict[int, list[RegisterField]] = {}
    for f in fields:
        by_function.setdefault(f.function, []).append(f)
    for function, group in sorted(by_function.items()):
        group.sort(key=lambda f: f.address)
        start = group[0].address
        end = start + group[0].width
        for f in group[1:]:
            f_end = f.address + f.width
            if f.address - end <= max_gap and max(end, f_end) - start <= MAX_READ_REGISTERS:
                end = max(end, f_end)
            else:
                blocks.append(ReadBlock(function, start, end - start))  # type: ignore[arg-type]
                start, end = f.address, f_end
        blocks.append(ReadBlock(function, start, end - start))  # type: ignore[arg-type]
    return blocks


@dataclass(frozen=True)
class ClimateMap:
    """Where a temperature/humidity transmitter keeps its two values."""

    temperature: RegisterField
    humidity: RegisterField


#: Built-in maps of common RS485 transmitter families (see docs/architecture.md).
PROFILES: dict[str, ClimateMap] = {
    # Family (a): FC 03, 0x0000 = %RH x10, 0x0001 = degC x10 signed; 4800 8N1, address 1.
    "rh-t-holding-x10": ClimateMap(
        temperature=RegisterField(3, 0x0001, DataType.INT16, scale=0.1),
        humidity=RegisterField(3, 0x0000, DataType.UINT16, scale=0.1),
    ),
    # Family (b): FC 04, 0x0001 = degC x10 signed, 0x0002 = %RH x10; 9600 8N1.
    "t-rh-input-x10": ClimateMap(
        temperature=RegisterField(4, 0x0001, DataType.INT16, scale=0.1),
        humidity=RegisterField(4, 0x0002, DataType.UINT16, scale=0.1),
    ),
    # Family (c): FC 03, IEEE float32 with the low word first (CDAB): 0x0010-0x0011 = degC,
    # 0x0012-0x0013 = %RH.
    "float32-cdab-holding": ClimateMap(
        temperature=RegisterField(3, 0x0010, DataType.FLOAT32, ByteOrder.CDAB),
        humidity=RegisterField(3, 0x0012, DataType.FLOAT32, ByteOrder.CDAB),
    ),
}


def read_values(
    fields: dict[str, RegisterField], blocks: Sequence[ReadBlock], data: Sequence[Sequence[int]]
) -> dict[str, float]:
    """Decode every named field from the registers returned for ``blocks`` (same order)."""
    out: dict[str, float] = {}
    for name, field in fields.items():
        for block, registers in zip(blocks, data, strict=True):
            if block.covers(field):
                out[name] = decode(field, block.slice(registers, field))
                break
        else:
            raise RegisterDecodeError(f"no read covers field {name!r}")
    return out
