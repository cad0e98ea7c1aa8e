"""One dispensing box on the agent: its board and card reader, its take machine, its books.

Everything that happens to the box (a swipe, a button, the door, a vend's result, a tick)
becomes an input on one queue, handled one at a time by ``_handle``, so the take machine never
sees two things at once. Each action the machine asks for is performed here: board commands,
and records committed to the outbox (``records.py``) before anything is said to the villager.
The intent of a vend is committed before its frame goes out; after a restart the board is asked
what became of it, and nothing is vended again on the agent's own account.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.cabinet import authorise, records, stock, store, texts
from edge_agent.cabinet.config import BoxConfig, CabinetSection
from edge_agent.cabinet.reader import read_swipes
from edge_agent.cabinet.transaction import (
    Action,
    Delivered,
    DoorMoved,
    Failed,
    Refuse,
    RestockAnswer,
    Show,
    Take,
    TamperAlarm,
    Unknown,
    Unlock,
    Vend,
)
from edge_agent.clock import Clock, Stamp
from edge_agent.drivers import box_frames as frames
from edge_agent.drivers.box_board import BoxBoard
from edge_agent.drivers.box_frames import BoardError, VendResult
from edge_agent.drivers.card_reader import (
    Swipe,
)
from edge_agent.drivers.modbus import DriverError
from edge_agent.drivers.serial_line import SerialLine
from edge_agent.outbox import AsyncOutbox, OutboxError, Unit
from edge_agent.pseudonym import CardKey
from edge_agent.wire import BoardState, DoorChanged, Tamper, UnknownReason, VendFailure

log = logging.getLogger(__name__)

#: How long after its ACK a vend's result may take before the board is asked (doc: 10 s).
RESULT_WAIT_S = 12.0
#: How often the board's status is read (door, drop sensor, whether it answers at all).
STATUS_EVERY_S = 30.0
TICK_S = 1.0
#: How soon a board that did not answer is asked again, and a failed line reopened.
REOPEN_AFTER_S = 5.0
#: A VEND the board refused this way faults nothing: it could not vend just then.
_NOT_READY: dict[frames.NakReason, VendFailure] = {
    frames.NakReason.BUSY: "board_busy",
    frames.NakReason.DOOR_OPEN: "door_open",
}

_FAILURES: dict[VendResult, VendFailure] = {
    VendResult.JAMMED: "jammed",
    VendResult.MOTOR_FAULT: "motor_fault",
    VendResult.NO_DROP: "no_drop",
}
_UNKNOWN: dict[VendResult, UnknownReason] = {
    VendResult.DROP_SENSOR_FAULT: "drop_sensor_fault",
    VendResult.INTERRUPTED: "interrupted",
    VendResult.UNKNOWN: "forgotten",
}


@dataclass(frozen=True)
class _Input:
    kind: str
    value: Any = None


class BoxService:
    def __init__(
        self,
        box: BoxConfig,
        cabinet: CabinetSection,
        *,
        site: str,
        board_line: SerialLine,
        reader_line: SerialLine | None,
        key: CardKey | None,
        outbox: AsyncOutbox,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.box = box
        self.cabinet = cabinet
        self.site = site
        self.board = BoxBoard(board_line)
        self._board_line = board_line
        self._reader_line = reader_line
        self._key = key
        self._outbox = outbox
        self._clock = clock
        self._monotonic = monotonic
        self._zone = ZoneInfo(cabinet.timezone)
        self._inputs: asyncio.Queue[_Input] = asyncio.Queue()
        self.books: records.Books | None = None
        self.take = Take(box, pending_orders=self._has_orders)
        self._orders: list[Any] = []
        self._vend: store.Intent | None = None
        #: A vend found under way at start: its outcome, whenever it comes, is ``recovered``.
        self._resumed: uuid.UUID | None = None
        self._vend_deadline = 0.0
        self.online = False
        self.drop_sensor_fault = False
        #: Door events seen: a status read while one arrived says nothing newer about the door.
        self._door_events = 0
        #: Set when the box is ready for takes (for tests and the demo).
        self.ready = asyncio.Event()

    # --- running ------------------------------------------------------------------------

    async def run(self) -> None:
        await self._load()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._board_loop(), name=f"{self.box.id}-board")
            if self._reader_line is not None:
                group.create_task(self._reader_loop(), name=f"{self.box.id}-reader")
            group.create_task(self._ticker(), name=f"{self.box.id}-tick")
            group.create_task(self._handler(), name=f"{self.box.id}-take")

    async def _load(self) -> None:
        stamp = self._clock.stamp()
        since = stamp.occurred_at - timedelta(hours=1)

        def load(
            unit: Unit,
        ) -> tuple[records.Books, list[store.Intent], list[datetime], int, list[Any]]:
            books = records.Books(self.box, self.cabinet, store.load_slots(unit, self.box))
            books.first_reports(unit, self._today(), stamp)
            return (
                books,
                store.vends_under_way(unit, self.box.id),
                store.open_vends(unit, self.box.id, since),
                store.saved_seq(unit, self.box.id),
                store.pending_orders(unit, self.box.id),
            )

        books, under_way, opened, seq, orders = await self._outbox.transact(load, what="cabinet")
        self.books = books
        self.take = Take(self.box, open_vends=opened, pending_orders=self._has_orders)
        self._orders = orders
        self._under_way = under_way
        self.board.restore_seq(seq)

    async def _board_loop(self) -> None:
        """Keep the board's line open and read, watch the board's status, and turn its events
        into inputs. Only a failed line is reopened: a board that misses a status is offline
        until it answers again, but its line is still read, so a result it repeats meanwhile
        is not lost."""
        while True:
            try:
                if not self._board_line.is_open:
                    await self._board_line.open()
                async with asyncio.TaskGroup() as group:
                    group.create_task(self.board.run())
                    group.create_task(self._board_events())
                    group.create_task(self._watch_board())
            except* (BoardError, DriverError) as errors:
                await self._board_offline(str(errors.exceptions[0]))
            await asyncio.sleep(REOPEN_AFTER_S)

    async def _watch_board(self) -> None:
        """Read the board's status now and every ``STATUS_EVERY_S`` (every ``REOPEN_AFTER_S``
        while it does not answer)."""
        while True:
            doors = self._door_events
            try:
                status = await self.board.status()  # numbers past the board's last vend, too
            except BoardError as exc:
                if exc.reason == "bus_unavailable":
                    raise
                await self._board_offline(str(exc))
                await asyncio.sleep(REOPEN_AFTER_S)
                continue
            await self._board_answered(status, doors)
            await asyncio.sleep(STATUS_EVERY_S)

    async def _board_answered(self, status: frames.StatusReport, doors: int) -> None:
        if not self.online:
            self.online = True
            await self._report_board("online", status.firmware)
            # The board ignores a request repeating its previous one's SEQ and CMD, and the
            # number after its last VEND may be the one a DISPLAY used before this start: a
            # SIGNAL takes it, harmlessly, so the next display is never taken for a repeat.
            await self._quietly(self.board.signal(0, frames.Light.OFF))
            # Through the queue, so nothing a villager does is handled before the recovery is
            # done; takes are refused until then (``ready``).
            await self._inputs.put(_Input("recover"))
        await self._set_sensor_fault(status.drop_sensor_fault)
        await self._inputs.put(_Input("door_seen", (status.door_open, doors)))

    async def _board_offline(self, reason: str) -> None:
        self.ready.clear()
        self.take.nobody_waiting()
        if self.online:
            self.online = False
            log.warning("box %s: board stopped answering: %s", self.box.id, reason)
            await self._report_board("offline", None)
        else:
            log.debug("box %s: board still not answering: %s", self.box.id, reason)

    async def _board_events(self) -> None:
        while True:
            event = await self.board.events.get()
            if isinstance(event, frames.Button):
                await self._inputs.put(_Input("button", event.button))
            elif isinstance(event, frames.Door):
                self._door_events += 1
                await self._inputs.put(_Input("door", event.opened))
            elif isinstance(event, frames.VendDone):
                await self._inputs.put(_Input("vend_done", event))
            elif isinstance(event, frames.PowerUp):
                await self._report_board("power_up", event.firmware)
                if self._vend is not None:
                    await self._inputs.put(_Input("ask_result"))

    async def _reader_loop(self) -> None:
        assert self._reader_line is not None
        assert self.box.reader is not None
        assert self._key is not None
        await read_swipes(
            self.box.id,
            self._reader_line,
            self.box.reader,
            self._key,
            today=self._today,
            monotonic=self._monotonic,
            swiped=lambda swipe: self._inputs.put(_Input("swipe", swipe)),
            misread=lambda: self._inputs.put(_Input("misread")),
        )

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            await self._inputs.put(_Input("tick"))

    async def _handler(self) -> None:
        while True:
            item = await self._inputs.get()
            try:
                await self._handle(item)
            except (OutboxError, BoardError, DriverError) as exc:
                log.error("box %s: %s not handled: %s", self.box.id, item.kind, exc)
                await self._show_quietly(Show("out_of_service"))
            except Exception:  # one bad input must not stop the box, let alone the agent
                log.exception("box %s: %s failed", self.box.id, item.kind)
                await self._show_quietly(Show("out_of_service"))

    # --- inputs -------------------------------------------------------------------------

    async def _handle(self, item: _Input) -> None:
        now = self._clock.stamp().occurred_at
        today = self._today()
        slots = list(self._books.slots.values())
        actions: list[Action] = []
        if item.kind == "swipe":
            actions = await self._swiped(item.value, slots, today, now)
        elif item.kind == "button":
            if self._out_of_service() and self.box.mode == "open":
                actions = [Refuse("out_of_service", None), Show("out_of_service")]
            else:
                actions = self.take.pressed(item.value, slots, today, now)
        elif item.kind == "door":
            actions = self.take.door(item.value, now)
        elif item.kind == "door_seen":
            opened, doors = item.value
            if doors != self._door_events:
                return  # a door event came while the status was read: it is newer
            actions = self.take.door_seen(opened, now)
            if actions:
                log.warning(
                    "box %s: the board's status says its door is %s; no event said so",
                    self.box.id,
                    "open" if opened else "closed",
                )
        elif item.kind == "vend_done":
            actions = self._vend_done(item.value, slots, today, now)
        elif item.kind == "recover":
            recovering = bool(self._under_way)
            while self._under_way:  # one at a time: an intent not recovered stays for next time
                await self._recover(self._under_way[0])
                self._under_way.pop(0)
            if not recovering and self._vend is not None:
                actions = await self._ask_result(slots, today, now)  # back after an outage
            await self._show_quietly(Show("welcome" if self.box.mode == "card" else "welcome_open"))
            self.ready.set()
        elif item.kind == "ask_result":
            actions = await self._ask_result(slots, today, now)
        elif item.kind == "misread":
            if not self.take.busy:
                actions = [Show("misread")]
        elif item.kind == "manual":
            work, done = item.value
            if self._vend is not None:
                done.set_exception(stock.StockError("a vend is under way; try again in a moment"))
                return
            try:
                done.set_result(await self._record(work))
            except (OutboxError, stock.StockError, ValueError) as exc:  # told to the technician
                done.set_exception(exc)
            return
        elif item.kind == "tick":
            actions = self.take.tick(now)
            if self._vend is not None and self._monotonic() >= self._vend_deadline:
                actions += await self._ask_result(slots, today, now)
        await self._perform(actions, today)

    async def _swiped(
        self, swipe: Swipe, slots: list[Any], today: date, now: datetime
    ) -> list[Action]:
        if self.take.busy:
            if self._vend is not None and self._resumed == self._vend.transaction:
                # A vend from before a restart, still unsettled: no take until it is.
                return [Refuse("out_of_service", swipe.card), Show("busy")]
            return []
        if self._out_of_service():
            return [Refuse("out_of_service", swipe.card), Show("out_of_service")]
        offer = await self._outbox.transact(
            lambda unit: authorise.offer(unit, self.box, self.cabinet, self.site, swipe, now),
            what="cabinet",
        )
        return self.take.swiped(offer, slots, today, now)

    def _vend_done(
        self, done: frames.VendDone, slots: list[Any], today: date, now: datetime
    ) -> list[Action]:
        if self._vend is None or done.vend_seq != self._vend.seq:
            log.info(
                "box %s: result of vend %d, which is not under way", self.box.id, done.vend_seq
            )
            return []
        return self._outcome(done.result, slots, today, now)

    def _outcome(
        self, result: VendResult, slots: list[Any], today: date, now: datetime
    ) -> list[Action]:
        if result == VendResult.DELIVERED:
            return self.take.vend_ended("delivered", None, slots, today, now)
        if result in _FAILURES:
            return self.take.vend_ended("failed", _FAILURES[result], slots, today, now)
        return self.take.vend_ended("unknown", _UNKNOWN.get(result, "forgotten"), slots, today, now)

    async def _ask_result(self, slots: list[Any], today: date, now: datetime) -> list[Action]:
        vend = self._vend
        if vend is None:
            return []
        try:
            report = await self.board.result(vend.seq)
        except BoardError as exc:
            if exc.reason not in ("no_response", "bus_unavailable"):
                log.error("box %s: the board will not say what vend %d did: %s", self.box.id,
                          vend.seq, exc)  # fmt: skip
                return self.take.vend_ended("unknown", "no_answer", slots, today, now)
            # The board keeps its last vends' results: the vend stays under way and the board
            # is asked again, now and then and when it is back, never given up on; but whoever
            # swiped has gone, so no other slot is tried for it.
            log.warning(
                "box %s: no result for vend %d yet, asking again: %s", self.box.id, vend.seq, exc
            )
            self.take.nobody_waiting()
            self._vend_deadline = self._monotonic() + RESULT_WAIT_S
            return []
        if report.result == VendResult.IN_PROGRESS:
            self._vend_deadline = self._monotonic() + RESULT_WAIT_S
            return []
        return self._outcome(report.result, slots, today, now)

    async def _recover(self, intent: store.Intent) -> None:
        """A vend left under way by a restart: record what the board says became of it (asked
        again, like any vend's, until the board answers)."""
        self._vend = intent
        self._resumed = intent.transaction
        self.take.resume_vending(Vend(intent.transaction, intent.slot, intent.product, intent.card))
        self._vend_deadline = self._monotonic() + RESULT_WAIT_S
        try:
            report = await self.board.result(intent.seq)
        except BoardError as exc:
            log.warning(
                "box %s: vend %d (slot %d) was under way at restart; no result: %s",
                self.box.id, intent.seq, intent.slot, exc,
            )  # fmt: skip
            if exc.reason in ("no_response", "bus_unavailable"):
                return  # asked again, as any late result is
            report = frames.ResultReport(intent.seq, intent.slot, VendResult.UNKNOWN)
        if report.slot != intent.slot and report.result != VendResult.UNKNOWN:
            log.error(
                "box %s: the board's vend %d was at slot %d, not %d: another vend's number",
                self.box.id,
                intent.seq,
                report.slot,
                intent.slot,
            )
            report = frames.ResultReport(intent.seq, intent.slot, VendResult.UNKNOWN)
        log.warning(
            "box %s: vend %d (slot %d) was under way at restart; the board says %s",
            self.box.id,
            intent.seq,
            intent.slot,
            report.result.name,
        )
        if report.result == VendResult.IN_PROGRESS:
            return
        slots = list(self._books.slots.values())
        actions = self._outcome(
            report.result, slots, self._today(), self._clock.stamp().occurred_at
        )
        await self._perform(actions, self._today(), recovered=True)

    # --- actions ------------------------------------------------------------------------

    async def _perform(
        self, actions: list[Action], today: date, *, recovered: bool = False
    ) -> None:
        for action in actions:
            if isinstance(action, Show):
                await self._show_quietly(action)
            elif isinstance(action, Vend):
                await self._start_vend(action, today)
            elif isinstance(action, Delivered | Failed | Unknown):
                await self._record_outcome(action, today, recovered)
            elif isinstance(action, Refuse):
                await self._refuse(action)
            elif isinstance(action, Unlock):
                await self.board.unlock(self.box.unlock_s)
                self._orders = await self._outbox.transact(
                    lambda unit: store.pending_orders(unit, self.box.id), what="cabinet"
                )
                if self._orders:
                    first = self._orders[0]
                    name = self.cabinet.product(first.product).name
                    params = {"slot": first.slot, "product": name, "quantity": first.quantity}
                    await self._show_quietly(Show("unlocked_order", params))
                else:
                    await self._show_quietly(Show("unlocked"))
            elif isinstance(action, DoorMoved):
                state = "opened" if action.opened else "closed"
                payload = DoorChanged(box=self.box.id, state=state, technician=action.technician)
                await self._append("cabinet.door", payload)
            elif isinstance(action, TamperAlarm):
                tamper = Tamper(box=self.box.id, reason=action.reason, open_s=action.open_s)
                await self._append("cabinet.tamper", tamper)
                await self._quietly(self.board.signal(100, frames.Light.RED))
            elif isinstance(action, RestockAnswer):
                await self._answer_orders(action, today)

    async def _refuse(self, refusal: Refuse) -> None:
        books = self._books

        def work(unit: Unit, stamp: Stamp) -> None:
            records.refused(
                books, unit, refusal.reason, refusal.card, refusal.product, refusal.next_at, stamp
            )

        await self._record(work)

    async def _start_vend(self, vend: Vend, today: date) -> None:
        seq = self.board.allocate_seq()
        intent = store.Intent(
            vend.transaction,
            self.box.id,
            vend.slot,
            seq,
            vend.product,
            vend.card,
            self._clock.stamp().occurred_at,
        )
        try:
            await self._outbox.transact(lambda unit: store.begin_vend(unit, intent), what="cabinet")
        except OutboxError:
            self.take.abandon()  # no intent stored, so no vend: the villager is told
            raise
        self._vend = intent
        self._vend_deadline = self._monotonic() + RESULT_WAIT_S
        try:
            await self.board.vend(vend.slot, seq, drop_detection=self.box.drop_detection)
        except BoardError as exc:
            log.warning("box %s: vend %d not accepted: %s", self.box.id, seq, exc)
            slots = list(self._books.slots.values())
            now = self._clock.stamp().occurred_at
            if exc.reason == "nak":
                reason: VendFailure = "refused_by_board"
                if exc.nak is not None:
                    reason = _NOT_READY.get(exc.nak, reason)
                actions = self.take.vend_ended("failed", reason, slots, today, now)
            else:
                actions = await self._ask_result(slots, today, now)
            await self._perform(actions, today)

    async def _record_outcome(
        self, action: Delivered | Failed | Unknown, today: date, recovered: bool
    ) -> None:
        intent = self._vend
        if intent is None or intent.transaction != action.vend.transaction:
            log.error("box %s: outcome of a vend not under way; ignored", self.box.id)
            return
        recovered = recovered or intent.transaction == self._resumed
        books = self._books

        def work(unit: Unit, stamp: Stamp) -> Any:
            if isinstance(action, Delivered):
                return records.delivered(books, unit, intent, stamp, today, recovered=recovered)
            if isinstance(action, Failed):
                return records.failed(
                    books,
                    unit,
                    intent,
                    action.reason,
                    action.next_slot,
                    stamp,
                    today,
                    recovered=recovered,
                )
            return records.unknown(
                books, unit, intent, action.reason, stamp, today, recovered=recovered
            )

        try:
            await self._record(work)
        except OutboxError:
            # Not recorded: the vend stays under way, asked about again and recorded then.
            self.take.resume_vending(action.vend)
            self._vend_deadline = self._monotonic() + RESULT_WAIT_S
            raise
        self._vend = None
        if isinstance(action, Unknown) and action.reason == "drop_sensor_fault":
            await self._set_sensor_fault(True)

    async def _answer_orders(self, answer: RestockAnswer, today: date) -> None:
        orders = list(self._orders)
        books = self._books

        def work(unit: Unit, stamp: Stamp) -> list[stock.Slot]:
            return records.orders_answered(
                books, unit, orders, answer.technician, answer.confirmed, stamp, today
            )

        await self._record(work)
        self._orders = []

    async def manual(self, work: Callable[[records.Books, Unit, Stamp, date], Any]) -> Any:
        """A restock, removal or count typed on site (``edge-agent cabinet``), queued behind
        whatever the box is doing so the take machine and the books see it in order."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        today = self._today()
        books = self._books
        await self._inputs.put(
            _Input("manual", (lambda unit, stamp: work(books, unit, stamp, today), done))
        )
        return await done

    async def _record(self, work: Callable[[Unit, Stamp], Any]) -> Any:
        """Commit ``work`` (records.* functions) and keep the slots it returns."""
        stamp = self._clock.stamp()
        result = await self._outbox.transact(lambda unit: work(unit, stamp), what="cabinet")
        changed = result if isinstance(result, list) else [result] if result is not None else []
        self._books.commit([s for s in changed if isinstance(s, stock.Slot)])
        return result

    async def _append(self, kind: str, payload: Any) -> None:
        await self._outbox.append(kind, payload, self._clock.stamp())

    async def _report_board(self, state: str, firmware: int | None) -> None:
        await self._append(
            "cabinet.board",
            BoardState.model_validate({"box": self.box.id, "state": state, "firmware": firmware}),
        )

    async def _set_sensor_fault(self, fault: bool) -> None:
        if fault and not self.drop_sensor_fault:
            await self._report_board("drop_sensor_fault", None)
        elif not fault and self.drop_sensor_fault:
            await self._report_board("online", None)
        self.drop_sensor_fault = fault

    async def _show(self, show: Show) -> None:
        first, second = texts.lines(show.message, show.params, self.box.language, self._zone)
        await self.board.display(0, first)
        if second:
            await self.board.display(1, second)

    async def _show_quietly(self, show: Show) -> None:
        await self._quietly(self._show(show))

    async def _quietly(self, request: Any) -> None:
        """A display or a beep that fails is logged; the take goes on without it."""
        try:
            await request
        except BoardError as exc:
            log.warning("box %s: display or signal failed: %s", self.box.id, exc)

    # --- helpers ------------------------------------------------------------------------

    @property
    def _books(self) -> records.Books:
        assert self.books is not None, "run() loads the books first"
        return self.books

    def books_slots(self) -> dict[int, stock.Slot]:
        return dict(self._books.slots)

    def _has_orders(self) -> bool:
        return bool(self._orders)

    def _out_of_service(self) -> bool:
        return not self.ready.is_set() or not self.online or self.drop_sensor_fault

    def _today(self) -> date:
        return self._clock.stamp().occurred_at.astimezone(self._zone).date()
