"""BoxBoard over a real pseudo-terminal against a board scripted here in raw bytes.

The frames are the document's examples where it has one, and otherwise built by ``raw`` with a
CRC computed here, so the driver's codec is checked against bytes, not against itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from edge_agent.drivers.box_board import BoardError, BoxBoard
from edge_agent.drivers.box_frames import (
    Button,
    Door,
    Light,
    NakReason,
    ResultReport,
    StatusReport,
    VendDone,
    VendResult,
)
from edge_agent.drivers.modbus import DriverError
from edge_agent.drivers.serial_line import SerialLine
from tests.support import PtyPair, eventually


def raw(seq: int, cmd: int, *payload: int) -> bytes:
    body = bytes([len(payload) + 2, seq, cmd, *payload])
    crc = 0xFFFF
    for byte in body:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return b"\xaa\x55" + body + bytes([crc & 0xFF, crc >> 8])


def doc(hex_: str) -> bytes:
    return bytes.fromhex(hex_)


STATUS_1 = doc("AA 55 02 01 01 10 50")
STATUS_ANSWER = doc("AA 55 07 01 81 00 06 2A 00 03 6E 7D")
VEND_2B = doc("AA 55 04 2B 02 03 01 BC D4")
VEND_2B_ACK = doc("AA 55 03 2B 06 02 F2 09")
VEND_DONE_11 = doc("AA 55 05 11 93 2B 03 00 A1 F1")
VEND_DONE_11_ACK = doc("AA 55 03 11 06 93 13 A8")
BUTTON_13 = doc("AA 55 03 13 90 01 5C 65")
DOOR_14 = doc("AA 55 03 14 91 01 EC 34")


class ScriptedBoard:
    """The board's end of the cable. Each frame the host sends is recorded, and answered with
    the next reply scripted for those exact bytes (None: stay silent that time)."""

    def __init__(self, pair: PtyPair) -> None:
        self._pair = pair
        self._fd = pair.controller_fd
        os.set_blocking(self._fd, False)
        self.received: list[bytes] = []
        self._buf = bytearray()
        self._replies: dict[bytes, list[bytes | None]] = {}
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def on(self, request: bytes, *replies: bytes | None) -> None:
        self._replies.setdefault(request, []).extend(replies)

    def send(self, data: bytes) -> None:
        os.write(self._fd, data)

    def count(self, frame: bytes) -> int:
        return self.received.count(frame)

    def unplug(self) -> None:
        """Pull the adapter: the host's end of the pseudo-terminal hangs up."""
        self.stop()
        os.close(self._fd)
        self._pair.controller_fd = -1

    def stop(self) -> None:
        if self._pair.controller_fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)

    def _readable(self) -> None:
        try:
            self._buf += os.read(self._fd, 4096)
        except BlockingIOError:
            return
        while len(self._buf) >= 3 and len(self._buf) >= self._buf[2] + 5:
            assert self._buf.startswith(b"\xaa\x55"), self._buf.hex(" ")
            frame = bytes(self._buf[: self._buf[2] + 5])
            del self._buf[: len(frame)]
            self.received.append(frame)
            replies = self._replies.get(frame)
            reply = replies.pop(0) if replies else None
            if reply is not None:
                self.send(reply)


@dataclass
class Rig:
    box: BoxBoard
    board: ScriptedBoard
    line: SerialLine
    reader: asyncio.Task[None]


@contextlib.asynccontextmanager
async def rigged(pair: PtyPair, events_max: int = 64) -> AsyncIterator[Rig]:
    line = SerialLine(pair.device)
    await line.open()
    board = ScriptedBoard(pair)
    box = BoxBoard(line, answer_timeout_s=0.5, events_max=events_max)
    reader = asyncio.create_task(box.run())
    try:
        yield Rig(box, board, line, reader)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, BoardError):
            await reader
        board.stop()
        await line.close()


@pytest.fixture
async def rig(pty_pair: PtyPair) -> AsyncIterator[Rig]:
    async with rigged(pty_pair) as r:
        yield r


async def test_status_reads_the_board_and_numbers_past_its_last_vend(rig: Rig) -> None:
    rig.board.on(STATUS_1, STATUS_ANSWER)
    report = await rig.box.status()
    assert report == StatusReport(False, False, False, 6, 0x2A, VendResult.DELIVERED, 3)
    assert rig.box.seq == 0x2A
    assert rig.box.allocate_seq() == 0x2B


async def test_a_vend_is_acked_and_its_vend_done_delivered_once_and_acked(rig: Rig) -> None:
    rig.box.restore_seq(0x2A)
    seq = rig.box.allocate_seq()
    rig.board.on(VEND_2B, VEND_2B_ACK)
    await rig.box.vend(3, seq)
    assert rig.board.received == [VEND_2B]

    rig.board.send(VEND_DONE_11)
    event = await asyncio.wait_for(rig.box.events.get(), 5)
    assert event == VendDone(0x2B, 3, VendResult.DELIVERED)
    await eventually(lambda: rig.board.count(VEND_DONE_11_ACK) == 1, 5, what="the event's ACK")


async def test_a_vend_whose_frame_is_lost_is_sent_again_with_the_same_seq(rig: Rig) -> None:
    rig.box.restore_seq(0x2A)
    rig.board.on(VEND_2B, None, VEND_2B_ACK)
    await rig.box.vend(3, rig.box.allocate_seq())
    assert rig.board.received == [VEND_2B, VEND_2B]


async def test_a_repeat_answered_with_its_result_counts_as_received(rig: Rig) -> None:
    rig.box.restore_seq(0x2A)
    rig.board.on(VEND_2B, None, raw(0x2B, 0x83, 0x2B, 3, 0x10))
    await rig.box.vend(3, rig.box.allocate_seq())
    assert rig.board.received == [VEND_2B, VEND_2B]


async def test_nak_busy_is_raised_with_its_reason(rig: Rig) -> None:
    rig.box.restore_seq(0x2C)
    vend_2d = raw(0x2D, 0x02, 3, 1)
    rig.board.on(vend_2d, doc("AA 55 04 2D 15 02 03 8C 09"))
    with pytest.raises(BoardError) as caught:
        await rig.box.vend(3, rig.box.allocate_seq())
    assert (caught.value.reason, caught.value.nak) == ("nak", NakReason.BUSY)
    assert rig.board.received == [vend_2d]


async def test_no_answer_after_the_resends_is_no_response(rig: Rig) -> None:
    with pytest.raises(BoardError) as caught:
        await rig.box.status()
    assert caught.value.reason == "no_response"
    assert rig.board.received == [STATUS_1] * 3


async def test_unlock_display_signal_and_result_send_the_documents_bytes(rig: Rig) -> None:
    rig.box.restore_seq(0x2D)
    unlock = doc("AA 55 03 2E 04 1E E2 A1")
    display = doc("AA 55 0A 2F 05 00 00 C7 EB C8 A1 BB F5 C0 A3")
    signal = doc("AA 55 04 30 07 14 01 A5 C1")
    rig.board.on(unlock, raw(0x2E, 0x06, 0x04))
    rig.board.on(display, raw(0x2F, 0x06, 0x05))
    rig.board.on(signal, raw(0x30, 0x06, 0x07))
    await rig.box.unlock(30)
    await rig.box.display(0, "请取货")
    await rig.box.signal(20, Light.GREEN)
    assert rig.board.received == [unlock, display, signal]

    rig.box.restore_seq(0)
    rig.board.on(doc("AA 55 03 01 03 2B 11 4F"), doc("AA 55 05 01 83 2B 03 00 64 F2"))
    assert await rig.box.result(0x2B) == ResultReport(0x2B, 3, VendResult.DELIVERED)


async def test_a_repeated_event_is_acked_each_time_and_delivered_once(rig: Rig) -> None:
    button_ack = raw(0x13, 0x06, 0x90)
    rig.board.send(BUTTON_13)
    rig.board.send(BUTTON_13)
    await eventually(lambda: rig.board.count(button_ack) == 2, 5, what="two ACKs of BUTTON")
    rig.board.send(DOOR_14)
    assert await asyncio.wait_for(rig.box.events.get(), 5) == Button(1)
    assert await asyncio.wait_for(rig.box.events.get(), 5) == Door(opened=True)
    assert rig.box.events.empty()


async def test_an_event_is_left_unacknowledged_while_the_queue_is_full(
    pty_pair: PtyPair, caplog: pytest.LogCaptureFixture
) -> None:
    async with rigged(pty_pair, events_max=1) as rig:
        rig.board.send(BUTTON_13)
        await eventually(lambda: rig.box.events.full(), 5, what="the BUTTON queued")
        rig.board.send(DOOR_14)
        await eventually(lambda: "send again" in caplog.text, 5, what="the DOOR left")
        assert rig.board.count(raw(0x13, 0x06, 0x90)) == 1
        assert rig.board.count(raw(0x14, 0x06, 0x91)) == 0
        assert await rig.box.events.get() == Button(1)
        rig.board.send(DOOR_14)  # the board's repeat of the event nobody acknowledged
        assert await asyncio.wait_for(rig.box.events.get(), 5) == Door(opened=True)
        await eventually(lambda: rig.board.count(raw(0x14, 0x06, 0x91)) == 1, 5, what="ACK")


async def test_garbage_and_broken_frames_between_frames_are_tolerated(rig: Rig) -> None:
    broken = bytearray(STATUS_ANSWER)
    broken[6] ^= 0x01
    rig.board.on(STATUS_1, b"\x00\xffjunk\xaa" + bytes(broken) + STATUS_ANSWER + b"\xaa\x55\x99")
    assert (await rig.box.status()).last_vend_seq == 0x2A

    unknown_event = raw(0x15, 0x94, 0x00)
    rig.board.send(b"\x13\x37" + raw(0x77, 0x06, 0x01) + unknown_event + BUTTON_13)
    assert await asyncio.wait_for(rig.box.events.get(), 5) == Button(1)
    await eventually(lambda: rig.board.count(raw(0x13, 0x06, 0x90)) == 1, 5, what="BUTTON ACK")
    assert rig.board.count(raw(0x15, 0x06, 0x94)) == 0
    assert rig.box.faults >= 4


async def test_a_vanishing_line_fails_the_request_and_the_reader(rig: Rig) -> None:
    request = asyncio.create_task(rig.box.status())
    await eventually(lambda: rig.board.count(STATUS_1) == 1, 5, what="the STATUS request")
    rig.board.unplug()

    with pytest.raises(BoardError) as caught:
        await request
    assert caught.value.reason == "bus_unavailable"
    with pytest.raises(BoardError) as reader_error:
        await rig.reader
    assert reader_error.value.reason == "bus_unavailable"
    assert not rig.line.is_open
    with pytest.raises(BoardError) as later:
        await rig.box.status()
    assert later.value.reason == "bus_unavailable"
    with pytest.raises(DriverError) as reopen:
        await rig.line.open()
    assert reopen.value.reason == "bus_unavailable"


async def test_a_missing_device_cannot_be_opened(tmp_path: os.PathLike[str]) -> None:
    line = SerialLine(os.path.join(tmp_path, "ttyUSB-none"))
    with pytest.raises(DriverError) as caught:
        await line.open()
    assert caught.value.reason == "bus_unavailable"
    assert not line.is_open
