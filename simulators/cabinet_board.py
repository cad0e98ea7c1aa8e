"""A simulated dispensing box main board on a real pseudo-terminal, from docs/protocols/cabinet.md.

Spiral slots with counts, a drop sensor, a door with a lock, buttons, a two-line display, a
beeper and a light, and the board's non-volatile memory of its last 8 vends (optionally a JSON
``state_file``, so a restart keeps it). Faults are injected by calling methods (``jam``,
``empty``, ``blind_drop_sensor``, ``motor_fault``, ``power_loss_mid_vend``, ``noise``); what
physically happened is kept in ``truth`` so a test can hold the agent's records against reality.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Coroutine
from typing import Any

from simulators import cabinet_frames as bf
from simulators.cabinet_config import BoardSettings
from simulators.cabinet_line import SimLine
from simulators.cabinet_state import (
    GroundTruth,
    Memory,
    Shown,
    Signal,
    Slot,
    Stats,
    VendTruth,
    load_state,
    save_state,
)

log = logging.getLogger(__name__)


class BoardSim:
    """The main board. ``start()`` (in a running loop) makes the pseudo-terminal and the
    symlink ``settings.link`` and powers the board on; ``stop()`` removes them."""

    def __init__(self, settings: BoardSettings, name: str = "box") -> None:
        self.settings = settings
        self.name = name
        self.link = settings.link
        self.line = SimLine(settings.link, f"board {name}", settings.seed + 1)
        self.slots = [
            Slot(s.label or f"slot {i}", s.capacity, s.capacity if s.count is None else s.count)
            for i, s in enumerate(settings.slots, 1)
        ]
        self.memory = Memory()
        self.truth = GroundTruth()
        self.stats = Stats()
        self.display = ["", ""]
        self.display_history: list[Shown] = []
        self.signals: list[Signal] = []
        self.light = 0
        self.door_is_open = False
        self.powered = False
        self.rx = bf.FrameReader()
        self._rng = random.Random(settings.seed)
        self._jams: set[int] = set()
        self._motor_faults: set[int] = set()
        self._blind = False
        self._cut_next_vend = False
        self._vend: VendTruth | None = None
        self._previous: tuple[int, int] | None = None
        self._previous_answer = b""
        self._event_seq = 0
        self._events: deque[tuple[int, int, bytes]] = deque()
        self._awaiting: tuple[int, int] | None = None
        self._acked: asyncio.Event | None = None
        self._events_ready: asyncio.Event | None = None
        self._unlocked_until = 0.0
        self._display_gen = [0, 0]
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        load_state(settings.state_file, self.memory, self.slots)

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Make the pseudo-terminal and its symlink, then power on (POWER_UP is sent)."""
        self._loop = asyncio.get_running_loop()
        self.line.open(self._received)
        log.info("board %s on %s (%s)", self.name, self.link, self.device_path)
        self.power_on()

    async def stop(self) -> None:
        """Power off (a running vend is cut, as by a power loss) and remove the device."""
        self.power_off()
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.line.close()

    @property
    def device_path(self) -> str:
        """The pseudo-terminal behind ``link``."""
        return self.line.device_path

    def power_on(self) -> None:
        """Power comes (back): input sent while off is lost, a vend cut by the loss becomes
        ``interrupted`` in memory, and POWER_UP is sent with the board's SEQ 1."""
        if self.powered or self._loop is None:
            return
        self.rx.clear()
        if self.memory.interrupt():
            self._save()
        last = self.memory.last_vend_seq
        self._previous = (last, bf.VEND) if last else None
        self._previous_answer = b""
        self._event_seq = 0
        self._events.clear()
        self._acked = asyncio.Event()
        self._events_ready = asyncio.Event()
        self._unlocked_until = 0.0
        self.display = ["", ""]
        self.light = 0
        self.powered = True
        self.line.resume()
        self._spawn(self._send_events())
        self._emit(bf.POWER_UP, bytes([self.settings.firmware, len(self.slots)]))
        log.info("board %s powered on", self.name)

    def power_off(self) -> None:
        """Power goes: the board stops reading and answering; a running vend is cut, and
        whether its unit fell is chosen at random (``truth`` says which)."""
        if not self.powered:
            return
        self.powered = False
        self.line.pause()
        if self._vend is not None:
            vend, self._vend = self._vend, None
            slot = self.slots[vend.slot - 1]
            vend.dropped = slot.count > 0 and self._rng.random() < 0.5
            if vend.dropped:
                slot.count -= 1
                self.truth.dropped[vend.slot] += 1
            vend.result = bf.INTERRUPTED
            vend.ended = self._now()
            self._save()  # memory keeps the vend "in progress": power-up makes it interrupted
            log.warning(
                "board %s: power lost during vend %d (slot %d): unit %s",
                self.name,
                vend.seq,
                vend.slot,
                "fell" if vend.dropped else "stayed",
            )
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._events.clear()
        self._awaiting = None
        log.info("board %s powered off", self.name)

    # --- what people and faults do ---------------------------------------------------------------

    def press(self, button: int | str) -> bool:
        """Press a product button (1 … 16), ``ok`` (confirm) or ``cancel``; False if unpowered."""
        code = {"ok": bf.CONFIRM_BUTTON, "cancel": bf.CANCEL_BUTTON}.get(str(button).lower())
        if code is None:
            code = int(button)
            if not (1 <= code <= 0x10 or code in (bf.CONFIRM_BUTTON, bf.CANCEL_BUTTON)):
                raise ValueError(f"no button {button!r} (1..16, ok, cancel)")
        if not self.powered:
            return False
        self._emit(bf.BUTTON, bytes([code]))
        return True

    @property
    def unlocked(self) -> bool:
        return self.powered and self._now() < self._unlocked_until

    def door_open(self, force: bool = False) -> bool:
        """Pull the door: it opens if the lock is open, or by force (tampering)."""
        if self.door_is_open or not (force or self.unlocked):
            return False
        self.door_is_open = True
        self.truth.door_openings.append((self._now(), force))
        if force:
            log.warning("board %s: door forced", self.name)
        if self.powered:
            self._emit(bf.DOOR, b"\x01")
        return True

    def door_close(self) -> bool:
        if not self.door_is_open:
            return False
        self.door_is_open = False
        if self.powered:
            self._emit(bf.DOOR, b"\x00")
        return True

    def refill(self, slot: int, count: int | None = None) -> int:
        """Load a slot (to capacity by default); returns the units put in."""
        s = self._slot(slot)
        target = s.capacity if count is None else min(s.capacity, s.count + count)
        added = max(0, target - s.count)
        s.count += added
        self.truth.refilled[slot] += added
        self._save()
        return added

    def take_out(self, slot: int, count: int) -> int:
        """Units leave a slot by hand, unrecorded (lost, taken, spoiled): the shelf now holds
        less than the books, as a count will find; returns the units taken."""
        s = self._slot(slot)
        taken = min(max(count, 0), s.count)
        s.count -= taken
        self.truth.taken_out[slot] += taken
        self._save()
        return taken

    def jam(self, slot: int) -> None:
        """The next vend of this slot jams: the spiral stops, the unit stays."""
        self._slot(slot)
        self._jams.add(slot)

    def empty(self, slot: int) -> None:
        """Nothing left in the slot: a vend turns and nothing falls."""
        self._slot(slot).count = 0
        self._save()

    def motor_fault(self, slot: int, on: bool = True) -> None:
        self._slot(slot)
        if on:
            self._motor_faults.add(slot)
        else:
            self._motor_faults.discard(slot)

    def blind_drop_sensor(self, on: bool = True) -> None:
        """A blocked or blind drop sensor: vends report a sensor fault (units may still fall)."""
        self._blind = on

    def power_loss_mid_vend(self) -> None:
        """The next vend loses the power halfway through its turn."""
        self._cut_next_vend = True

    def noise(self, rate: float, corrupt: float | None = None) -> None:
        """Line noise: garbage before frames the board sends with probability ``rate``, a
        damaged frame (either way) with probability ``corrupt``; ``noise(0)`` cleans the line."""
        self.line.noise(rate, corrupt)

    @property
    def events_pending(self) -> int:
        """Events not yet acknowledged (nor given up), the one being sent included."""
        return len(self._events)

    @property
    def vending(self) -> bool:
        return self._vend is not None

    # --- the line --------------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        for frame in self.rx.feed(data, self._now()):
            if not self.powered:
                return
            self._handle(frame)

    def _write(self, frame: bytes) -> None:
        if self.powered:
            self.line.write(frame)

    # --- requests --------------------------------------------------------------------------------

    def _handle(self, f: bf.Frame) -> None:
        if f.seq == 0:
            log.warning("board %s: frame with SEQ 0 ignored (cmd %02X)", self.name, f.cmd)
            return
        if f.cmd == bf.ACK:
            if len(f.payload) == 1 and self._awaiting == (f.seq, f.payload[0]):
                assert self._acked is not None
                self._acked.set()
            return
        if f.cmd == bf.STATUS:
            answer = self._nak(f, bf.BAD_PAYLOAD) if f.payload else self._status(f.seq)
        elif f.cmd == bf.RESULT:
            if len(f.payload) != 1:
                answer = self._nak(f, bf.BAD_PAYLOAD)
            else:
                answer = self._result(f.seq, f.payload[0])
        elif f.cmd in bf.REPEATABLE:
            if self._previous == (f.seq, f.cmd):
                self.stats.repeats += 1
                answer = self._result(f.seq, f.seq) if f.cmd == bf.VEND else self._previous_answer
            else:
                answer = self._act(f)
                if answer[4] == bf.ACK:  # only a request acted on is "the previous request"
                    self._previous = (f.seq, f.cmd)
                    self._previous_answer = answer
        else:
            answer = self._nak(f, bf.UNKNOWN_COMMAND)
        self.stats.answers += 1
        self._write(answer)

    def _act(self, f: bf.Frame) -> bytes:
        p = f.payload
        if f.cmd == bf.VEND:
            if len(p) != 2 or p[0] == 0:
                return self._nak(f, bf.BAD_PAYLOAD)
            if self._vend is not None:
                return self._nak(f, bf.BUSY)
            if p[0] > len(self.slots):
                return self._nak(f, bf.NO_SUCH_SLOT)
            if self.door_is_open:
                return self._nak(f, bf.DOOR_OPEN)
            self._start_vend(f.seq, p[0], bool(p[1] & 1))
        elif f.cmd == bf.UNLOCK:
            if len(p) != 1 or not 1 <= p[0] <= 60:
                return self._nak(f, bf.BAD_PAYLOAD)
            self._unlocked_until = self._now() + p[0]
        elif f.cmd == bf.DISPLAY:
            if len(p) < 2 or p[0] > 1 or len(p) - 2 > 32:
                return self._nak(f, bf.BAD_PAYLOAD)
            try:
                text = p[2:].decode("gb2312")
            except UnicodeDecodeError:
                return self._nak(f, bf.BAD_PAYLOAD)
            self._show(p[0], p[1], text)
        elif f.cmd == bf.SIGNAL:
            if len(p) != 2 or p[1] > 3:
                return self._nak(f, bf.BAD_PAYLOAD)
            self.light = p[1]
            self.signals.append(Signal(self._now(), p[0] * 10, p[1]))
        return bf.encode(f.seq, bf.ACK, bytes([f.cmd]))

    def _nak(self, f: bf.Frame, reason: int) -> bytes:
        return bf.encode(f.seq, bf.NAK, bytes([f.cmd, reason]))

    def _status(self, seq: int) -> bytes:
        flags = self.door_is_open | self._blind << 1 | (self._vend is not None) << 2
        last = self.memory.last_vend_seq
        found = self.memory.lookup(last) if last else None
        result = found[1] if found else bf.UNKNOWN
        payload = bytes([flags, len(self.slots), last, result, self.settings.firmware])
        return bf.encode(seq, bf.STATUS_ANSWER, payload)

    def _result(self, seq: int, vend_seq: int) -> bytes:
        slot, result = self.memory.lookup(vend_seq) or (0, bf.UNKNOWN)
        return bf.encode(seq, bf.RESULT_ANSWER, bytes([vend_seq, slot, result]))

    def _show(self, line: int, hold_s: int, text: str) -> None:
        if line == 0:
            self.display = [text, ""]
            self._display_gen = [self._display_gen[0] + 1, self._display_gen[1] + 1]
        else:
            self.display[1] = text
            self._display_gen[1] += 1
        self.display_history.append(Shown(self._now(), line + 1, text, hold_s))
        if hold_s and self._loop is not None:
            gen = self._display_gen[line]
            self._timers.append(self._loop.call_later(hold_s, self._expire, line, gen))

    def _expire(self, line: int, gen: int) -> None:
        if self._display_gen[line] == gen:
            self.display[line] = ""

    # --- the motor -------------------------------------------------------------------------------

    def _start_vend(self, seq: int, slot: int, detect: bool) -> None:
        self._vend = VendTruth(seq, slot, self._now())
        self.truth.vends.append(self._vend)
        self.memory.remember(seq, slot, bf.IN_PROGRESS)
        self._save()
        self._spawn(self._run_vend(self._vend, detect))

    async def _run_vend(self, vend: VendTruth, detect: bool) -> None:
        slot = self.slots[vend.slot - 1]
        turn = self.settings.turn_s
        if vend.slot in self._motor_faults:
            await asyncio.sleep(min(turn, 0.2))
            result = bf.MOTOR_FAULT
        elif vend.slot in self._jams:
            self._jams.discard(vend.slot)
            await asyncio.sleep(turn)
            result = bf.JAMMED
        elif self._cut_next_vend:
            self._cut_next_vend = False
            await asyncio.sleep(turn / 2)
            self.power_off()
            return
        else:
            await asyncio.sleep(turn)
            vend.dropped = slot.count > 0
            if vend.dropped:
                slot.count -= 1
                self.truth.dropped[vend.slot] += 1
            if not detect:
                result = bf.DELIVERED  # the turn completed; without the sensor that is all it knows
            elif self._blind:
                result = bf.SENSOR_FAULT
            else:
                result = bf.DELIVERED if vend.dropped else bf.NO_DROP
        vend.result = result
        vend.ended = self._now()
        self._vend = None
        self.memory.settle(vend.seq, result)
        self._save()
        log.info(
            "board %s: vend %d slot %d: %s", self.name, vend.seq, vend.slot, bf.RESULT_NAMES[result]
        )
        self._emit(bf.VEND_DONE, bytes([vend.seq, vend.slot, result]))

    # --- events ----------------------------------------------------------------------------------

    def _emit(self, cmd: int, payload: bytes) -> None:
        self._event_seq = self._event_seq % 255 + 1
        self._events.append((self._event_seq, cmd, payload))
        if self._events_ready is not None:
            self._events_ready.set()

    async def _send_events(self) -> None:
        """One event at a time, in order, each sent again until acknowledged (or given up)."""
        assert self._events_ready is not None
        assert self._acked is not None
        while True:
            await self._events_ready.wait()
            while self._events:
                seq, cmd, payload = self._events[0]
                self._awaiting = (seq, cmd)
                self._acked.clear()
                frame = bf.encode(seq, cmd, payload)
                for _ in range(1 + self.settings.event_resends):
                    self._write(frame)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.settings.event_retry_s):
                            await self._acked.wait()
                        break
                else:
                    self.stats.events_given_up += 1
                    log.warning(
                        "board %s: event %02X seq %d never acknowledged", self.name, cmd, seq
                    )
                self._awaiting = None
                if self._events and self._events[0][0] == seq:
                    self._events.popleft()
            self._events_ready.clear()

    # --- helpers ---------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("board %s: task failed", self.name, exc_info=exc)

    def _slot(self, slot: int) -> Slot:
        if not 1 <= slot <= len(self.slots):
            raise ValueError(f"no slot {slot} (1..{len(self.slots)})")
        return self.slots[slot - 1]

    def _save(self) -> None:
        save_state(self.settings.state_file, self.memory, self.slots)

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0
