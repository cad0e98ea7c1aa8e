"""The simulated dispensing box, spoken to over its real pseudo-terminals with raw bytes.

The frames here are built and parsed by the test's own few lines (CRC-16/MODBUS), and the byte
examples of docs/protocols/cabinet.md are checked as they stand, so the simulator is held to the
document rather than to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import pytest

from edge_agent.configfile import ConfigError
from simulators.cabinet import (
    BoardSettings,
    BoardSim,
    BoxSim,
    CabinetSim,
    CabinetSimConfig,
    CrowdSettings,
    FaultSim,
    ReaderSettings,
    ReaderSim,
    SlotSim,
    cause,
    load_cabinet_config,
    run_faults,
)
from simulators.cabinet_config import Mix
from simulators.cabinet_frames import Frame, FrameReader
from simulators.crowd import Crowd, arrivals, card_pool, id_check_char, valid_id_number
from tests.support import BIN, eventually

ROOT = Path(__file__).parent.parent

STATUS, VEND, RESULT, UNLOCK, DISPLAY, ACK, SIGNAL, NAK = 1, 2, 3, 4, 5, 6, 7, 0x15
STATUS_ANSWER, RESULT_ANSWER = 0x81, 0x83
BUTTON, DOOR, POWER_UP, VEND_DONE = 0x90, 0x91, 0x92, 0x93


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(seq: int, cmd: int, payload: bytes = b"") -> bytes:
    body = bytes([len(payload) + 2, seq, cmd]) + payload
    crc = crc16(body)
    return b"\xaa\x55" + body + bytes([crc & 0xFF, crc >> 8])


def payload(raw: bytes) -> bytes:
    return raw[5:-2]


def is_event(raw: bytes, cmd: int | None = None) -> bool:
    return 0x90 <= raw[4] <= 0x9F and (cmd is None or raw[4] == cmd)


class Host:
    """The agent's side of the board's line, in raw bytes: opens the symlink, finds frames
    (``AA 55``, LEN, CRC; a bad one drops a byte and the search goes on) and, unless told
    otherwise, acknowledges every event."""

    def __init__(self, path: Path, auto_ack: bool = True) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.auto_ack = auto_ack
        self.buf = bytearray()
        self.inbox: list[bytes] = []
        self.received: list[tuple[float, bytes]] = []
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def _readable(self) -> None:
        try:
            self.buf += os.read(self.fd, 4096)
        except BlockingIOError:
            return
        while (start := self.buf.find(b"\xaa\x55")) >= 0:
            del self.buf[:start]
            if len(self.buf) < 3:
                return
            n = self.buf[2]
            if not 2 <= n <= 130:
                del self.buf[:1]
                continue
            if len(self.buf) < n + 5:
                return
            raw = bytes(self.buf[: n + 5])
            if crc16(raw[2:-2]) != raw[-2] | raw[-1] << 8:
                del self.buf[:1]
                continue
            del self.buf[: n + 5]
            self.inbox.append(raw)
            self.received.append((self.loop.time(), raw))
            if self.auto_ack and is_event(raw):
                self.send(frame(raw[3], ACK, bytes([raw[4]])))
        if self.buf[-1:] != b"\xaa":
            self.buf.clear()

    async def expect(self, match: Callable[[bytes], bool], within_s: float = 2.0) -> bytes:
        """The first frame received (or still to come) that matches; taken from the inbox."""
        deadline = self.loop.time() + within_s
        while True:
            for i, raw in enumerate(self.inbox):
                if match(raw):
                    del self.inbox[i]
                    return raw
            if self.loop.time() > deadline:
                raise AssertionError(f"no such frame within {within_s} s; inbox {self.inbox}")
            await asyncio.sleep(0.005)

    async def event(self, cmd: int, within_s: float = 3.0) -> bytes:
        return await self.expect(lambda raw: is_event(raw, cmd), within_s)

    async def answer_to(self, seq: int, within_s: float = 0.3) -> bytes | None:
        with contextlib.suppress(AssertionError):
            return await self.expect(lambda r: not is_event(r) and r[3] == seq, within_s)
        return None

    async def request(self, seq: int, cmd: int, body: bytes = b"", tries: int = 3) -> bytes:
        """As the document's host does: wait 300 ms, send the same frame up to 2 more times."""
        for _ in range(tries):
            self.send(frame(seq, cmd, body))
            answer = await self.answer_to(seq)
            if answer is not None:
                return answer
        raise AssertionError(f"no answer to CMD {cmd:02X} SEQ {seq:02X} after {tries} tries")


def board_settings(tmp_path: Path, **kw: Any) -> BoardSettings:
    slots = [SlotSim(label=f"product {i}", capacity=10) for i in range(1, 7)]
    values: dict[str, Any] = {"link": tmp_path / "board", "turn_s": 0.05, "slots": slots}
    return BoardSettings(**(values | kw))


@contextlib.asynccontextmanager
async def running(
    settings: BoardSettings, auto_ack: bool = True
) -> AsyncIterator[tuple[BoardSim, Host]]:
    board = BoardSim(settings)
    board.start()
    host = Host(settings.link, auto_ack)
    try:
        yield board, host
    finally:
        host.close()
        await board.stop()


def test_the_tests_frame_builder_gives_the_documents_bytes() -> None:
    assert crc16(b"123456789") == 0x4B37
    assert frame(1, STATUS) == h("AA 55 02 01 01 10 50")
    assert frame(0x2F, DISPLAY, b"\0\0" + "请取货".encode("gb2312")) == h(
        "AA 55 0A 2F 05 00 00 C7 EB C8 A1 BB F5 C0 A3"
    )
    assert frame(0x11, ACK, b"\x93") == h("AA 55 03 11 06 93 13 A8")


def test_the_boards_receiver_finds_frames_in_garbage_and_drops_stale_partial_frames() -> None:
    """The receiver rules of the document, on the simulator's reader, with the time given."""
    rx = FrameReader()
    status = frame(1, STATUS)
    found = Frame(1, STATUS, b"")
    assert rx.feed(b"\x00\xaa\x55\xff" + status[:4], 0.0) == []  # garbage, a bad LEN, a part
    assert rx.feed(status[4:], 0.09) == [found]
    assert rx.feed(b"\xaa\x55\x05" + status, 0.5) == [found]  # a header swallowing a frame
    assert rx.feed(b"\xaa\x55\x10\x01" + status, 1.0) == []  # LEN 16: waits for more
    assert rx.feed(b"", 1.05) == []  # 50 ms without a byte: still waiting
    assert rx.feed(b"", 1.12) == [found]  # 100 ms: its first byte dropped, the rest rescanned
    assert (rx.invalid, rx.timeouts) == (2, 1)


async def test_the_documents_examples_byte_for_byte(tmp_path: Path) -> None:
    state = tmp_path / "board.json"
    state.write_text(json.dumps({"last_vend_seq": 0x2A, "vends": [[0x2A, 3, 0]]}))
    settings = board_settings(tmp_path, state_file=state, turn_s=0.4)
    async with running(settings) as (board, host):
        assert await host.event(POWER_UP) == h("AA 55 04 01 92 03 06 F5 23")
        host.send(h("AA 55 02 01 01 10 50"))
        assert await host.answer_to(1) == h("AA 55 07 01 81 00 06 2A 00 03 6E 7D")

        for _ in range(15):  # board events 2 … 0x10, so that the vend's is 0x11 as in the text
            board.press(1)
            await host.event(BUTTON)
        await eventually(lambda: board.events_pending == 0, 2, what="button events acked")

        host.auto_ack = False
        host.send(h("AA 55 04 2B 02 03 01 BC D4"))
        assert await host.answer_to(0x2B) == h("AA 55 03 2B 06 02 F2 09")
        assert await host.event(VEND_DONE) == h("AA 55 05 11 93 2B 03 00 A1 F1")
        host.send(h("AA 55 03 11 06 93 13 A8"))
        await eventually(lambda: board.events_pending == 0, 2, what="VEND_DONE acked")
        host.auto_ack = True

        host.send(h("AA 55 03 01 03 2B 11 4F"))
        assert await host.answer_to(1) == h("AA 55 05 01 83 2B 03 00 64 F2")

        board.jam(3)
        host.send(frame(0x2C, VEND, b"\x03\x01"))
        assert await host.answer_to(0x2C) == frame(0x2C, ACK, b"\x02")
        host.send(frame(0x2D, VEND, b"\x03\x01"))  # while the motor runs
        assert await host.answer_to(0x2D) == h("AA 55 04 2D 15 02 03 8C 09")
        assert await host.event(VEND_DONE) == h("AA 55 05 12 93 2C 03 01 95 F0")

        host.send(h("AA 55 03 2E 04 1E E2 A1"))
        assert await host.answer_to(0x2E) == frame(0x2E, ACK, b"\x04")
        assert board.unlocked
        host.send(h("AA 55 0A 2F 05 00 00 C7 EB C8 A1 BB F5 C0 A3"))
        assert await host.answer_to(0x2F) == frame(0x2F, ACK, b"\x05")
        assert board.display == ["请取货", ""]
        host.send(h("AA 55 04 30 07 14 01 A5 C1"))
        assert await host.answer_to(0x30) == frame(0x30, ACK, b"\x07")
        assert (board.signals[-1].beep_ms, board.signals[-1].light, board.light) == (200, 1, 1)

        board.press(1)
        assert await host.event(BUTTON) == h("AA 55 03 13 90 01 5C 65")
        assert board.door_open()
        assert await host.event(DOOR) == h("AA 55 03 14 91 01 EC 34")
        assert [v.dropped for v in board.truth.vends] == [True, False]
        assert board.slots[2].count == 9


async def test_an_unacknowledged_event_is_sent_every_300_ms_up_to_5_more_times(
    tmp_path: Path,
) -> None:
    async with running(board_settings(tmp_path), auto_ack=False) as (board, host):
        await eventually(lambda: board.stats.events_given_up == 1, 4, what="POWER_UP given up")
        copies = [(t, raw) for t, raw in host.received if is_event(raw, POWER_UP)]
        assert len(copies) == 6
        assert {raw for _, raw in copies} == {frame(1, POWER_UP, b"\x03\x06")}
        gaps = [b[0] - a[0] for a, b in pairwise(copies)]
        assert all(0.25 < gap < 0.6 for gap in gaps), gaps

        host.received.clear()
        board.press("ok")
        await eventually(lambda: len(host.received) == 2, 2, what="the BUTTON event repeated")
        host.send(frame(2, ACK, bytes([BUTTON])))
        await eventually(lambda: board.events_pending == 0, 1, what="the event acknowledged")
        assert {raw for _, raw in host.received} == {frame(2, BUTTON, b"\x80")}


async def test_a_repeated_request_is_not_acted_on_twice(tmp_path: Path) -> None:
    async with running(board_settings(tmp_path, turn_s=0.3)) as (board, host):
        await host.event(POWER_UP)
        vend = frame(5, VEND, b"\x01\x01")
        host.send(vend)
        assert await host.answer_to(5) == frame(5, ACK, b"\x02")
        host.send(vend)  # the host heard no ACK: the same frame again
        assert await host.answer_to(5) == frame(5, RESULT_ANSWER, b"\x05\x01\x10")
        await host.event(VEND_DONE)
        # A question between the two is never "the previous request".
        assert payload(await host.request(6, STATUS))[2:4] == b"\x05\x00"
        host.send(vend)
        assert await host.answer_to(5) == frame(5, RESULT_ANSWER, b"\x05\x01\x00")
        assert len(board.truth.vends) == 1
        assert board.slots[0].count == 9

        show = frame(7, DISPLAY, b"\x00\x00" + "您好".encode("gb2312"))
        for _ in range(2):
            host.send(show)
            assert await host.answer_to(7) == frame(7, ACK, bytes([DISPLAY]))
        assert [s.text for s in board.display_history] == ["您好"]
        signal = frame(8, SIGNAL, b"\x0a\x02")
        for _ in range(2):
            host.send(signal)
            assert await host.answer_to(8) == frame(8, ACK, bytes([SIGNAL]))
        assert len(board.signals) == 1
        # The same SEQ with another command is a new request.
        assert await host.request(8, DISPLAY, b"\x01\x00abc") == frame(8, ACK, bytes([DISPLAY]))
        assert board.display == ["您好", "abc"]
        assert board.stats.repeats == 4


async def test_refusals(tmp_path: Path) -> None:
    async with running(board_settings(tmp_path, turn_s=0.3)) as (board, host):
        await host.event(POWER_UP)
        assert payload(await host.request(1, VEND, b"\x07\x01")) == bytes([VEND, 0x04])
        assert payload(await host.request(2, VEND, b"\x00\x01")) == bytes([VEND, 0x02])
        assert payload(await host.request(3, 0x42)) == bytes([0x42, 0x01])
        assert payload(await host.request(4, UNLOCK, b"\x00")) == bytes([UNLOCK, 0x02])
        too_long = b"\x00\x00" + "一二三四五六七八九十一二三四五六七".encode("gb2312")
        assert payload(await host.request(5, DISPLAY, too_long)) == bytes([DISPLAY, 0x02])
        assert payload(await host.request(6, DISPLAY, b"\x00\x00\xff\xff")) == bytes([5, 2])
        assert payload(await host.request(7, SIGNAL, b"\x01\x04")) == bytes([SIGNAL, 0x02])
        assert payload(await host.request(8, STATUS, b"\x00")) == bytes([STATUS, 0x02])

        assert not board.door_open()  # locked
        assert (await host.request(9, UNLOCK, b"\x05"))[4] == ACK
        assert board.door_open()
        await host.event(DOOR)
        assert payload(await host.request(10, VEND, b"\x01\x01")) == bytes([VEND, 0x05])
        assert (await host.request(11, UNLOCK, b"\x05"))[4] == ACK  # UNLOCK with the door open
        assert payload(await host.request(12, STATUS))[0] & 0x01
        board.door_close()
        assert payload(await host.event(DOOR)) == b"\x00"
        # A refused request was not acted on: sent again once the door is shut, it is.
        assert (await host.request(10, VEND, b"\x01\x01"))[4] == ACK
        assert payload(await host.request(13, STATUS))[0] & 0x04  # vending
        assert payload(await host.request(14, VEND, b"\x02\x01")) == bytes([VEND, 0x03])
        await host.event(VEND_DONE)
        assert len(board.truth.vends) == 1


async def test_fault_results(tmp_path: Path) -> None:
    async with running(board_settings(tmp_path)) as (board, host):
        await host.event(POWER_UP)

        async def vend(seq: int, slot: int, detect: bool = True) -> int:
            assert (await host.request(seq, VEND, bytes([slot, detect])))[4] == ACK
            done = payload(await host.event(VEND_DONE))
            assert done[:2] == bytes([seq, slot])
            return done[2]

        board.jam(1)
        assert await vend(1, 1) == 0x01
        assert board.slots[0].count == 10
        assert await vend(2, 1) == 0x00  # a jam is one vend's
        board.empty(2)
        assert await vend(3, 2) == 0x03
        assert await vend(4, 2, detect=False) == 0x00  # without the sensor: the turn completed
        board.motor_fault(3)
        assert await vend(5, 3) == 0x02
        board.motor_fault(3, on=False)
        board.blind_drop_sensor(True)
        assert payload(await host.request(6, STATUS))[0] == 0x02
        assert await vend(7, 4) == 0x04
        board.blind_drop_sensor(False)
        assert [(v.slot, v.dropped) for v in board.truth.vends] == [
            (1, False),
            (1, True),
            (2, False),
            (2, False),
            (3, False),
            (4, True),
        ]
        assert dict(board.truth.dropped) == {1: 1, 4: 1}
        for seq in range(8, 11):  # nine vends in all: the board remembers the last 8
            await vend(seq, 5)
        assert payload(await host.request(11, RESULT, b"\x01")) == b"\x01\x00\xfe"
        assert payload(await host.request(12, RESULT, b"\x02")) == b"\x02\x01\x00"


async def test_power_loss_in_the_middle_of_a_vend(tmp_path: Path) -> None:
    async with running(board_settings(tmp_path, turn_s=0.4, seed=3)) as (board, host):
        await host.event(POWER_UP)
        board.power_loss_mid_vend()
        assert (await host.request(0x40, VEND, b"\x02\x01"))[4] == ACK
        await eventually(lambda: not board.powered, 2, what="the power loss")
        with pytest.raises(AssertionError, match="no answer"):
            await host.request(0x41, STATUS)
        board.power_on()
        assert await host.event(POWER_UP) == frame(1, POWER_UP, b"\x03\x06")
        assert payload(await host.request(0x42, RESULT, b"\x40")) == b"\x40\x02\x05"
        status = payload(await host.request(0x43, STATUS))
        assert status == bytes([0x00, 6, 0x40, 0x05, 3])
        # The host that heard nothing sends the VEND again: a repeat, the motor stays still.
        vend = await host.request(0x40, VEND, b"\x02\x01")
        assert vend == frame(0x40, RESULT_ANSWER, b"\x40\x02\x05")
        [truth] = board.truth.vends
        assert truth.result == 0x05
        assert board.slots[1].count == 10 - truth.dropped
        assert board.truth.dropped[2] == int(truth.dropped)


async def test_the_memory_survives_a_restart_with_a_state_file(tmp_path: Path) -> None:
    settings = board_settings(tmp_path, state_file=tmp_path / "nvm.json", turn_s=0.5)
    async with running(settings) as (board, host):
        await host.event(POWER_UP)
        assert (await host.request(0x50, VEND, b"\x01\x01"))[4] == ACK
        await host.event(VEND_DONE)
        assert (await host.request(0x51, VEND, b"\x02\x01"))[4] == ACK
        # The simulator stops (is killed, loses power) while the motor runs.
    async with running(settings) as (board, host):
        await host.event(POWER_UP)
        assert payload(await host.request(1, STATUS)) == bytes([0, 6, 0x51, 0x05, 3])
        assert payload(await host.request(2, RESULT, b"\x50")) == b"\x50\x01\x00"
        answer = await host.request(0x51, VEND, b"\x02\x01")
        assert answer == frame(0x51, RESULT_ANSWER, b"\x51\x02\x05")
        assert board.truth.vends == []
        assert board.slots[0].count == 9


async def test_line_noise_does_not_stop_a_host_that_retries(tmp_path: Path) -> None:
    async with running(board_settings(tmp_path, seed=11)) as (board, host):
        await host.event(POWER_UP)
        await eventually(lambda: board.events_pending == 0, 2, what="POWER_UP acked")
        board.noise(1.0, corrupt=0.1)
        seq = 0
        for _ in range(10):
            seq += 1
            assert (await host.request(seq, STATUS))[4] == STATUS_ANSWER
        for slot in range(1, 6):
            seq += 1
            answer = await host.request(seq, VEND, bytes([slot, 1]))
            assert answer[4] in (ACK, RESULT_ANSWER)
            await eventually(lambda: not board.vending, 2, what="the vend done")
        await eventually(lambda: board.events_pending == 0, 5, what="every event acknowledged")
        assert len(board.truth.vends) == 5  # however often a VEND was sent
        stats = board.line.stats
        assert stats.garbage_out > 10
        assert stats.corrupted_in + stats.corrupted_out > 0
        assert board.rx.invalid + board.rx.garbage_bytes > 0 or stats.corrupted_out > 0


# --- the card reader --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def reader_port(settings: ReaderSettings) -> AsyncIterator[tuple[ReaderSim, bytearray]]:
    """A started reader and the bytes the agent's side receives from it."""
    reader = ReaderSim(settings)
    reader.start()
    fd = os.open(settings.link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    got = bytearray()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, lambda: got.extend(os.read(fd, 4096)))
    try:
        yield reader, got
    finally:
        loop.remove_reader(fd)
        os.close(fd)
        await reader.stop()


@pytest.mark.parametrize(
    ("options", "card", "sent"),
    [
        ({}, "04A1B2C3", b"04A1B2C3\r\n"),
        ({"lowercase": True, "separator": ":", "line_end": "\n"}, "04A1B2C3", b"04:a1:b2:c3\n"),
        ({"uid_reversed": True}, "04 A1 B2 C3", b"C3B2A104\r\n"),
        ({}, "E0:04:01:50:12:34:56:78", b"E004015012345678\r\n"),
        ({"format": "binary"}, "04A1B2C3", h("02 05 01 04 A1 B2 C3 D0 03")),
        ({"format": "binary"}, "04A1B2C3D4E580", h("02 08 01 04 A1 B2 C3 D4 E5 80 6C 03")),
        ({"format": "binary", "uid_reversed": True}, "C3B2A104", h("02 05 01 04 A1 B2 C3 D0 03")),
        ({"format": "id-line"}, "11010519491231002X", b"11010519491231002X\r\n"),
    ],
)
async def test_reader_formats(
    tmp_path: Path, options: dict[str, Any], card: str, sent: bytes
) -> None:
    async with reader_port(ReaderSettings(link=tmp_path / "reader", **options)) as (reader, got):
        assert reader.swipe(card) == sent
        await eventually(lambda: bytes(got) == sent, 2, what=f"{sent!r} at the agent's side")


async def test_reader_refuses_what_its_format_cannot_carry(tmp_path: Path) -> None:
    async with reader_port(ReaderSettings(link=tmp_path / "reader")) as (reader, _):
        for card in ("04A1B2C3D4", "11010519491231002X", "zz", "04A1B2C3D4E5F6A7B8C9D0"):
            with pytest.raises(ValueError, match=r"UID|hex"):
                reader.swipe(card)


async def test_a_card_left_on_the_reader_is_reported_every_half_second(tmp_path: Path) -> None:
    async with reader_port(ReaderSettings(link=tmp_path / "reader")) as (reader, got):
        loop = asyncio.get_running_loop()
        times: list[float] = []
        seen = 0

        def count() -> bool:
            nonlocal seen
            while got.count(b"\n") > seen:
                seen += 1
                times.append(loop.time())
            return seen >= 3

        task = reader.hold_in_background("04A1B2C3", 1.2)
        await eventually(count, 3, interval=0.01, what="three reports")
        assert await task == 3
        assert bytes(got) == b"04A1B2C3\r\n" * 3
        assert all(0.35 < b - a < 0.7 for a, b in pairwise(times)), times


# --- the crowd --------------------------------------------------------------------------------


def test_id_numbers_have_the_iso_7064_check_character() -> None:
    assert id_check_char("11010519491231002") == "X"
    assert valid_id_number("11010519491231002X")
    assert not valid_id_number("110105194912310021")
    settings = CrowdSettings(seed=5, unregistered=50, born=(1970, 1980), region="510122")
    made = card_pool(settings, id_cards=True)["unregistered"]
    assert len(set(made)) == 50
    assert all(valid_id_number(n) and n.startswith("510122") for n in made)
    assert all(1970 <= int(n[6:10]) <= 1980 for n in made)


def test_the_crowd_arrives_the_same_way_for_the_same_seed() -> None:
    def crowd(seed: int) -> list[Any]:
        settings = CrowdSettings(
            seed=seed,
            people_per_hour=60,
            registered=["04A1B2C3", "04112233445566"],
            lost=["5D0F8B21"],
            technicians=["DEADBEEF"],
            unregistered=3,
        )
        pool = card_pool(settings, id_cards=False)
        return list(islice(arrivals(settings, pool, [1, 2], reader=True), 300))

    first = crowd(42)
    assert first == crowd(42)
    assert first != crowd(43)
    mean_gap = first[-1].at_s / len(first)
    assert 48 < mean_gap < 72  # 60 people an hour
    kinds = {a.card[0] for a in first if a.card is not None}
    assert kinds == {"registered", "unregistered", "lost", "technician"}
    assert {a.button for a in first} == {1, 2}


async def test_a_crowd_at_a_box_records_what_people_saw_and_got(tmp_path: Path) -> None:
    """A few lines of 'agent' over the real lines: a registered card gets a unit."""
    board_cfg = board_settings(tmp_path, turn_s=0.05)
    reader_cfg = ReaderSettings(link=tmp_path / "reader")
    crowd_cfg = CrowdSettings(
        seed=3,
        people_per_hour=3600,
        time_scale=100,
        people=8,
        mix=Mix(registered=1, unregistered=1, lost=1, technician=1),
        registered=["04A1B2C3"],
        technicians=["DEADBEEF"],
        unregistered=2,
        read_s=0.3,
        think_s=0,
        give_up_s=0.5,
        hold_probability=0,
        refill_s=0,
    )
    async with running(board_cfg) as (board, host), reader_port(reader_cfg) as (reader, got):
        crowd = Crowd(crowd_cfg, board, reader, buttons=[1, 2])
        seq = 0

        async def agent() -> None:
            nonlocal seq
            while True:
                await eventually(lambda: b"\n" in got, 30, what="a card")
                line, _, rest = bytes(got).partition(b"\n")
                got[:] = rest
                uid = line.strip().decode()
                seq += 1
                text = "请取货" if uid == "04A1B2C3" else "未登记"
                if uid == "DEADBEEF":
                    text = "请开门"
                    await host.request(seq, UNLOCK, b"\x05")
                    seq += 1
                await host.request(seq, DISPLAY, b"\x00\x00" + text.encode("gb2312"))
                if uid == "04A1B2C3":
                    seq += 1
                    await host.request(seq, VEND, b"\x01\x01")

        agent_task = asyncio.get_running_loop().create_task(agent())
        try:
            await asyncio.wait_for(crowd.run(), 20)
        finally:
            agent_task.cancel()
            await asyncio.wait([agent_task])
        assert len(crowd.visits) == 8
        for visit in crowd.visits:
            assert visit.arrival.card is not None
            kind, card = visit.arrival.card
            if kind == "registered":
                assert (visit.display, visit.unit_fell, visit.gave_up) == (["请取货"], True, False)
                assert visit.pressed == [f"swipe {card}", str(visit.arrival.button)]
            elif kind == "technician":
                assert visit.door_opened
                assert visit.display == ["请开门"]
            else:
                assert (visit.display, visit.unit_fell, visit.gave_up) == (["未登记"], False, True)
        fell = sum(v.units for v in crowd.visits)
        assert fell == board.truth.total_dropped()
        kinds = {v.arrival.card[0] for v in crowd.visits if v.arrival.card}
        assert kinds == {"registered", "unregistered", "technician"}  # no lost cards listed


# --- scheduled faults --------------------------------------------------------------------------


async def vend_result(host: Host, seq: int, slot: int) -> int:
    """One vend from the host's side: its ACK, then its VEND_DONE's result code."""
    assert (await host.request(seq, VEND, bytes([slot, 1])))[4] == ACK
    done = payload(await host.event(VEND_DONE))
    assert done[:2] == bytes([seq, slot])
    return done[2]


async def test_scheduled_faults_start_when_an_agent_takes_the_box_into_service(
    tmp_path: Path,
) -> None:
    settings = board_settings(tmp_path, turn_s=0.2)
    box = BoxSim(
        id="box-1",
        board=settings,
        wait_for_agent=True,
        faults=[
            FaultSim(at_s=0, kind="jam", slot=1),
            FaultSim(at_s=0, kind="force_door", duration_s=0.2),
        ],
    )
    sim = CabinetSim(CabinetSimConfig(boxes=[box]))
    await sim.start()
    board = sim.boxes["box-1"].board
    host = Host(settings.link)
    try:
        await host.event(POWER_UP)
        # Nobody has written to the display yet: the script, due at once, waits for an agent.
        assert await vend_result(host, 1, 1) == 0x00
        assert not board.truth.door_openings

        # The agent's greeting comes while a vend runs: the door is forced once it is done.
        assert (await host.request(2, VEND, b"\x03\x01"))[4] == ACK
        assert (await host.request(3, DISPLAY, b"\x00\x00hello"))[4] == ACK
        assert payload(await host.event(VEND_DONE)) == b"\x02\x03\x00"
        assert payload(await host.event(DOOR)) == b"\x01"
        events = [raw[4] for _, raw in host.received if is_event(raw)]
        assert events.index(VEND_DONE) < events.index(DOOR)
        assert [forced for _, forced in board.truth.door_openings] == [True]
        assert payload(await host.event(DOOR)) == b"\x00", "shut again after 0.2 s"

        assert await vend_result(host, 4, 1) == 0x01  # jammed
        assert await vend_result(host, 5, 1) == 0x00  # a jam is one vend's
    finally:
        host.close()
        await sim.stop()
    assert not settings.link.exists()


async def test_a_scheduled_motor_fault_is_mended_after_its_duration(tmp_path: Path) -> None:
    async with running(board_settings(tmp_path)) as (board, host):
        await host.event(POWER_UP)
        await cause(board, FaultSim(at_s=0, kind="motor", slot=2))
        assert await vend_result(host, 1, 2) == 0x02  # motor fault, for good
        await cause(board, FaultSim(at_s=0, kind="motor", slot=2, duration_s=0.2))
        assert await vend_result(host, 2, 2) == 0x00  # mended after 0.2 s
        await run_faults(board, [FaultSim(at_s=0.1, kind="empty", slot=3)])
        assert await vend_result(host, 3, 3) == 0x03  # nothing fell


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "jam"}, "a jam fault needs a slot"),
        ({"kind": "force_door", "slot": 1}, "give no slot"),
        ({"kind": "empty", "slot": 1, "duration_s": 2}, "has no duration"),
        ({"kind": "jam", "slot": 7}, "jam on slot 7: the board has 6 slots"),
        ({"kind": "power", "slot": 1}, "kind"),
    ],
)
def test_a_scheduled_fault_is_checked(tmp_path: Path, fault: dict[str, Any], message: str) -> None:
    config = tmp_path / "cabinet.toml"
    fields = "\n".join(f"{k} = {json.dumps(v)}" for k, v in {"at_s": 5, **fault}.items())
    config.write_text(
        f"""
[[boxes]]
id = "box-1"
[boxes.board]
link = "{tmp_path / "board"}"
{"".join(f"[[boxes.board.slots]]{chr(10)}" for _ in range(6))}
[[boxes.faults]]
{fields}
"""
    )
    with pytest.raises(ConfigError, match=message):
        load_cabinet_config(config)


def test_the_example_schedules_a_jam_and_a_forced_door() -> None:
    config = load_cabinet_config(ROOT / "deploy" / "examples" / "cabinet-sim.toml")
    assert [(f.kind, f.slot) for f in config.boxes[0].faults] == [("jam", 1), ("force_door", None)]


# --- configuration and the command line -------------------------------------------------------


def test_the_example_configuration_loads() -> None:
    config = load_cabinet_config(ROOT / "deploy" / "examples" / "cabinet-sim.toml")
    assert [box.buttons for box in config.boxes] == [[1, 2], [1]]
    assert config.boxes[1].reader is None


async def test_the_interactive_command_line(tmp_path: Path) -> None:
    config = tmp_path / "cabinet.toml"
    config.write_text(
        f"""
[[boxes]]
id = "box-1"
[boxes.board]
link = "{tmp_path / "board"}"
turn_s = 0.05
[[boxes.board.slots]]
label = "condom-m"
capacity = 5
[boxes.reader]
link = "{tmp_path / "reader"}"
format = "binary"
"""
    )
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "edge-sim"),
        "cabinet",
        "--config",
        str(config),
        "--interactive",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None

    async def until(marker: str) -> list[str]:
        assert proc.stdout is not None
        lines = []
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
            assert line, "edge-sim ended early"
            lines.append(line.rstrip("\n"))
            if line.startswith(marker):
                return lines

    try:
        started = await until("ready")
        assert any(str(tmp_path / "reader") in line for line in started)
        async with contextlib.AsyncExitStack() as stack:
            fd = os.open(tmp_path / "reader", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            stack.callback(os.close, fd)
            got = bytearray()
            loop = asyncio.get_running_loop()
            loop.add_reader(fd, lambda: got.extend(os.read(fd, 4096)))
            stack.callback(loop.remove_reader, fd)
            host = Host(tmp_path / "board")
            stack.callback(host.close)
            assert await host.event(POWER_UP, 5) == frame(1, POWER_UP, b"\x03\x01")

            proc.stdin.write(b"swipe 04A1B2C3\n")
            assert (await until("sent"))[-1] == "sent 02 05 01 04 A1 B2 C3 D0 03"
            await eventually(lambda: bytes(got) == h("02 05 01 04 A1 B2 C3 D0 03"), 5)

            proc.stdin.write(b"press 1\n")
            assert payload(await host.event(BUTTON, 5)) == b"\x01"
            proc.stdin.write(b"empty 1\nshow\n")
            shown = await until("really")
            assert "slot 1 condom-m: 0/5" in shown
            proc.stdin.write(b"quit\n")
            await until("bye")
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert not (tmp_path / "board").exists()
        assert not (tmp_path / "reader").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if proc.returncode not in (0, None):
            assert proc.stderr is not None
            sys.stderr.write((await proc.stderr.read()).decode(errors="replace"))
