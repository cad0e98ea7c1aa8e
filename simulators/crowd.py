"""A scripted crowd at a simulated dispensing box: people who come, swipe, read, press, wait.

Deterministic from a seed: who comes when (Poisson arrivals at ``people_per_hour`` of simulated
time, ``time_scale`` times faster than the clock), with which card (registered villagers, lost
cards, cards nobody registered, technicians; valid ID numbers at an ID card reader) and which
product button. A person knows nothing of quotas: they swipe (or, at an open box without a
reader, press a product button), wait for the display to answer, press a product button when the
box has several products, press confirm if the display asks for it, and wait for a unit to fall
or give up. Each visit is recorded (what the display said, whether a unit fell) for the demo and
tests; whether a unit fell comes from the board's ground truth, as a person sees the tray.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from simulators.cabinet_board import BoardSim
from simulators.cabinet_config import CrowdSettings
from simulators.card_reader_sim import ReaderSim, encode

log = logging.getLogger(__name__)

KINDS = ("registered", "unregistered", "lost", "technician")
ID_WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]
ID_CHECK = "10X98765432"


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of an ID number's first 17 digits."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"need 17 digits, not {first17!r}")
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def valid_id_number(number: str) -> bool:
    return (
        len(number) == 18
        and number[:17].isdigit()
        and id_check_char(number[:17]) == number[17].upper()
    )


def make_id_number(
    rng: random.Random, region: str = "110105", born: tuple[int, int] = (1960, 2005)
) -> str:
    """A valid ID number: the region, a birth date in the ``born`` years, a serial, the check."""
    year = rng.randint(*born)
    day = dt.date(year, 1, 1) + dt.timedelta(days=rng.randrange(366 if year % 4 == 0 else 365))
    first17 = f"{region}{day:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + id_check_char(first17)


def make_uid(rng: random.Random) -> str:
    """A card UID: half 4-byte (random), half 7-byte NXP (first byte 04)."""
    if rng.random() < 0.5:
        return rng.randbytes(4).hex().upper()
    return "04" + rng.randbytes(6).hex().upper()


def card_pool(settings: CrowdSettings, id_cards: bool) -> dict[str, list[str]]:
    """The cards people bring, by kind; ``unregistered`` ones are made up from the seed."""
    rng = random.Random(f"{settings.seed}-pool")
    made_up = [
        make_id_number(rng, settings.region, settings.born) if id_cards else make_uid(rng)
        for _ in range(settings.unregistered)
    ]
    return {
        "registered": list(settings.registered),
        "unregistered": made_up,
        "lost": list(settings.lost),
        "technician": list(settings.technicians),
    }


@dataclass(frozen=True)
class Arrival:
    index: int
    #: Simulated seconds from the start of the crowd.
    at_s: float
    #: (kind, card); None at an open box without a reader.
    card: tuple[str, str] | None
    #: The product button to press; None when there is nothing to choose.
    button: int | None
    #: Leaves the card on the reader for ``hold_s``.
    hold: bool


def arrivals(
    settings: CrowdSettings, pool: dict[str, list[str]], buttons: list[int], reader: bool
) -> Iterator[Arrival]:
    """Who comes when, with what: the same sequence for the same seed, whatever the timing."""
    rng = random.Random(settings.seed)
    weights = {k: getattr(settings.mix, k) if pool[k] else 0.0 for k in KINDS}
    if reader and not any(weights.values()):
        raise ValueError(
            "the crowd has no cards to bring (registered, unregistered, lost, technicians)"
        )
    kinds = [k for k in KINDS if weights[k]]
    rate = settings.people_per_hour / 3600
    at, index = 0.0, 0
    while True:
        at += rng.expovariate(rate)
        kind = rng.choices(kinds, [weights[k] for k in kinds])[0] if reader else ""
        card = (kind, rng.choice(pool[kind])) if reader else None
        choice = rng.choice(buttons) if buttons else 1
        hold = rng.random() < settings.hold_probability
        several = len(buttons) > 1 or not reader
        yield Arrival(index, at, card, choice if several else None, hold and reader)
        index += 1


@dataclass
class Visit:
    arrival: Arrival
    started: float
    ended: float = 0.0
    #: Every line the display showed during the visit, in order.
    display: list[str] = field(default_factory=list)
    pressed: list[str] = field(default_factory=list)
    #: Units that fell into the tray during the visit.
    units: int = 0
    gave_up: bool = False
    door_opened: bool = False

    @property
    def unit_fell(self) -> bool:
        return self.units > 0

    def summary(self) -> str:
        who = "open box" if self.arrival.card is None else " ".join(self.arrival.card)
        said = " | ".join(self.display) or "(nothing)"
        outcome = f"{self.units} unit(s) fell" if self.units else "nothing fell"
        extra = ", door opened" if self.door_opened else ""
        return f"person {self.arrival.index} [{who}] saw: {said}; {outcome}{extra}"


class Crowd:
    """People at one box, one at a time (the next waits while someone is at the box)."""

    def __init__(
        self,
        settings: CrowdSettings,
        board: BoardSim,
        reader: ReaderSim | None,
        buttons: list[int],
        on_visit: Callable[[Visit], None] | None = None,
    ) -> None:
        self.settings = settings
        self.board = board
        self.reader = reader
        self.buttons = buttons
        self.on_visit = on_visit
        id_cards = reader is not None and reader.settings.format == "id-line"
        self.pool = card_pool(settings, id_cards)
        if reader is not None:
            for kind, cards in self.pool.items():
                for card in cards:
                    try:
                        encode(reader.settings, card)
                    except ValueError as exc:
                        raise ValueError(f"crowd {kind} card {card!r}: {exc}") from None
        self.visits: list[Visit] = []

    def arrivals(self) -> Iterator[Arrival]:
        return arrivals(self.settings, self.pool, self.buttons, self.reader is not None)

    async def run(self) -> None:
        """Bring people at their arrival times (scaled) until ``people`` came or cancelled."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for arrival in self.arrivals():
            if self.settings.people is not None and arrival.index >= self.settings.people:
                return
            delay = start + arrival.at_s / self.settings.time_scale - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.visit(arrival)

    async def visit(self, arrival: Arrival) -> Visit:
        """One person at the box, in real time."""
        loop = asyncio.get_running_loop()
        board, s = self.board, self.settings
        visit = Visit(arrival, loop.time())
        shown_from = len(board.display_history)
        dropped_from = board.truth.total_dropped()
        if arrival.card is None:
            await self._press(visit, str(arrival.button or 1))
        else:
            kind, card = arrival.card
            answered = await self._card(visit, card, arrival.hold)
            if kind == "technician":
                if await self._until(lambda: board.unlocked, s.give_up_s) and board.door_open():
                    visit.door_opened = True
                    for slot in range(1, len(board.slots) + 1):
                        board.refill(slot)
                    await asyncio.sleep(s.refill_s)
                    board.door_close()
            elif answered and arrival.button is not None:
                await asyncio.sleep(s.think_s)
                await self._press(visit, str(arrival.button))
        if any(word in line for line in board.display for word in s.confirm_words):
            await self._press(visit, "ok")
        if not visit.door_opened:
            fell = await self._until(
                lambda: board.truth.total_dropped() > dropped_from, s.give_up_s
            )
            visit.gave_up = not fell
        visit.units = board.truth.total_dropped() - dropped_from
        visit.display = [shown.text for shown in board.display_history[shown_from:]]
        visit.ended = loop.time()
        self.visits.append(visit)
        log.info("%s", visit.summary())
        if self.on_visit is not None:
            self.on_visit(visit)
        return visit

    async def _card(self, visit: Visit, card: str, hold: bool) -> bool:
        """Swipe (or leave the card on the reader); swipe once more if the display stays
        silent. True when the display answered."""
        assert self.reader is not None
        for attempt in range(2):
            shown = len(self.board.display_history)
            if hold and attempt == 0:
                self.reader.hold_in_background(card, self.settings.hold_s)
                visit.pressed.append(f"hold {card}")
            else:
                self.reader.swipe(card)
                visit.pressed.append(f"swipe {card}")
            if await self._display_after(shown):
                return True
        return False

    async def _press(self, visit: Visit, button: str) -> bool:
        shown = len(self.board.display_history)
        self.board.press(button)
        visit.pressed.append(button)
        return await self._display_after(shown)

    async def _display_after(self, shown: int) -> bool:
        """Whether the display shows something new (past ``shown`` entries) within ``read_s``."""
        return await self._until(
            lambda: len(self.board.display_history) > shown, self.settings.read_s
        )

    @staticmethod
    async def _until(check: Callable[[], bool], within_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not check():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True
