"""Plausible numbered events for load and failure tests (``edge-sim inject``, ``bench/``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date

from pydantic import BaseModel

from edge_agent import pseudonym
from edge_agent.wire import ClimateRecord, Dispense

#: The key synthetic cards are hashed with: real pseudonyms, of made-up cards.
KEY = pseudonym.CardKey(bytes(range(32)))
_CARDS = [pseudonym.of_uid(KEY, f"{0x04A10000 + n:08X}") for n in range(997)]

#: Six sensors, two in each of the three storerooms, as at a county station.
SENSORS = [(f"no{r}", f"no{r}-{s}") for r in (1, 2, 3) for s in "ab"]


def record(i: int) -> ClimateRecord:
    """The i-th reading, going round the six sensors."""
    room, sensor = SENSORS[i % len(SENSORS)]
    t = 18.0 + (i % 120) / 10
    return ClimateRecord(
        storeroom=room,
        sensor=sensor,
        temperature_c=t,
        humidity_pct=55.0,
        raw_temperature_c=t,
        raw_humidity_pct=55.0,
    )


def dispense(i: int) -> Dispense:
    return Dispense(
        box="box-1",
        transaction=uuid.UUID(int=i),
        slot=1 + i % 8,
        product="condom-53mm",
        product_group="condoms",
        batch="B2026-07",
        expiry=date(2029, 6, 30),
        card=_CARDS[i % len(_CARDS)],
        remaining=max(0, 40 - i % 41),
    )


def events(count: int, kind: str) -> Iterator[tuple[str, BaseModel]]:
    """``climate``, ``dispense``, or ``mixed`` (a dispense every 43rd event)."""
    for i in range(count):
        if kind == "dispense" or (kind == "mixed" and i % 43 == 42):
            yield "cabinet.dispense", dispense(i)
        else:
            yield "climate.record", record(i)
