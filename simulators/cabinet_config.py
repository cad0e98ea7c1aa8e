"""Configuration of ``edge-sim cabinet``: simulated dispensing boxes (board, reader, crowd).

See ``deploy/examples/cabinet-sim.toml`` and the docstring of ``simulators/cabinet.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from edge_agent.configfile import Strict, between, duplicates, load

Seconds = Annotated[float, between(0.001, 86_400)]
Probability = Annotated[float, between(0, 1)]


class SlotSim(Strict):
    #: The product in the slot, as ``show`` prints it (and the crowd's buttons, by default).
    label: str = ""
    capacity: Annotated[int, between(1, 999)] = 20
    #: Units loaded at start (default: full). A ``state_file`` that has counts wins over this.
    count: Annotated[int, between(0, 999)] | None = None

    @model_validator(mode="after")
    def _fits(self) -> SlotSim:
        if self.count is not None and self.count > self.capacity:
            raise ValueError(f"count {self.count} is more than the capacity {self.capacity}")
        return self


class BoardSettings(Strict):
    #: The path the agent opens: a symlink to the board's pseudo-terminal.
    link: Path
    firmware: Annotated[int, between(0, 255)] = 3
    #: How long a spiral turn takes (the document says 1 … 4 s; tests use ~0.05 s).
    turn_s: Annotated[float, between(0.01, 10)] = 1.5
    #: An unacknowledged event is sent again after this long, this many times.
    event_retry_s: Annotated[float, between(0.05, 5)] = 0.3
    event_resends: Annotated[int, between(0, 20)] = 5
    #: The board's non-volatile memory (last vends) and the slots' counts, kept across restarts.
    state_file: Path | None = None
    #: Seeds what is random: a unit falling during a power loss, line noise.
    seed: int = 0
    slots: list[SlotSim] = Field(min_length=1, max_length=255)


class ReaderSettings(Strict):
    #: The path the agent opens: a symlink to the reader's pseudo-terminal.
    link: Path
    format: Literal["hex-line", "binary", "id-line"] = "hex-line"
    #: Send the UID least significant byte first (some readers do).
    uid_reversed: bool = False
    #: hex-line only: lower-case digits, a separator between bytes, the line end.
    lowercase: bool = False
    separator: Literal["", " ", ":"] = ""
    line_end: Literal["\r\n", "\r", "\n"] = "\r\n"
    #: binary only: the TYPE byte (1: ISO 14443 A).
    card_type: Annotated[int, between(0, 255)] = 1
    #: A card left on the reader is reported again this often.
    repeat_s: Annotated[float, between(0.05, 10)] = 0.5


class Mix(Strict):
    """Relative weights of who comes to the box (a kind whose pool is empty never comes)."""

    registered: Annotated[float, between(0, 1000)] = 80
    unregistered: Annotated[float, between(0, 1000)] = 10
    lost: Annotated[float, between(0, 1000)] = 5
    technician: Annotated[float, between(0, 1000)] = 5


class CrowdSettings(Strict):
    seed: int = 1
    #: Mean arrivals (Poisson) per simulated hour.
    people_per_hour: Annotated[float, between(0.01, 1_000_000)] = 20
    #: Simulated seconds per real second, for the arrivals only: a person at the box acts in
    #: real time, since the box and the agent do.
    time_scale: Annotated[float, between(0.001, 1_000_000)] = 1.0
    #: Stop after this many people (default: never).
    people: Annotated[int, between(1, 10_000_000)] | None = None
    #: Card UIDs (hex) or ID numbers, as the box's reader reads them.
    registered: list[str] = Field(default_factory=list)
    lost: list[str] = Field(default_factory=list)
    technicians: list[str] = Field(default_factory=list)
    #: How many cards nobody registered to make up from the seed (ID numbers at an id-line
    #: reader, with birth years in ``born`` and the ``region`` code).
    unregistered: Annotated[int, between(0, 100_000)] = 5
    born: tuple[int, int] = (1960, 2005)
    region: str = Field(default="110105", pattern=r"^[1-8]\d{5}$")
    mix: Mix = Field(default_factory=Mix)
    #: How long a person waits for the display to answer what they did.
    read_s: Seconds = 3.0
    #: Time to choose a product once the display answered.
    think_s: Annotated[float, between(0, 600)] = 1.0
    #: How long a person waits for a unit to fall before walking away.
    give_up_s: Seconds = 15.0
    #: Some leave their card on the reader for ``hold_s``.
    hold_probability: Probability = 0.1
    hold_s: Seconds = 2.0
    #: A technician's time with the door open.
    refill_s: Annotated[float, between(0, 3600)] = 2.0
    #: A person who reads one of these on the display presses the confirm button.
    confirm_words: list[str] = Field(default_factory=lambda: ["确认", "confirm"])

    @model_validator(mode="after")
    def _years(self) -> CrowdSettings:
        lo, hi = self.born
        if not 1900 <= lo <= hi <= 2099:
            raise ValueError("born must be [first year, last year] within 1900..2099")
        return self


SLOT_FAULTS = ("jam", "empty", "motor")


class FaultSim(Strict):
    """A fault the simulator causes by itself, so that a demo or a long run has its incidents
    without anyone typing them: ``jam`` (the next vend of ``slot`` jams), ``empty`` (``slot``
    runs out), ``motor`` (a motor fault on ``slot``, mended after ``duration_s`` if given),
    ``force_door`` (the door is forced open once no vend is running, and shut again after
    ``duration_s``, 3 s by default)."""

    #: Seconds after the box's script starts (see ``BoxSim.wait_for_agent``).
    at_s: Annotated[float, between(0, 366 * 86_400)]
    kind: Literal["jam", "empty", "motor", "force_door"]
    slot: Annotated[int, between(1, 255)] | None = None
    duration_s: Annotated[float, between(0.1, 86_400)] | None = None

    @model_validator(mode="after")
    def _slot(self) -> FaultSim:
        if self.kind in SLOT_FAULTS and self.slot is None:
            raise ValueError(f"a {self.kind} fault needs a slot")
        if self.kind not in SLOT_FAULTS and self.slot is not None:
            raise ValueError(f"a {self.kind} fault is not a slot's; give no slot")
        if self.kind in ("jam", "empty") and self.duration_s is not None:
            raise ValueError(f"a {self.kind} fault has no duration")
        return self


class BoxSim(Strict):
    id: str = Field(min_length=1, max_length=64)
    board: BoardSettings
    #: Product button n is ``products[n-1]`` (as in the agent's box); default: the slots'
    #: distinct labels in order. One product: no button to press (except on an open box).
    products: list[str] = Field(default_factory=list, max_length=16)
    #: No reader: an open box, where a person presses a product button.
    reader: ReaderSettings | None = None
    crowd: CrowdSettings | None = None
    #: Faults caused on schedule, in seconds from the start of the box's script.
    faults: list[FaultSim] = Field(default_factory=list)
    #: The box's script (its crowd and its faults' clock) starts once an agent has written to
    #: its display, that is, taken the box into service; otherwise when the simulator starts.
    #: Nobody walks up to a box that is still dark, and a fault at 12 s stays 12 s into the
    #: crowd however long the agent took to find the box.
    wait_for_agent: bool = False

    @model_validator(mode="after")
    def _fault_slots(self) -> BoxSim:
        slots = len(self.board.slots)
        for fault in self.faults:
            if fault.slot is not None and fault.slot > slots:
                raise ValueError(f"{fault.kind} on slot {fault.slot}: the board has {slots} slots")
        return self

    @property
    def buttons(self) -> list[int]:
        """The product buttons a person chooses from."""
        products = self.products or list(dict.fromkeys(s.label for s in self.board.slots))
        return list(range(1, len(products) + 1))


class CabinetSimConfig(Strict):
    boxes: list[BoxSim] = Field(min_length=1)

    @classmethod
    def cross_check(cls, data: dict[str, Any]) -> Iterable[tuple[str, str]]:
        boxes = data.get("boxes")
        if isinstance(boxes, list):
            ids = [str(b.get("id")) for b in boxes if isinstance(b, dict)]
            yield from duplicates("boxes", ids)


def load_cabinet_config(path: Path | str) -> CabinetSimConfig:
    return load(path, CabinetSimConfig)
