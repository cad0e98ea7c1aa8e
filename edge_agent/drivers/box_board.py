"""The host side of the box main-board protocol (``docs/protocols/cabinet.md``) over one line.

Lifecycle. The caller owns the line and opens it, then runs ``BoxBoard.run()`` as a task: it
alone reads the line, acknowledges the board's events and hands each answer to the request
waiting for it. When the line fails, ``run()`` raises ``BoardError("bus_unavailable")`` and the
request in flight fails the same way; the caller reopens the line (with backoff) and starts
``run()`` again. Request numbers and the events already delivered carry over. After each
(re)open the caller asks ``status()``, which also numbers the next request past the board's
last VEND::

    await line.open()
    reader = asyncio.create_task(board.run())
    report = await board.status()

Requests go one at a time. Each is sent again with the same SEQ when no answer came within
``answer_timeout_s``, up to ``resends`` times, which the board never acts on twice. A VEND's SEQ
comes from ``allocate_seq()`` so that the cabinet can commit its intent with it first; ``seq``
is what to persist and ``restore_seq`` puts it back.

Events (BUTTON, DOOR, POWER_UP, VEND_DONE) are acknowledged at once and put on ``events``, an
``asyncio.Queue``, once each: a repeat (the same SEQ and CMD within ``EVENT_REPEAT_WINDOW_S``
of its last sighting) is acknowledged again and not delivered. While the queue is full an event
is not acknowledged, so the board sends it again. Broken frames are counted in ``faults`` and
logged at most once per ``FAULT_LOG_INTERVAL_S``; frames that answer nothing go to DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from edge_agent.drivers.box_frames import (
    Ack,
    BoardError,
    BoardEvent,
    BoardMessage,
    BoxProtocolError,
    Button,
    Direction,
    Display,
    Door,
    Frame,
    FrameDecoder,
    FrameFault,
    HostMessage,
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
    encode,
    is_event,
    parse,
    to_frame,
)
from edge_agent.drivers.modbus import DriverError

__all__ = ["BoardError", "BoardEvent", "BoxBoard", "Line", "NakReason"]

log = logging.getLogger(__name__)

#: A board repeats an unacknowledged event every 300 ms, so a longer silence ends the repeats.
EVENT_REPEAT_WINDOW_S = 2.0
FAULT_LOG_INTERVAL_S = 10.0
_ANSWER_CMDS = frozenset([Ack.CMD, Nak.CMD, StatusReport.CMD, ResultReport.CMD])
_EVENT_TYPES = (Button, Door, PowerUp, VendDone)


class Line(Protocol):
    """What the board needs of a serial line (``SerialLine`` is one)."""

    @property
    def device(self) -> str: ...

    @property
    def is_open(self) -> bool: ...

    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


@dataclass
class _Pending:
    seq: int
    request: HostMessage
    answer: asyncio.Future[BoardMessage]

    def answered_by(self, message: BoardMessage) -> bool:
        if isinstance(message, Ack | Nak):
            return message.cmd == self.request.CMD
        if isinstance(message, StatusReport):
            return isinstance(self.request, Status)
        if not isinstance(message, ResultReport):
            return False
        if isinstance(self.request, Result):
            return message.vend_seq == self.request.vend_seq
        return isinstance(self.request, Vend) and message.vend_seq == self.seq


class BoxBoard:
    """One dispensing box's main board, as the host sees it."""

    def __init__(
        self,
        line: Line,
        *,
        answer_timeout_s: float = 0.3,
        resends: int = 2,
        events_max: int = 64,
    ) -> None:
        self._line = line
        self._answer_timeout_s = answer_timeout_s
        self._resends = resends
        self._seq = SeqCounter()
        self._lock = asyncio.Lock()
        self._pending: _Pending | None = None
        self._recent: dict[tuple[int, int], float] = {}
        self._fault_logged_at = float("-inf")
        self._faults_unlogged = 0
        #: The board's events, each once, in the order they came.
        self.events: asyncio.Queue[BoardEvent] = asyncio.Queue(events_max)
        #: Frames lost: decoder faults, and frames no message of the document.
        self.faults = 0

    @property
    def seq(self) -> int:
        """The last request number used (0: none): what to persist."""
        return self._seq.last

    def restore_seq(self, value: int) -> None:
        self._seq = SeqCounter(value)

    def allocate_seq(self) -> int:
        return self._seq.allocate()

    async def status(self) -> StatusReport:
        answer = await self._request(Status())
        if not isinstance(answer, StatusReport):
            raise self._refused(answer, "STATUS")
        self._seq.skip_past(answer.last_vend_seq)
        return answer

    async def vend(self, slot: int, seq: int, drop_detection: bool = True) -> None:
        """Start a vend numbered ``seq`` (from ``allocate_seq``); returns once the board has
        it. Its outcome comes as a ``VendDone`` event, or from ``result(seq)``."""
        answer = await self._request(Vend(slot, drop_detection), seq)
        if isinstance(answer, ResultReport) and answer.result is not VendResult.UNKNOWN:
            log.info("box board on %s: VEND %d was received before", self._line.device, seq)
            return
        if not isinstance(answer, Ack):
            raise self._refused(answer, "VEND")

    async def result(self, vend_seq: int) -> ResultReport:
        answer = await self._request(Result(vend_seq))
        if not isinstance(answer, ResultReport):
            raise self._refused(answer, "RESULT")
        return answer

    async def unlock(self, seconds: int) -> None:
        await self._acked(Unlock(seconds), "UNLOCK")

    async def display(self, line: int, text: str, hold_s: int = 0) -> None:
        await self._acked(Display(line, hold_s, text), "DISPLAY")

    async def signal(self, beep_10ms: int, light: Light) -> None:
        await self._acked(Signal(beep_10ms, light), "SIGNAL")

    async def run(self) -> None:
        """Read the line until it fails; always ends by raising ``BoardError``."""
        loop = asyncio.get_running_loop()
        decoder = FrameDecoder()
        try:
            while True:
                data = await self._read(decoder, loop)
                for item in decoder.feed(data, loop.time()):
                    if isinstance(item, FrameFault):
                        self._fault(f"{item.reason}, {item.dropped} byte(s) dropped")
                    elif is_event(item.cmd):
                        await self._on_event(item, loop.time())
                    else:
                        self._on_answer(item)
        except DriverError as exc:
            error = BoardError(f"box board on {self._line.device}: {exc}", reason="bus_unavailable")
            pending = self._pending
            if pending is not None and not pending.answer.done():
                pending.answer.set_exception(error)
            raise error from exc

    async def _acked(self, message: HostMessage, what: str) -> None:
        answer = await self._request(message)
        if not isinstance(answer, Ack):
            raise self._refused(answer, what)

    async def _request(self, message: HostMessage, seq: int | None = None) -> BoardMessage:
        async with self._lock:
            if seq is None:
                seq = self._seq.allocate()
            data = encode(to_frame(seq, message))
            name = type(message).__name__.upper()
            if not self._line.is_open:
                raise BoardError(
                    f"box board on {self._line.device}: line not open", reason="bus_unavailable"
                )
            answer: asyncio.Future[BoardMessage] = asyncio.get_running_loop().create_future()
            self._pending = _Pending(seq, message, answer)
            try:
                for attempt in range(1 + self._resends):
                    if attempt:
                        log.info(
                            "box board on %s: no answer to %s SEQ %d, sending it again",
                            self._line.device,
                            name,
                            seq,
                        )
                    try:
                        await self._line.write(data)
                    except DriverError as exc:
                        raise BoardError(str(exc), reason="bus_unavailable") from exc
                    try:
                        async with asyncio.timeout(self._answer_timeout_s):
                            return await asyncio.shield(answer)
                    except TimeoutError:
                        continue
            finally:
                self._pending = None
                if not answer.done():
                    answer.cancel()
            raise BoardError(
                f"box board on {self._line.device}: no answer to {name} SEQ {seq} "
                f"after {1 + self._resends} tries",
                reason="no_response",
            )

    def _refused(self, answer: BoardMessage, what: str) -> BoardError:
        where = f"box board on {self._line.device}"
        if isinstance(answer, Nak):
            return BoardError(
                f"{where} refused {what}: {answer.reason.name}", reason="nak", nak=answer.reason
            )
        return BoardError(f"{where} answered {what} with {answer}", reason="bad_answer")

    async def _read(self, decoder: FrameDecoder, loop: asyncio.AbstractEventLoop) -> bytes:
        """The next bytes, or none once the decoder has something to resolve by time."""
        deadline = decoder.deadline
        if deadline is None:
            return await self._line.read()
        try:
            async with asyncio.timeout_at(deadline + 0.005):
                return await self._line.read()
        except TimeoutError:
            return b""

    def _on_answer(self, frame: Frame) -> None:
        pending = self._pending
        if (
            pending is None
            or pending.answer.done()
            or frame.seq != pending.seq
            or frame.cmd not in _ANSWER_CMDS
        ):
            log.debug("box board on %s: %s answers nothing, dropped", self._line.device, frame)
            return
        try:
            message = parse(frame, Direction.TO_HOST)
        except BoxProtocolError as exc:
            self._fault(str(exc))
            pending.answer.set_exception(BoardError(str(exc), reason="bad_answer"))
            return
        if pending.answered_by(message):
            pending.answer.set_result(message)
        else:
            log.debug("box board on %s: %s answers nothing, dropped", self._line.device, message)

    async def _on_event(self, frame: Frame, now: float) -> None:
        try:
            event = parse(frame, Direction.TO_HOST)
        except BoxProtocolError as exc:
            self._fault(f"event not understood, not acknowledged: {exc}")
            return
        if not isinstance(event, _EVENT_TYPES):
            self._fault(f"{event} sent as an event")
            return
        self._recent = {k: t for k, t in self._recent.items() if now - t <= EVENT_REPEAT_WINDOW_S}
        key = (frame.seq, frame.cmd)
        if key in self._recent:
            log.debug("box board on %s: repeat of %s", self._line.device, event)
        elif self.events.full():
            log.warning(
                "box board on %s: %d events waiting; %s left for the board to send again",
                self._line.device,
                self.events.qsize(),
                event,
            )
            return
        else:
            if isinstance(event, PowerUp):
                self._recent.clear()  # a restarted board numbers its events anew
            self.events.put_nowait(event)
        self._recent[key] = now
        await self._line.write(encode(to_frame(frame.seq, Ack(frame.cmd))))

    def _fault(self, what: str) -> None:
        self.faults += 1
        self._faults_unlogged += 1
        now = asyncio.get_running_loop().time()
        if now - self._fault_logged_at >= FAULT_LOG_INTERVAL_S:
            log.warning(
                "box board on %s: %d bad frame(s) since the last report (latest: %s), %d in all",
                self._line.device,
                self._faults_unlogged,
                what,
                self.faults,
            )
            self._fault_logged_at = now
            self._faults_unlogged = 0
