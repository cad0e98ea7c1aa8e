"""The card readers' formats against the byte examples of docs/protocols/cabinet.md, fuzzed;
the repeat filter; and that no read, fault or swipe ever shows an identifier."""

from __future__ import annotations

import dataclasses
import itertools
import re
from datetime import date
from functools import reduce
from operator import xor

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edge_agent.drivers.card_reader import (
    MAX_LINE,
    CardRead,
    Decoded,
    ReaderDecoder,
    ReaderFormat,
    ReadFault,
    RepeatFilter,
    Swipe,
    identify,
)
from edge_agent.pseudonym import CardKey, PseudonymError

KEY = CardKey(bytes(range(32)))
UID_VECTOR = "0be50fda92a8dac378114f45c1ea794bb4338f99b907f405108359bb352debd4"
ID_VECTOR = "1432249b8cdc8f7da039d3299cf4968d95fc2da8de0a9e031a09749ebf4ce3b8"
ID_NUMBER = "11010519491231002X"
FRAME_4 = bytes.fromhex("02 05 01 04 A1 B2 C3 D0 03")
FRAME_7 = bytes.fromhex("02 08 01 04 A1 B2 C3 D4 E5 80 6C 03")

ALL_FORMATS = [
    (ReaderFormat.HEX_LINE, False),
    (ReaderFormat.HEX_LINE, True),
    (ReaderFormat.BINARY, False),
    (ReaderFormat.BINARY, True),
    (ReaderFormat.ID_LINE, False),
]


def frame(uid: bytes, card_type: int = 0x01) -> bytes:
    """A binary frame, built from the document's definition."""
    body = bytes([len(uid) + 1, card_type]) + uid
    return b"\x02" + body + bytes([reduce(xor, body)]) + b"\x03"


def with_check(first17: str) -> str:
    weights = [pow(2, 17 - i, 11) for i in range(17)]
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def decode(fmt: ReaderFormat, data: bytes, *, uid_reversed: bool = False) -> list[Decoded]:
    return ReaderDecoder(fmt, uid_reversed=uid_reversed).feed(data)


def reads(out: list[Decoded]) -> list[CardRead]:
    return [d for d in out if isinstance(d, CardRead)]


def faults(out: list[Decoded]) -> list[ReadFault]:
    return [d for d in out if isinstance(d, ReadFault)]


def values(out: list[Decoded]) -> list[str]:
    return [d.value for d in reads(out)]


def fed_in_pieces(decoder: ReaderDecoder, data: bytes, cuts: list[int]) -> list[Decoded]:
    out: list[Decoded] = []
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for a, b in itertools.pairwise(edges):
        out += decoder.feed(data[a:b])
    return out


# -- the document's examples -----------------------------------------------------------------


def test_hex_line_example() -> None:
    assert decode(ReaderFormat.HEX_LINE, b"04A1B2C3\r\n") == [CardRead("ic", "04A1B2C3")]


def test_binary_examples() -> None:
    assert frame(bytes.fromhex("04A1B2C3")) == FRAME_4
    assert frame(bytes.fromhex("04A1B2C3D4E580")) == FRAME_7
    assert decode(ReaderFormat.BINARY, FRAME_4 + FRAME_7) == [
        CardRead("ic", "04A1B2C3"),
        CardRead("ic", "04A1B2C3D4E580"),
    ]


def test_id_line_example() -> None:
    assert decode(ReaderFormat.ID_LINE, b"11010519491231002X\r\n") == [CardRead("id", ID_NUMBER)]


def test_reads_of_the_examples_identify_as_the_vectors() -> None:
    (ic,) = decode(ReaderFormat.BINARY, FRAME_4)
    (id_card,) = decode(ReaderFormat.ID_LINE, b"11010519491231002x\n")
    assert isinstance(ic, CardRead)
    assert isinstance(id_card, CardRead)
    assert identify(ic, KEY, date(2024, 1, 1)) == Swipe(UID_VECTOR, "ic", None)
    assert identify(id_card, KEY, date(2024, 12, 31)) == Swipe(ID_VECTOR, "id", 75)


# -- hex-line ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"04A1B2C3",
        b"04a1b2c3",
        b"04 A1 B2 C3",
        b"04:a1:B2:c3",
        b"04:A1 B2:C3",
        b"  04A1B2C3 \t",
        b"04A1 B2C3",
    ],
)
@pytest.mark.parametrize("end", [b"\r", b"\n", b"\r\n", b"\n\r", b"\r\r\n\n"])
def test_hex_line_separators_and_line_ends(line: bytes, end: bytes) -> None:
    assert decode(ReaderFormat.HEX_LINE, line + end) == [CardRead("ic", "04A1B2C3")]


@pytest.mark.parametrize(
    ("line", "uid"),
    [(b"04A1B2C3D4E580", "04A1B2C3D4E580"), (b"00112233445566778899", "00112233445566778899")],
)
def test_hex_line_longer_uids(line: bytes, uid: str) -> None:
    assert values(decode(ReaderFormat.HEX_LINE, line + b"\n")) == [uid]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"04A1B2", "bad_length"),
        (b"04A1B2C3D4", "bad_length"),
        (b"0011223344556677889900", "bad_length"),  # 11 bytes: no card has it
        (b"04A1B2C3D", "bad_length"),
        (b"0 4A1B2C3", "garbage"),  # a separator inside a byte
        (b"04  A1B2C3", "garbage"),
        (b"04-A1-B2-C3", "garbage"),
        (b"04A1B2CG", "garbage"),
        (b"\x00\xff\x80", "garbage"),
        (b"ID:04A1B2C3", "garbage"),
    ],
)
def test_hex_line_faults(line: bytes, reason: str) -> None:
    assert decode(ReaderFormat.HEX_LINE, line + b"\r\n") == [ReadFault(reason, len(line))]  # type: ignore[arg-type]


def test_blank_lines_are_ignored() -> None:
    assert decode(ReaderFormat.HEX_LINE, b"\r\n\n\r \t\r\n") == []
    assert decode(ReaderFormat.ID_LINE, b"\n\n\r\r\n") == []


def test_uid_reversed_hex_line() -> None:
    out = decode(ReaderFormat.HEX_LINE, b"C3B2A104\r\nC3:B2:A1:04\n", uid_reversed=True)
    assert values(out) == ["04A1B2C3", "04A1B2C3"]


# -- binary ------------------------------------------------------------------------------------


def test_uid_reversed_binary() -> None:
    out = decode(ReaderFormat.BINARY, frame(bytes.fromhex("C3B2A104")), uid_reversed=True)
    assert values(out) == ["04A1B2C3"]
    out = decode(ReaderFormat.BINARY, frame(bytes.fromhex("80E5D4C3B2A104")), uid_reversed=True)
    assert values(out) == ["04A1B2C3D4E580"]


@pytest.mark.parametrize("card_type", [0x00, 0x01, 0x02, 0x03, 0x7F, 0xFF])
@pytest.mark.parametrize("size", [4, 7, 8, 10])
def test_binary_any_type_and_every_uid_length(card_type: int, size: int) -> None:
    uid = bytes(range(0xA0, 0xA0 + size))
    assert values(decode(ReaderFormat.BINARY, frame(uid, card_type))) == [uid.hex().upper()]


def test_binary_bad_bcc_then_resync() -> None:
    bad = FRAME_4[:7] + b"\xd1" + FRAME_4[8:]
    assert decode(ReaderFormat.BINARY, bad + FRAME_7) == [
        ReadFault("bad_bcc", len(bad)),
        CardRead("ic", "04A1B2C3D4E580"),
    ]


def test_binary_bad_etx_then_resync() -> None:
    bad = FRAME_4[:-1] + b"\x04"
    assert decode(ReaderFormat.BINARY, bad + FRAME_4) == [
        ReadFault("bad_etx", len(bad)),
        CardRead("ic", "04A1B2C3"),
    ]


def test_binary_bad_length_then_resync() -> None:
    bad = b"\x02\x06" + FRAME_4[2:]  # LEN 6: a UID of 5 bytes, which no card has
    decoder = ReaderDecoder(ReaderFormat.BINARY)
    assert decoder.feed(bad + FRAME_4) == [
        ReadFault("bad_length", len(bad)),
        CardRead("ic", "04A1B2C3"),
    ]


def test_binary_resyncs_on_a_stx_inside_a_broken_frame() -> None:
    """The next 0x02 after a broken frame's start may be inside it: a frame cut by a reset."""
    out = decode(ReaderFormat.BINARY, FRAME_7[:5] + FRAME_4)
    assert out == [ReadFault("bad_etx", 5), CardRead("ic", "04A1B2C3")]


def test_a_cut_frame_does_not_hold_back_the_next() -> None:
    decoder = ReaderDecoder(ReaderFormat.BINARY)
    assert decoder.feed(b"\x02\x0b\x01\x04") == []  # the start of a 10-byte UID frame
    assert decoder.feed(FRAME_4) == [ReadFault("truncated", 4), CardRead("ic", "04A1B2C3")]
    assert decoder.buffered == 0


def test_noise_is_reported_in_runs_by_the_feed_that_brings_it() -> None:
    decoder = ReaderDecoder(ReaderFormat.BINARY)
    noise = b"\xff" * 10 + b"\x02\x02\x02" + b"\x00" * 200 + b"\x02" * 100
    # Each 0x02 not followed by a frame's LEN, and what follows it up to the next 0x02.
    assert decoder.feed(noise) == [ReadFault("garbage", 10), ReadFault("bad_length", 302)]
    assert decoder.buffered == 1  # a last 0x02: a frame may start there
    assert decoder.feed(FRAME_4) == [ReadFault("bad_length", 1), CardRead("ic", "04A1B2C3")]


def test_a_bad_frame_is_reported_at_once() -> None:
    decoder = ReaderDecoder(ReaderFormat.BINARY)
    assert decoder.feed(b"\x02\x06\x01\x04\xa1\xb2\xc3\xd0\x03") == [ReadFault("bad_length", 9)]
    assert decoder.feed(FRAME_4[:-1] + b"\x00") == [ReadFault("bad_etx", 9)]
    assert decoder.feed(b"\xff") == [ReadFault("garbage", 1)]


def test_consecutive_faults_of_one_reason_are_one() -> None:
    bad = FRAME_4[:-1] + b"\x00"
    assert decode(ReaderFormat.BINARY, bad * 3 + b"\x02\x00" + bad + FRAME_4) == [
        ReadFault("bad_etx", 27),
        ReadFault("bad_length", 2),
        ReadFault("bad_etx", 9),
        CardRead("ic", "04A1B2C3"),
    ]


# -- id-line -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"110105194912310021", "misread"),  # wrong check character
        (with_check("11010519491331002").encode(), "misread"),  # month 13, right check character
        (with_check("11010519990229002").encode(), "misread"),  # 29 February 1999
        (b"11010519491231002", "bad_length"),
        (b"11010519491231002X0", "bad_length"),
        (b"1101051949123100X2", "garbage"),
        (b"11010519491231002Y", "garbage"),
        (b"110105 19491231002", "garbage"),
    ],
)
def test_id_line_faults(line: bytes, reason: str) -> None:
    assert decode(ReaderFormat.ID_LINE, line + b"\n") == [ReadFault(reason, len(line))]  # type: ignore[arg-type]


def test_id_line_lower_case_x_and_spaces() -> None:
    assert values(decode(ReaderFormat.ID_LINE, b" 11010519491231002x \r\n")) == [ID_NUMBER]


def test_id_line_reader_cannot_reverse() -> None:
    with pytest.raises(ValueError, match="uid_reversed"):
        ReaderDecoder(ReaderFormat.ID_LINE, uid_reversed=True)


def test_format_by_name() -> None:
    assert ReaderDecoder("binary").format is ReaderFormat.BINARY  # type: ignore[arg-type]
    assert [f.value for f in ReaderFormat] == ["hex-line", "binary", "id-line"]


# -- long lines --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [ReaderFormat.HEX_LINE, ReaderFormat.ID_LINE])
def test_a_line_of_max_length_is_kept(fmt: ReaderFormat) -> None:
    line = b"04A1B2C3" if fmt is ReaderFormat.HEX_LINE else ID_NUMBER.encode()
    padded = line.ljust(MAX_LINE)
    assert len(reads(decode(fmt, padded + b"\n"))) == 1
    assert decode(fmt, padded + b" \n") == [ReadFault("too_long", MAX_LINE + 1)]


def test_a_long_line_is_dropped_up_to_its_end() -> None:
    decoder = ReaderDecoder(ReaderFormat.HEX_LINE)
    out = decoder.feed(b"04A1B2C3" * 10)
    assert out == [ReadFault("too_long", 80)]
    assert decoder.buffered == 0
    # The rest of the long line, however long, is dropped without another fault.
    assert decoder.feed(b"04A1B2C3" * 1000) == []
    assert decoder.feed(b"04A1B2C3\r\n04A1B2C3\r\n") == [CardRead("ic", "04A1B2C3")]


# -- splits ------------------------------------------------------------------------------------

STREAMS = [
    (ReaderFormat.HEX_LINE, b"04A1B2C3\r\n04:a1:b2:c3\n\r04 A1 B2 C3 D4 E5 80\r\nzz\r\n04A1B2C3\r"),
    (ReaderFormat.BINARY, FRAME_4 + b"\xff\x00" + FRAME_7 + FRAME_4[:-1] + b"\x00" + FRAME_4),
    (ReaderFormat.ID_LINE, b"11010519491231002X\r\n110105194912310021\r\n11010519491231002x\n"),
]


@pytest.mark.parametrize(("fmt", "stream"), STREAMS)
def test_splits_at_every_byte_boundary(fmt: ReaderFormat, stream: bytes) -> None:
    """The same reads however the bytes arrive; for lines, the same faults too (noise between
    frames is reported per feed, so its counts depend on the pieces)."""
    whole = decode(fmt, stream)
    assert reads(whole)
    assert faults(whole)
    for cut in range(len(stream) + 1):
        decoder = ReaderDecoder(fmt)
        out = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert reads(out) == reads(whole), cut
        if fmt is not ReaderFormat.BINARY:
            assert out == whole, cut
        else:
            assert sum(f.size for f in faults(out)) == sum(f.size for f in faults(whole)), cut
    decoder = ReaderDecoder(fmt)
    byte_by_byte = [d for b in stream for d in decoder.feed(bytes([b]))]
    assert reads(byte_by_byte) == reads(whole)


@pytest.mark.parametrize("a", ["\r", "\n", "\r\n"])
@pytest.mark.parametrize("b", ["\r", "\n", "\r\n"])
def test_line_end_variants_split_everywhere(a: str, b: str) -> None:
    stream = f"04A1B2C3{a}C3B2A104{b}".encode()
    for cut in range(len(stream) + 1):
        decoder = ReaderDecoder(ReaderFormat.HEX_LINE)
        out = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert values(out) == ["04A1B2C3", "C3B2A104"], cut


# -- fuzz --------------------------------------------------------------------------------------

uids = st.sampled_from([4, 7, 8, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
hex_uids = st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
line_ends = st.sampled_from([b"\r", b"\n", b"\r\n"])


@pytest.mark.parametrize(("fmt", "reversed_"), ALL_FORMATS)
@given(chunks=st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_raise_and_stay_bounded(
    fmt: ReaderFormat, reversed_: bool, chunks: list[bytes]
) -> None:
    decoder = ReaderDecoder(fmt, uid_reversed=reversed_)
    for chunk in chunks:
        for d in decoder.feed(chunk):
            assert isinstance(d, CardRead | ReadFault)
            if isinstance(d, ReadFault):
                assert d.size > 0
        assert decoder.buffered <= MAX_LINE


@pytest.mark.parametrize("fmt", [ReaderFormat.BINARY, ReaderFormat.HEX_LINE])
@given(noise=st.binary(max_size=300).filter(lambda b: b"\x02" not in b and b"\n" not in b))
def test_a_flood_without_a_start_or_an_end_is_bounded(fmt: ReaderFormat, noise: bytes) -> None:
    decoder = ReaderDecoder(fmt)
    for _ in range(20):
        decoder.feed(noise)
        assert decoder.buffered <= MAX_LINE


@given(
    garbage=st.binary(max_size=100),
    end=line_ends,
    uid=hex_uids,
    sep=st.sampled_from(["", " ", ":"]),
    lower=st.booleans(),
    cut=st.integers(min_value=0),
)
def test_hex_line_after_garbage_that_ends_a_line(
    garbage: bytes, end: bytes, uid: bytes, sep: str, lower: bool, cut: int
) -> None:
    """Garbage without a line end would merge into the next line, as on any line protocol, so
    the garbage here ends with one; whatever it held, the card's line after it is read."""
    text = sep.join(f"{b:02x}" if lower else f"{b:02X}" for b in uid)
    stream = garbage + end + text.encode() + b"\r\n"
    out = fed_in_pieces(ReaderDecoder(ReaderFormat.HEX_LINE), stream, [cut])
    assert out[-1] == CardRead("ic", uid.hex().upper())


@given(garbage=st.binary(max_size=100), end=line_ends, first17=st.from_regex(r"\A[0-9]{17}\Z"))
def test_id_line_after_garbage_that_ends_a_line(garbage: bytes, end: bytes, first17: str) -> None:
    number = with_check("110105" + "19800101" + first17[14:])
    out = decode(ReaderFormat.ID_LINE, garbage + end + number.encode() + b"\n")
    assert out[-1] == CardRead("id", number)


def frame_at(data: bytes, i: int) -> int | None:
    """The size of a good frame starting at ``data[i]``, written from the document."""
    if data[i] != 2 or i + 1 >= len(data) or data[i + 1] not in (5, 8, 9, 11):
        return None
    size = data[i + 1] + 4
    body = data[i + 1 : i + size - 2]
    if i + size > len(data) or data[i + size - 1] != 3 or reduce(xor, body) != data[i + size - 2]:
        return None
    return size


@given(garbage=st.binary(max_size=100), uid=uids, reversed_=st.booleans(), cut=st.integers(0))
def test_binary_frame_after_garbage(garbage: bytes, uid: bytes, reversed_: bool, cut: int) -> None:
    """A frame after any garbage is read, unless the garbage ends with the start of a frame
    that the real one's bytes happen to complete (no framing without escapes can tell)."""
    good = frame(uid)
    stream = garbage + good
    straddling = [
        i
        for i in range(len(garbage))
        if (size := frame_at(stream, i)) is not None and i + size > len(garbage)
    ]
    assume(not straddling)
    decoder = ReaderDecoder(ReaderFormat.BINARY, uid_reversed=reversed_)
    out = fed_in_pieces(decoder, stream, [cut])
    expected = (uid[::-1] if reversed_ else uid).hex().upper()
    assert out[-1] == CardRead("ic", expected)
    assert decoder.buffered == 0


@given(
    parts=st.lists(
        st.one_of(uids.map(frame), st.binary(max_size=20).filter(lambda b: b"\x02" not in b)),
        max_size=8,
    ),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_binary_reads_do_not_depend_on_how_bytes_arrive(
    parts: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(parts)
    expected = [p[3:-2].hex().upper() for p in parts if p[:1] == b"\x02"]
    assert values(decode(ReaderFormat.BINARY, stream)) == expected
    assert values(fed_in_pieces(ReaderDecoder(ReaderFormat.BINARY), stream, cuts)) == expected


@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_line_reads_do_not_depend_on_how_bytes_arrive(data: bytes, cuts: list[int]) -> None:
    for fmt in (ReaderFormat.HEX_LINE, ReaderFormat.ID_LINE):
        whole = reads(decode(fmt, data))
        assert reads(fed_in_pieces(ReaderDecoder(fmt), data, cuts)) == whole


# -- repeats -----------------------------------------------------------------------------------


def test_repeat_filter_card_left_on_the_reader() -> None:
    f = RepeatFilter(3.0)
    # Reported every second for ten seconds: one swipe.
    assert [f.fresh("a", float(t)) for t in range(11)] == [True] + [False] * 10
    # Not reported for 3 s: the next report is a new swipe.
    assert f.fresh("a", 13.0)
    assert not f.fresh("a", 15.5)
    assert f.fresh("a", 18.5)


def test_repeat_filter_window_boundary() -> None:
    f = RepeatFilter(3.0)
    assert f.fresh("a", 100.0)
    assert not f.fresh("a", 102.999)
    assert f.fresh("a", 105.999)  # exactly the window after the previous report


def test_repeat_filter_cards_are_independent() -> None:
    f = RepeatFilter(3.0)
    assert f.fresh("a", 0.0)
    assert f.fresh("b", 0.5)
    assert not f.fresh("a", 1.0)
    assert not f.fresh("b", 1.0)
    assert f.fresh("c", 1.0)


def test_repeat_filter_zero_window_lets_every_report_through() -> None:
    f = RepeatFilter(0.0)
    assert all(f.fresh("a", 1.0) for _ in range(3))


@pytest.mark.parametrize("window", [-1.0, float("nan"), float("inf")])
def test_repeat_filter_refuses_bad_windows(window: float) -> None:
    with pytest.raises(ValueError, match="window_s"):
        RepeatFilter(window)


def test_repeat_filter_forgets_cards_gone_for_the_window() -> None:
    f = RepeatFilter(3.0)
    for n in range(1000):
        f.fresh(f"card{n}", n * 1.0)
        assert len(f) <= 3


def test_repeat_filter_bounded_by_max_cards() -> None:
    f = RepeatFilter(3.0, max_cards=8)
    for n in range(100):
        f.fresh(f"card{n}", 0.0)
    assert len(f) == 8


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.floats(min_value=0, max_value=5)),
        max_size=50,
    ),
    st.sampled_from([0.5, 1.0, 3.0]),
)
def test_repeat_filter_matches_its_definition(
    steps: list[tuple[str, float]], window: float
) -> None:
    f = RepeatFilter(window)
    last: dict[str, float] = {}
    now = 0.0
    for key, delta in steps:
        now += delta
        expected = key not in last or now - last[key] >= window
        assert f.fresh(key, now) is expected
        last[key] = now


# -- swipes ------------------------------------------------------------------------------------


def test_identify_ic_card() -> None:
    swipe = identify(CardRead("ic", "04A1B2C3"), KEY, date(2024, 1, 1))
    assert swipe == Swipe(UID_VECTOR, "ic", None)


@pytest.mark.parametrize(
    ("today", "age"), [(date(2024, 12, 30), 74), (date(2024, 12, 31), 75), (date(1949, 12, 31), 0)]
)
def test_identify_id_card_age(today: date, age: int) -> None:
    assert identify(CardRead("id", ID_NUMBER), KEY, today) == Swipe(ID_VECTOR, "id", age)


def test_identify_birth_after_today_is_refused() -> None:
    """No ID card gets through without an age: a wrong clock refuses instead of guessing."""
    with pytest.raises(PseudonymError, match="after today"):
        identify(CardRead("id", ID_NUMBER), KEY, date(1949, 12, 30))


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("ic", "04a1b2c3"),
        ("ic", "04:A1:B2:C3"),
        ("ic", "04A1B2"),
        ("id", "11010519491231002x"),
        ("id", "110105194912310021"),
        ("id", with_check("11010519491331002")),
        ("nfc", "04A1B2C3"),
    ],
)
def test_card_read_holds_only_normalised_identifiers(kind: str, value: str) -> None:
    with pytest.raises(PseudonymError) as caught:
        CardRead(kind, value)  # type: ignore[arg-type]
    assert value.upper() not in str(caught.value).upper()


def test_swipe_holds_a_pseudonym() -> None:
    with pytest.raises(ValueError, match="pseudonym"):
        Swipe("04A1B2C3", "ic", None)


# -- privacy -----------------------------------------------------------------------------------

SECRETS = ["04A1B2C3", "04a1b2c3", "A1B2", "a1b2", ID_NUMBER, "19491231", "110105", "1949"]


def shown(obj: object) -> str:
    return " ".join([repr(obj), str(obj), f"{obj}", f"{obj!r}", repr([obj]), str((obj,))])


def test_card_read_never_shows_its_value() -> None:
    for read in (CardRead("ic", "04A1B2C3"), CardRead("id", ID_NUMBER)):
        text = shown(read)
        assert f"CardRead(kind='{read.kind}', value=<hidden>)" in text
        for secret in SECRETS:
            assert secret not in text


def test_swipe_never_shows_the_identifier_nor_the_age() -> None:
    for swipe in (
        identify(CardRead("ic", "04A1B2C3"), KEY, date(2024, 1, 1)),
        identify(CardRead("id", ID_NUMBER), KEY, date(2024, 12, 31)),
    ):
        text = shown(swipe)
        for secret in SECRETS:
            assert secret not in text
        assert "age=<hidden>" in text or "age=None" in text


def test_read_fault_holds_a_reason_and_a_count_only() -> None:
    assert [f.name for f in dataclasses.fields(ReadFault)] == ["reason", "size"]


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        (ReaderFormat.ID_LINE, b"110105194912310021\r\n"),
        (ReaderFormat.ID_LINE, b"11010519491231002\r\n"),
        (ReaderFormat.ID_LINE, ID_NUMBER.encode() * 5 + b"\r\n"),
        (ReaderFormat.HEX_LINE, b"04A1B2C3D4\r\n"),
        (ReaderFormat.HEX_LINE, b"04A1B2C3" * 9),
        (ReaderFormat.BINARY, FRAME_4[:7] + b"\x00\x03"),
        (ReaderFormat.BINARY, FRAME_7[:6] + FRAME_4),
        (ReaderFormat.BINARY, b"\x02\x06\x01\x04\xa1\xb2\xc3\xd0\x03"),
    ],
)
def test_read_faults_never_show_identifiers(fmt: ReaderFormat, data: bytes) -> None:
    found = faults(decode(fmt, data))
    assert found
    for fault in found:
        text = shown(fault)
        for secret in SECRETS:
            assert secret not in text
        assert not re.search(r"\d{3,}", text), text
