"""Simulated dispensing boxes: ``edge-sim cabinet --config FILE [--interactive]``.

Each box is a main board (``BoardSim``, ``cabinet_board.py``) on its own pseudo-terminal, an
optional card reader (``ReaderSim``, ``card_reader_sim.py``) on another, and an optional scripted
crowd (``Crowd``, ``crowd.py``). The agent opens the symlinks named in the file, as it would
``/dev/serial/by-id/...``. Everything is written from ``docs/protocols/cabinet.md`` alone and
shares no code with the agent's drivers, so a misreading of the document fails a test instead of
cancelling out.

An example file (see also ``deploy/examples/cabinet-sim.toml``)::

    [[boxes]]
    id = "xiaozhuang"
    products = ["condom-m", "condom-l"]      # product button n = products[n-1]

    [boxes.board]
    link = "/tmp/edge-sim-box-xiaozhuang"    # the agent opens this
    turn_s = 1.5                             # one spiral turn
    state_file = "/tmp/edge-sim-box-xiaozhuang.json"   # memory of the last vends, counts

    [[boxes.board.slots]]
    label = "condom-m"
    capacity = 20

    [[boxes.board.slots]]
    label = "condom-l"
    capacity = 20
    count = 3

    [boxes.reader]                           # none: an open box, people press a button
    link = "/tmp/edge-sim-reader-xiaozhuang"
    format = "hex-line"                      # or "binary", "id-line"

    [boxes.crowd]                            # none: only what you type or a test does
    seed = 7
    people_per_hour = 12
    time_scale = 60                          # arrivals 60 times faster than the clock
    registered = ["04A1B2C3", "04112233445566"]
    technicians = ["DEADBEEF"]
    unregistered = 3

    [[boxes.faults]]                         # incidents on schedule, from the script's start
    at_s = 12
    kind = "jam"                             # or "empty", "motor" (slot); "force_door"
    slot = 1

A box with ``wait_for_agent = true`` starts its script (crowd and faults) only once an agent has
written to its display. The interactive mode reads commands on stdin (``help`` lists them) and
acts on one box at a time (``box ID`` switches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from simulators import cabinet_frames as bf
from simulators.cabinet_board import BoardSim
from simulators.cabinet_config import (
    BoardSettings,
    BoxSim,
    CabinetSimConfig,
    CrowdSettings,
    FaultSim,
    ReaderSettings,
    SlotSim,
    load_cabinet_config,
)
from simulators.cabinet_state import GroundTruth, Shown, Signal, Slot, VendTruth
from simulators.card_reader_sim import ReaderSim
from simulators.crowd import Crowd, Visit

__all__ = [
    "BoardSettings",
    "BoardSim",
    "BoxSim",
    "CabinetSim",
    "CabinetSimConfig",
    "Console",
    "Crowd",
    "CrowdSettings",
    "FaultSim",
    "GroundTruth",
    "ReaderSettings",
    "ReaderSim",
    "Shown",
    "Signal",
    "Slot",
    "SlotSim",
    "VendTruth",
    "Visit",
    "cause",
    "load_cabinet_config",
    "run_faults",
    "serve",
]

log = logging.getLogger(__name__)

LIGHTS = ("off", "green", "red", "amber")

HELP = """\
swipe CARD            a card (hex UID, or an ID number at an id-line reader) read once
hold CARD SECONDS     a card left on the reader
press N|ok|cancel     a product button (1..16), confirm or cancel
door open|close|force open (only while unlocked), close, or force the door
jam SLOT              the next vend of SLOT jams
empty SLOT            SLOT has nothing left
refill SLOT [N]       put N units (default: to capacity) in SLOT
take SLOT N           N units leave SLOT by hand, unrecorded (a count will find it)
motor SLOT on|off     a motor fault on SLOT
blind on|off          the drop sensor is blind
power off|on|cut      power; cut: lose power in the middle of the next vend
noise RATE            line noise, 0..1 (0: clean)
show                  display, slots, door, last vends, what really happened
box ID                act on another box
help, quit"""


@dataclass
class Box:
    config: BoxSim
    board: BoardSim
    reader: ReaderSim | None
    crowd: Crowd | None


class CabinetSim:
    """Every box of the configuration, started and stopped together."""

    def __init__(
        self, config: CabinetSimConfig, on_visit: Callable[[Visit], None] | None = None
    ) -> None:
        self.config = config
        self.boxes: dict[str, Box] = {}
        for spec in config.boxes:
            board = BoardSim(spec.board, spec.id)
            reader = ReaderSim(spec.reader, spec.id) if spec.reader is not None else None
            crowd = (
                Crowd(spec.crowd, board, reader, spec.buttons, on_visit)
                if spec.crowd is not None
                else None
            )
            self.boxes[spec.id] = Box(spec, board, reader, crowd)
        self._scripts: list[asyncio.Task[None]] = []

    async def start(self) -> list[str]:
        """Start every device and each box's script (crowd, scheduled faults); return a line
        per device saying where the agent finds it. If one cannot start, whatever did is
        stopped again."""
        lines = []
        try:
            for box in self.boxes.values():
                box.board.start()
                lines.append(
                    f"box {box.config.id} board {box.board.link} ({box.board.device_path})"
                )
                if box.reader is not None:
                    box.reader.start()
                    lines.append(
                        f"box {box.config.id} reader {box.reader.link} "
                        f"{box.reader.settings.format} ({box.reader.device_path})"
                    )
            loop = asyncio.get_running_loop()
            for box in self.boxes.values():
                if box.crowd is not None or box.config.faults:
                    task = loop.create_task(self._script(box), name=f"script-{box.config.id}")
                    task.add_done_callback(self._script_done)
                    self._scripts.append(task)
        except BaseException:
            await self.stop()
            raise
        return lines

    @staticmethod
    async def _script(box: Box) -> None:
        """The box's crowd and scheduled faults, from when the script starts (at once, or once
        an agent has written to the display)."""
        if box.config.wait_for_agent:
            await _until(lambda: bool(box.board.display_history))
            log.info("box %s: an agent took it into service; its script starts", box.config.id)
        async with asyncio.TaskGroup() as group:
            if box.config.faults:
                group.create_task(run_faults(box.board, box.config.faults))
            if box.crowd is not None:
                group.create_task(box.crowd.run())

    @staticmethod
    def _script_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a box's script stopped: %s", exc, exc_info=exc)

    async def stop(self) -> None:
        """Stop scripts and devices; the symlinks are removed. Safe to call again."""
        scripts, self._scripts = self._scripts, []
        for task in scripts:
            task.cancel()
        if scripts:
            await asyncio.wait(scripts)
        for box in self.boxes.values():
            try:
                await box.board.stop()
            finally:
                if box.reader is not None:
                    await box.reader.stop()


async def run_faults(board: BoardSim, faults: Sequence[FaultSim]) -> None:
    """Cause each fault at its time, counted from now; returns when the last has run its
    course."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(fault: FaultSim) -> None:
        await asyncio.sleep(max(0.0, start + fault.at_s - loop.time()))
        await cause(board, fault)

    async with asyncio.TaskGroup() as group:
        for fault in faults:
            group.create_task(one(fault))


async def cause(board: BoardSim, fault: FaultSim) -> None:
    """One scheduled fault, now; one with a duration is undone after it."""
    where = f" on slot {fault.slot}" if fault.slot else ""
    log.warning("board %s: scheduled %s%s", board.name, fault.kind, where)
    if fault.kind == "jam":
        assert fault.slot is not None
        board.jam(fault.slot)
    elif fault.kind == "empty":
        assert fault.slot is not None
        board.empty(fault.slot)
    elif fault.kind == "motor":
        assert fault.slot is not None
        board.motor_fault(fault.slot, True)
        if fault.duration_s is not None:
            await asyncio.sleep(fault.duration_s)
            board.motor_fault(fault.slot, False)
    else:
        # Forced while the motor turns, the door would cut into a take; someone forcing a
        # box waits until nobody is at it. A door already open (a technician) is left alone.
        await _until(lambda: not board.vending)
        if board.door_open(force=True):
            await asyncio.sleep(3.0 if fault.duration_s is None else fault.duration_s)
            board.door_close()


async def _until(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds: what the board does has no event to wait on."""
    while True:
        if check():
            return
        await asyncio.sleep(0.05)


class Console:
    """The interactive commands, one line at a time; ``execute`` returns what to print."""

    def __init__(self, sim: CabinetSim) -> None:
        self.sim = sim
        self.current = next(iter(sim.boxes))
        self.quit = False

    @property
    def box(self) -> Box:
        return self.sim.boxes[self.current]

    async def execute(self, line: str) -> str:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            return f"error: {exc}"
        if not words:
            return ""
        command, args = words[0].lower(), words[1:]
        try:
            return await self._run(command, args)
        except IndexError:
            return f"error: {command}: missing argument (help lists the commands)"
        except (ValueError, RuntimeError) as exc:
            return f"error: {exc} (help lists the commands)"

    async def _run(self, command: str, args: list[str]) -> str:
        board, reader = self.box.board, self.box.reader
        if command == "help":
            return HELP
        if command == "quit":
            self.quit = True
            return "bye"
        if command == "box":
            if args[0] not in self.sim.boxes:
                raise ValueError(f"no box {args[0]!r} (known: {', '.join(self.sim.boxes)})")
            self.current = args[0]
            return f"box {self.current}"
        if command in ("swipe", "hold"):
            if reader is None:
                raise ValueError(f"box {self.current} has no reader (press a button)")
            if command == "swipe":
                return "sent " + reader.swipe(args[0]).hex(" ").upper()
            reader.hold_in_background(args[0], float(args[1]))
            return f"holding {args[0]} for {float(args[1])} s"
        if command == "press":
            return "pressed" if board.press(args[0]) else "the board has no power"
        if command == "door":
            action = args[0].lower()
            if action == "close":
                return "door closed" if board.door_close() else "the door is not open"
            if action in ("open", "force"):
                opened = board.door_open(force=action == "force")
                return "door open" if opened else "the door does not open (locked, or open)"
            raise ValueError("door open|close|force")
        if command in ("jam", "empty"):
            (board.jam if command == "jam" else board.empty)(int(args[0]))
            return f"slot {args[0]}: {'jams next time' if command == 'jam' else 'empty'}"
        if command == "refill":
            added = board.refill(int(args[0]), int(args[1]) if len(args) > 1 else None)
            return f"slot {args[0]}: {added} unit(s) put in"
        if command == "take":
            taken = board.take_out(int(args[0]), int(args[1]))
            return f"slot {args[0]}: {taken} unit(s) taken out by hand"
        if command == "motor":
            board.motor_fault(int(args[0]), self._on(args[1]))
            return f"slot {args[0]}: motor fault {args[1]}"
        if command == "blind":
            board.blind_drop_sensor(self._on(args[0]))
            return f"drop sensor blind {args[0]}"
        if command == "power":
            action = args[0].lower()
            if action == "cut":
                board.power_loss_mid_vend()
                return "the next vend loses the power halfway"
            if self._on(action):
                board.power_on()
            else:
                board.power_off()
            return f"power {action}"
        if command == "noise":
            board.noise(float(args[0]))
            return f"noise {float(args[0])}"
        if command == "show":
            return self.show()
        raise ValueError(f"unknown command {command!r}")

    @staticmethod
    def _on(word: str) -> bool:
        if word.lower() not in ("on", "off"):
            raise ValueError(f"on or off, not {word!r}")
        return word.lower() == "on"

    def show(self) -> str:
        box, board = self.box, self.box.board
        lines = [
            f"box {self.current}: power {'on' if board.powered else 'OFF'}, "
            f"door {'open' if board.door_is_open else 'closed'}"
            f"{', unlocked' if board.unlocked else ''}, "
            f"light {LIGHTS[board.light]}{', vending' if board.vending else ''}",
            f"display 1: {board.display[0]}",
            f"display 2: {board.display[1]}",
        ]
        for i, slot in enumerate(board.slots, 1):
            lines.append(f"slot {i} {slot.label}: {slot.count}/{slot.capacity}")
        memory = ", ".join(
            f"{seq:02X}:slot {slot} {bf.RESULT_NAMES.get(result, hex(result))}"
            for seq, slot, result in board.memory.vends
        )
        lines.append(f"last vends: {memory or 'none'}")
        truth = board.truth
        lines.append(
            f"really: {len(truth.vends)} vend(s) run, {truth.total_dropped()} unit(s) fell "
            f"{dict(truth.dropped)}, {len(truth.door_openings)} door opening(s)"
        )
        if box.crowd is not None:
            fell = sum(v.unit_fell for v in box.crowd.visits)
            lines.append(f"crowd: {len(box.crowd.visits)} visit(s), {fell} got a unit")
        return "\n".join(lines)


async def serve(
    config: CabinetSimConfig,
    ready: Callable[[list[str]], None],
    interactive: bool = False,
    out: Callable[[str], None] | None = None,
) -> None:
    """Run until cancelled (Ctrl-C), SIGTERM, or ``quit`` / end of input in interactive mode;
    either way the devices stop and their symlinks are removed."""
    out = out or _print
    sim = CabinetSim(config, on_visit=lambda visit: out(visit.summary()))
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    on_sigterm = False
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, stopping.set)
            on_sigterm = True
    console_task: asyncio.Task[None] | None = None
    try:
        ready(await sim.start())
        if interactive:
            console_task = loop.create_task(_console(Console(sim), out, stopping))
        await stopping.wait()
    finally:
        try:
            if console_task is not None:
                console_task.cancel()
                await asyncio.wait([console_task])
            await sim.stop()
        finally:
            if on_sigterm:
                loop.remove_signal_handler(signal.SIGTERM)


def _print(text: str) -> None:
    print(text, flush=True)


async def _console(console: Console, out: Callable[[str], None], stopping: asyncio.Event) -> None:
    try:
        async for line in _stdin_lines():
            text = await console.execute(line)
            if text:
                out(text)
            if console.quit:
                break
    finally:
        stopping.set()


async def _stdin_lines() -> AsyncIterator[str]:
    """Lines of stdin without blocking the loop (a pipe or a terminal; a plain file is read
    at once)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except ValueError:  # a regular file
        for line in sys.stdin.read().splitlines():
            yield line
        return
    while line_bytes := await reader.readline():
        yield line_bytes.decode("utf-8", errors="replace").strip()
