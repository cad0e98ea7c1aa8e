"""The box main-board codec against the byte examples of docs/protocols/cabinet.md, and fuzzed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edge_agent.drivers.box_frames import (
    BUTTON_CANCEL,
    FINAL_RESULTS,
    GARBAGE_REPORT_BYTES,
    HEADER,
    MAX_FRAME,
    Ack,
    AnyMessage,
    BoxProtocolError,
    Button,
    Direction,
    Display,
    Door,
    Frame,
    FrameDecoder,
    FrameFault,
    Light,
    Nak,
    NakReason,
    PowerUp,
    Result,
    ResultReport,
    SeqCounter,
    Signal,
    Status,
    StatusReport,
    Unlock,
    Vend,
    VendDone,
    VendResult,
    crc16_modbus,
    encode,
    encode_display_text,
    is_event,
    parse,
    to_frame,
)

DOC = Path(__file__).parent.parent / "docs" / "protocols" / "cabinet.md"
TO_BOARD, TO_HOST = Direction.TO_BOARD, Direction.TO_HOST
DELIVERED = VendResult.DELIVERED

#: Every row of the document's example table: bytes, SEQ, message, who sends it.
EXAMPLES: list[tuple[str, int, AnyMessage, Direction]] = [
    ("AA 55 02 01 01 10 50", 1, Status(), TO_BOARD),
    (
        "AA 55 07 01 81 00 06 2A 00 03 6E 7D",
        1,
        StatusReport(False, False, False, 6, 0x2A, DELIVERED, 3),
        TO_HOST,
    ),
    ("AA 55 04 2B 02 03 01 BC D4", 0x2B, Vend(3, drop_detection=True), TO_BOARD),
    ("AA 55 03 2B 06 02 F2 09", 0x2B, Ack(0x02), TO_HOST),
    ("AA 55 05 11 93 2B 03 00 A1 F1", 0x11, VendDone(0x2B, 3, DELIVERED), TO_HOST),
    ("AA 55 03 11 06 93 13 A8", 0x11, Ack(0x93), TO_BOARD),
    ("AA 55 05 12 93 2C 03 01 95 F0", 0x12, VendDone(0x2C, 3, VendResult.JAMMED), TO_HOST),
    ("AA 55 03 01 03 2B 11 4F", 1, Result(0x2B), TO_BOARD),
    ("AA 55 05 01 83 2B 03 00 64 F2", 1, ResultReport(0x2B, 3, DELIVERED), TO_HOST),
    ("AA 55 04 2D 15 02 03 8C 09", 0x2D, Nak(0x02, NakReason.BUSY), TO_HOST),
    ("AA 55 03 2E 04 1E E2 A1", 0x2E, Unlock(30), TO_BOARD),
    ("AA 55 0A 2F 05 00 00 C7 EB C8 A1 BB F5 C0 A3", 0x2F, Display(0, 0, "请取货"), TO_BOARD),
    ("AA 55 04 30 07 14 01 A5 C1", 0x30, Signal(20, Light.GREEN), TO_BOARD),
    ("AA 55 03 13 90 01 5C 65", 0x13, Button(1), TO_HOST),
    ("AA 55 03 14 91 01 EC 34", 0x14, Door(opened=True), TO_HOST),
    ("AA 55 04 01 92 03 06 F5 23", 1, PowerUp(firmware=3, slots=6), TO_HOST),
]
EXAMPLE_BYTES = [bytes.fromhex(hex_) for hex_, *_ in EXAMPLES]


def decode_all(chunks: list[bytes], now: float = 0.0) -> list[Frame | FrameFault]:
    """Feed chunks at one instant, then let the line fall quiet so nothing stays pending."""
    decoder = FrameDecoder()
    out = [item for chunk in chunks for item in decoder.feed(chunk, now)]
    return out + decoder.feed(b"", now + 1.0)


def test_crc_check_value() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37


def test_the_examples_here_are_the_documents() -> None:
    section = DOC.read_text().split("### Examples", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|[^|]+\| `([0-9A-F ]+)` \|$", section, flags=re.MULTILINE)
    assert rows == [hex_ for hex_, *_ in EXAMPLES]


@pytest.mark.parametrize(("hex_", "seq", "message", "direction"), EXAMPLES)
def test_document_example(hex_: str, seq: int, message: AnyMessage, direction: Direction) -> None:
    wire = bytes.fromhex(hex_)
    assert encode(to_frame(seq, message)) == wire
    [frame] = FrameDecoder().feed(wire, 0.0)
    assert isinstance(frame, Frame)
    assert (frame.seq, frame.cmd) == (seq, message.CMD)
    assert parse(frame, direction) == message


def test_every_split_of_the_examples_decodes_the_same() -> None:
    stream = b"\x00\x13" + b"\xaa".join(EXAMPLE_BYTES) + b"\xaa\x55\x99tail"
    whole = decode_all([stream])
    assert [i for i in whole if isinstance(i, Frame)] == [
        FrameDecoder().feed(wire, 0.0)[0] for wire in EXAMPLE_BYTES
    ]
    for cut in range(len(stream) + 1):
        assert decode_all([stream[:cut], stream[cut:]]) == whole, cut
    assert decode_all([bytes([b]) for b in stream]) == whole


frames = st.builds(
    lambda seq, cmd, payload: encode(Frame(seq, cmd, payload)),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=40),
)
pieces = st.one_of(
    st.binary(max_size=30),
    frames,
    frames.map(lambda wire: wire[: len(wire) // 2]),
    st.sampled_from([HEADER, b"\xaa", b"\x55", b"\xaa\x55\x01", b"\xaa\x55\x83"]),
)
streams = st.lists(pieces, max_size=12).map(b"".join)


@given(st.lists(st.tuples(st.binary(max_size=200) | streams, st.floats(0, 0.3)), max_size=8))
def test_any_bytes_give_frames_and_faults_and_every_byte_is_accounted_for(
    chunks: list[tuple[bytes, float]],
) -> None:
    decoder, now, out = FrameDecoder(), 0.0, []
    for data, pause in chunks:
        now += pause
        out += decoder.feed(data, now)
        assert decoder.buffered < MAX_FRAME
    out += decoder.feed(b"", now + 1.0)
    assert decoder.buffered == 0
    assert all(isinstance(item, Frame | FrameFault) for item in out)
    accounted = sum(len(encode(item)) if isinstance(item, Frame) else item.dropped for item in out)
    assert accounted == sum(len(data) for data, _ in chunks)


@given(streams | st.binary(min_size=1000, max_size=3000), st.data())
def test_every_split_decodes_the_same(stream: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parts = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert decode_all(parts) == decode_all([stream])


@given(streams, st.integers(1, 255), st.integers(0, 255), st.binary(max_size=128), streams)
def test_a_frame_in_garbage_is_found(
    before: bytes, seq: int, cmd: int, payload: bytes, after: bytes
) -> None:
    frame = Frame(seq, cmd, payload)
    wire = encode(frame)
    stream = before + wire + after
    start, end = len(before), len(before) + len(wire)
    for at in range(len(stream) - 2):  # a valid frame overlapping ours would rightly win
        length = stream[at + 2]
        stop = at + length + 5
        framed = at != start and stream[at : at + 2] == HEADER and 2 <= length <= 130
        if framed and stop <= len(stream) and at < end and stop > start:
            body = stream[at + 2 : at + length + 3]
            assume(crc16_modbus(body) != stream[stop - 2] | stream[stop - 1] << 8)
    assert frame in decode_all([stream])


def test_bad_length_and_bad_crc_drop_one_byte_and_rescan() -> None:
    good = EXAMPLE_BYTES[0]
    broken = bytearray(EXAMPLE_BYTES[2])
    broken[-1] ^= 0xFF
    assert decode_all([b"\xaa\x55\x01" + bytes(broken) + good]) == [
        FrameFault("bad_length", 1),
        FrameFault("garbage", 2),
        FrameFault("bad_crc", 1),
        FrameFault("garbage", len(broken) - 1),
        FrameDecoder().feed(good, 0)[0],
    ]


def test_garbage_is_reported_once_per_run() -> None:
    good = EXAMPLE_BYTES[0]
    frame = FrameDecoder().feed(good, 0)[0]
    assert decode_all([b"xyz", good + b"u", b"v" + good, b"tail"]) == [
        FrameFault("garbage", 3),
        frame,
        FrameFault("garbage", 2),
        frame,
        FrameFault("garbage", 4),
    ]
    assert (
        FrameDecoder().feed(b"\x00" * 2500, 0.0)
        == [FrameFault("garbage", GARBAGE_REPORT_BYTES)] * 2
    )


def test_a_partial_frame_is_dropped_after_100_ms_without_a_byte() -> None:
    wire = EXAMPLE_BYTES[4]
    decoder = FrameDecoder()
    assert decoder.deadline is None
    assert decoder.feed(wire[:5], 10.0) == []
    assert decoder.deadline == pytest.approx(10.1)
    assert decoder.feed(b"", 10.09) == []
    assert decoder.feed(b"", 10.11) == [FrameFault("timeout", 1), FrameFault("garbage", 4)]
    assert decoder.deadline is None
    assert decoder.feed(wire[5:] + wire, 10.5) == [
        FrameFault("garbage", len(wire) - 5),
        FrameDecoder().feed(wire, 0)[0],
    ]


def test_the_rest_arriving_late_is_garbage_but_a_slow_steady_frame_is_whole() -> None:
    wire = EXAMPLE_BYTES[11]
    decoder = FrameDecoder()
    assert decoder.feed(wire[:6], 0.0) == []
    assert decoder.feed(wire[6:], 0.2) == [FrameFault("timeout", 1), FrameFault("garbage", 5)]
    assert decoder.feed(b"", 0.4) == [FrameFault("garbage", len(wire) - 6)]
    steady = FrameDecoder()
    out = [item for i, byte in enumerate(wire) for item in steady.feed(bytes([byte]), i * 0.05)]
    assert out == [FrameDecoder().feed(wire, 0)[0]]


def test_a_frame_inside_a_stale_partial_one_is_found() -> None:
    wire = EXAMPLE_BYTES[3]
    decoder = FrameDecoder()
    assert decoder.feed(b"\xaa\x55\x82" + wire, 0.0) == []
    assert decoder.feed(b"", 0.2) == [
        FrameFault("timeout", 1),
        FrameFault("garbage", 2),
        FrameDecoder().feed(wire, 0)[0],
    ]


def test_display_text_is_gb2312_cut_between_characters() -> None:
    assert encode_display_text("请取货") == bytes.fromhex("C7 EB C8 A1 BB F5")
    assert encode_display_text("请" * 20) == "请".encode("gb2312") * 16
    assert encode_display_text("A" + "请" * 16) == b"A" + "请".encode("gb2312") * 15
    assert encode_display_text("x" * 40) == b"x" * 32
    assert encode_display_text("A😀€B") == b"A??B"
    assert to_frame(1, Display(1, 5, "取" * 30)).payload == b"\x01\x05" + "取".encode("gb2312") * 16
    assert parse(to_frame(1, Display(0, 0, "余量😀")), TO_BOARD) == Display(0, 0, "余量?")


@pytest.mark.parametrize(
    ("frame", "direction"),
    [
        (Frame(1, 0x81, bytes(5)), TO_BOARD),
        (Frame(1, 0x01), TO_HOST),
        (Frame(1, 0x94, b"\x00"), TO_HOST),
        (Frame(0, 0x01), TO_BOARD),
        (Frame(1, 0x02, b"\x03"), TO_BOARD),
        (Frame(1, 0x02, b"\x00\x01"), TO_BOARD),
        (Frame(1, 0x04, b"\x3d"), TO_BOARD),
        (Frame(1, 0x05, b"\x02\x00"), TO_BOARD),
        (Frame(1, 0x05, b"\x00\x00\xff\xff"), TO_BOARD),
        (Frame(1, 0x05, b"\x00\x00" + b"x" * 33), TO_BOARD),
        (Frame(1, 0x07, b"\x14\x04"), TO_BOARD),
        (Frame(1, 0x15, b"\x02\x09"), TO_HOST),
        (Frame(1, 0x81, bytes(4)), TO_HOST),
        (Frame(1, 0x81, b"\x00\x06\x2a\x77\x03"), TO_HOST),
        (Frame(1, 0x83, b"\x00\x03\x00"), TO_HOST),
        (Frame(1, 0x90, b"\x20"), TO_HOST),
        (Frame(1, 0x93, b"\x2b\x03\x10"), TO_HOST),
        (Frame(1, 0x93, b"\x2b\x03\xfe"), TO_HOST),
    ],
)
def test_unknown_commands_and_bad_payloads_are_protocol_errors(
    frame: Frame, direction: Direction
) -> None:
    with pytest.raises(BoxProtocolError) as caught:
        parse(frame, direction)
    assert caught.value.reason == "bad_answer"


def test_status_without_a_last_vend_has_no_result() -> None:
    report = StatusReport(True, False, True, 6, 0, None, 3)
    assert to_frame(1, report).payload == b"\x05\x06\x00\xfe\x03"
    assert parse(Frame(1, 0x81, b"\x05\x06\x00\x00\x03"), TO_HOST) == report
    with pytest.raises(ValueError, match="last vend"):
        StatusReport(False, False, False, 6, 0x2A, None, 3)


def test_out_of_range_values_are_refused_when_made() -> None:
    for make in (
        lambda: Vend(0),
        lambda: Unlock(61),
        lambda: Display(2, 0, ""),
        lambda: Signal(256, Light.RED),
        lambda: Button(0x11),
        lambda: VendDone(1, 1, VendResult.IN_PROGRESS),
        lambda: to_frame(0, Status()),
    ):
        with pytest.raises(ValueError, match=r"outside|no button|cannot carry"):
            make()
    assert Button(BUTTON_CANCEL).payload() == b"\x81"


messages = st.one_of(
    st.builds(Status),
    st.builds(Vend, st.integers(1, 255), st.booleans()),
    st.builds(Result, st.integers(1, 255)),
    st.builds(Unlock, st.integers(1, 60)),
    st.builds(
        Display, st.integers(0, 1), st.integers(0, 255), st.text("请取货确认AZ 09:", max_size=10)
    ),
    st.builds(Signal, st.integers(0, 255), st.sampled_from(Light)),
    st.builds(Ack, st.integers(0, 255)),
)
answers = st.one_of(
    st.builds(Ack, st.integers(0, 255)),
    st.builds(Nak, st.integers(0, 255), st.sampled_from(NakReason)),
    st.builds(ResultReport, st.integers(1, 255), st.integers(0, 255), st.sampled_from(VendResult)),
    st.builds(Button, st.sampled_from([1, 0x10, 0x80, 0x81])),
    st.builds(Door, st.booleans()),
    st.builds(PowerUp, st.integers(0, 255), st.integers(0, 255)),
    st.builds(
        VendDone,
        st.integers(1, 255),
        st.integers(1, 255),
        st.sampled_from(sorted(FINAL_RESULTS)),
    ),
)


@given(st.integers(1, 255), messages)
def test_host_messages_round_trip(seq: int, message: AnyMessage) -> None:
    [frame] = FrameDecoder().feed(encode(to_frame(seq, message)), 0.0)
    assert isinstance(frame, Frame)
    assert frame.seq == seq
    assert parse(frame, TO_BOARD) == message


@given(st.integers(1, 255), answers)
def test_board_messages_round_trip(seq: int, message: AnyMessage) -> None:
    [frame] = FrameDecoder().feed(encode(to_frame(seq, message)), 0.0)
    assert isinstance(frame, Frame)
    assert parse(frame, TO_HOST) == message


def test_seq_counter_wraps_past_zero_and_restores() -> None:
    counter = SeqCounter()
    seen = [counter.allocate() for _ in range(600)]
    assert seen[:2] == [1, 2]
    assert seen[254:257] == [255, 1, 2]
    assert 0 not in seen
    restored = SeqCounter(counter.last)
    assert restored.allocate() == seen[-1] % 255 + 1
    with pytest.raises(ValueError, match="outside"):
        SeqCounter(256)


@pytest.mark.parametrize(
    ("last", "board_vend", "expected_next"),
    [
        (0, 0x2A, 0x2B),  # nothing stored: past the board's last vend
        (0, 0, 1),  # a new board and a new host
        (0x10, 0x2A, 0x2B),  # the host's record is behind
        (0x2A, 0x2A, 0x2B),
        (0x30, 0x2A, 0x31),  # requests after that vend: never go back to one of them
        (250, 3, 4),  # ahead across the wrap
        (3, 250, 4),  # behind across the wrap
    ],
)
def test_skip_past_the_boards_last_vend(last: int, board_vend: int, expected_next: int) -> None:
    counter = SeqCounter(last)
    counter.skip_past(board_vend)
    assert counter.allocate() == expected_next


def test_events_are_0x90_to_0x9f() -> None:
    assert [cmd for cmd in range(256) if is_event(cmd)] == list(range(0x90, 0xA0))
