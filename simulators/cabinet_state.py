"""What a simulated box's main board holds: slots, memory of the last vends, what it showed,
and the ground truth of what physically happened; the JSON state file that keeps the memory and
the slots' counts across a restart of the simulator.

The state file: ``{"last_vend_seq": 42, "vends": [[42, 3, 0]], "counts": [20, 19, 3]}`` (vends
are ``[seq, slot, result]``, oldest first, at most 8; ``counts`` one per slot, optional).
"""

from __future__ import annotations

import json
import os
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from simulators import cabinet_frames as bf

MEMORY_SIZE = 8


@dataclass
class Slot:
    label: str
    capacity: int
    count: int


@dataclass(frozen=True)
class Shown:
    """One DISPLAY the board acted on (``line`` 1 or 2)."""

    at: float
    line: int
    text: str
    hold_s: int


@dataclass(frozen=True)
class Signal:
    at: float
    beep_ms: int
    light: int


@dataclass
class VendTruth:
    """A vend the motor ran, and whether a unit really fell (whatever the board reported)."""

    seq: int
    slot: int
    started: float
    result: int = bf.IN_PROGRESS
    dropped: bool = False
    ended: float | None = None


@dataclass
class GroundTruth:
    vends: list[VendTruth] = field(default_factory=list)
    #: Units that physically fell, and units a technician put in, per slot.
    dropped: Counter[int] = field(default_factory=Counter)
    refilled: Counter[int] = field(default_factory=Counter)
    #: Units taken out by hand (lost, stolen, spoiled), per slot: no vend, no event.
    taken_out: Counter[int] = field(default_factory=Counter)
    #: (time, forced) of each door opening.
    door_openings: list[tuple[float, bool]] = field(default_factory=list)

    def total_dropped(self) -> int:
        return sum(self.dropped.values())


@dataclass
class Memory:
    """What the board keeps in non-volatile memory: its last vends and the last VEND's SEQ."""

    last_vend_seq: int = 0
    vends: deque[tuple[int, int, int]] = field(default_factory=lambda: deque(maxlen=MEMORY_SIZE))

    def remember(self, seq: int, slot: int, result: int) -> None:
        self.last_vend_seq = seq
        self.vends.append((seq, slot, result))

    def settle(self, seq: int, result: int) -> None:
        for i in range(len(self.vends) - 1, -1, -1):
            if self.vends[i][0] == seq:
                self.vends[i] = (seq, self.vends[i][1], result)
                return

    def lookup(self, seq: int) -> tuple[int, int] | None:
        """(slot, result) of the newest remembered vend with this SEQ."""
        for s, slot, result in reversed(self.vends):
            if s == seq:
                return slot, result
        return None

    def interrupt(self) -> int:
        """At power-up: a vend still in progress was cut by the power loss."""
        cut = 0
        for i, (seq, slot, result) in enumerate(self.vends):
            if result == bf.IN_PROGRESS:
                self.vends[i] = (seq, slot, bf.INTERRUPTED)
                cut += 1
        return cut


@dataclass
class Stats:
    answers: int = 0
    repeats: int = 0
    events_given_up: int = 0


def load_state(path: Path | None, memory: Memory, slots: list[Slot]) -> None:
    """Fill ``memory`` and the slots' counts from the state file, if there is one."""
    if path is None or not path.exists():
        return
    data = json.loads(path.read_text())
    memory.last_vend_seq = int(data.get("last_vend_seq", 0))
    for seq, slot, result in data.get("vends", [])[-MEMORY_SIZE:]:
        memory.vends.append((int(seq), int(slot), int(result)))
    counts = data.get("counts")
    if isinstance(counts, list) and len(counts) == len(slots):
        for s, count in zip(slots, counts, strict=True):
            s.count = min(s.capacity, int(count))


def save_state(path: Path | None, memory: Memory, slots: list[Slot]) -> None:
    """Write the state file (atomically: a power loss leaves the old one or the new one)."""
    if path is None:
        return
    data = {
        "last_vend_seq": memory.last_vend_seq,
        "vends": [list(v) for v in memory.vends],
        "counts": [s.count for s in slots],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
