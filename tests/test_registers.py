"""Register decoding and request planning, against byte vectors and as properties."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.drivers.registers import (
    PROFILES,
    ByteOrder,
    DataType,
    ReadBlock,
    RegisterDecodeError,
    RegisterField,
    decode,
    plan_reads,
    read_values,
    reorder,
)


def words(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def test_reorder_vectors() -> None:
    raw = bytes([0xA, 0xB, 0xC, 0xD])
    assert reorder(raw, ByteOrder.ABCD) == bytes([0xA, 0xB, 0xC, 0xD])
    assert reorder(raw, ByteOrder.DCBA) == bytes([0xD, 0xC, 0xB, 0xA])
    assert reorder(raw, ByteOrder.BADC) == bytes([0xB, 0xA, 0xD, 0xC])
    assert reorder(raw, ByteOrder.CDAB) == bytes([0xC, 0xD, 0xA, 0xB])


@pytest.mark.parametrize(
    ("field", "regs", "expected"),
    [
        (RegisterField(3, 0, DataType.INT16, scale=0.1), [0x00D7], 21.5),
        (RegisterField(3, 0, DataType.INT16, scale=0.1), [0xFFDE], -3.4),
        (RegisterField(3, 0, DataType.UINT16, scale=0.1), [0x0226], 55.0),
        (RegisterField(4, 0, DataType.UINT16, offset=-40.0), [100], 60.0),
        (RegisterField(3, 0, DataType.INT32), [0xFFFF, 0xFFFE], -2),
        (RegisterField(3, 0, DataType.UINT32), [0x0001, 0x0000], 65536),
        (RegisterField(3, 0, DataType.FLOAT32), [0x41AC, 0x0000], 21.5),
        (RegisterField(3, 0, DataType.FLOAT32, ByteOrder.CDAB), [0x0000, 0x41AC], 21.5),
        (RegisterField(3, 0, DataType.FLOAT32, ByteOrder.DCBA), [0x0000, 0xAC41], 21.5),
        (RegisterField(3, 0, DataType.FLOAT32, ByteOrder.BADC), [0xAC41, 0x0000], 21.5),
    ],
)
def test_decode_vectors(field: RegisterField, regs: list[int], expected: float) -> None:
    assert decode(field, regs) == pytest.approx(expected)


def test_decode_refuses_wrong_width_and_nan() -> None:
    with pytest.raises(RegisterDecodeError):
        decode(RegisterField(3, 0, DataType.FLOAT32), [1])
    with pytest.raises(RegisterDecodeError):
        decode(RegisterField(3, 0, DataType.FLOAT32), [0x7FC0, 0x0000])
    with pytest.raises(RegisterDecodeError):
        decode(RegisterField(3, 0, DataType.INT16), [0x10000])


ENCODE = {
    ByteOrder.ABCD: "ABCD",
    ByteOrder.DCBA: "DCBA",
    ByteOrder.BADC: "BADC",
    ByteOrder.CDAB: "CDAB",
}


def encode_as(value_bytes: bytes, order: ByteOrder) -> list[int]:
    # reorder() is its own inverse for every order, so encoding is the same permutation.
    return words(reorder(value_bytes, order))


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(list(ByteOrder)))
def test_float32_round_trips_in_every_byte_order(value: float, order: ByteOrder) -> None:
    regs = encode_as(struct.pack(">f", value), order)
    assert decode(RegisterField(3, 0, DataType.FLOAT32, order), regs) == value


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(list(ByteOrder)))
def test_int32_round_trips_in_every_byte_order(value: int, order: ByteOrder) -> None:
    regs = encode_as(struct.pack(">i", value), order)
    assert decode(RegisterField(3, 0, DataType.INT32, order), regs) == value


@given(st.integers(-32768, 32767))
def test_int16_tenths_round_trip(value: int) -> None:
    regs = words(struct.pack(">h", value))
    assert decode(RegisterField(3, 0, DataType.INT16, scale=0.1), regs) == pytest.approx(value / 10)


def test_builtin_profiles_read_in_one_request() -> None:
    for cmap in PROFILES.values():
        blocks = plan_reads([cmap.temperature, cmap.humidity])
        assert len(blocks) == 1
        assert blocks[0].count == cmap.temperature.width + cmap.humidity.width  # no gap


def test_the_float32_word_swapped_profile() -> None:
    cmap = PROFILES["float32-cdab-holding"]
    fields = {"temperature": cmap.temperature, "humidity": cmap.humidity}
    blocks = plan_reads(fields.values())
    assert blocks == [ReadBlock(3, 0x10, 4)]
    # 21.5 = 0x41AC0000 and 55.25 = 0x425D0000, each sent low word first.
    assert read_values(fields, blocks, [[0x0000, 0x41AC, 0x0000, 0x425D]]) == {
        "temperature": 21.5,
        "humidity": 55.25,
    }


def test_a_decode_error_carries_the_drivers_reason_code() -> None:
    with pytest.raises(RegisterDecodeError) as info:
        decode(RegisterField(3, 0, DataType.FLOAT32), [1])
    assert info.value.reason == "bad_answer"


def test_plan_reads_splits_by_function_and_distance() -> None:
    fields = [
        RegisterField(3, 0),
        RegisterField(3, 1, DataType.FLOAT32),
        RegisterField(3, 100),
        RegisterField(4, 0),
    ]
    assert plan_reads(fields) == [
        ReadBlock(3, 0, 3),
        ReadBlock(3, 100, 1),
        ReadBlock(4, 0, 1),
    ]


@given(
    st.lists(
        st.tuples(st.sampled_from([3, 4]), st.integers(0, 400), st.booleans()),
        min_size=1,
        max_size=20,
    )
)
def test_plan_reads_covers_every_field_within_request_limits(
    specs: list[tuple[int, int, bool]],
) -> None:
    fields = [
        RegisterField(fn, addr, DataType.FLOAT32 if wide else DataType.INT16)  # type: ignore[arg-type]
        for fn, addr, wide in specs
    ]
    blocks = plan_reads(fields)
    for f in fields:
        assert any(b.covers(f) for b in blocks)
    assert all(1 <= b.count <= 125 for b in blocks)


def test_read_values_picks_each_field_from_its_block() -> None:
    cmap = PROFILES["rh-t-holding-x10"]
    fields = {"temperature": cmap.temperature, "humidity": cmap.humidity}
    blocks = plan_reads(fields.values())
    assert read_values(fields, blocks, [[555, 215]]) == pytest.approx(
        {"temperature": 21.5, "humidity": 55.5}
    )
