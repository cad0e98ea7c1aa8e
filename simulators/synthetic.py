"""Plausible numbered events for load and failure tests (``edge-sim inject``, ``bench/``)."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel

from edge_agent.wire import ClimateRecord, Dispense

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
        slot=i % 8,
        product="condom-53mm",
        batch="B2026-07",
        quantity=1,
        card=f"{i % 997:016x}",
    )


def events(count: int, kind: str) -> Iterator[tuple[str, BaseModel]]:
    """``climate``, ``dispense``, or ``mixed`` (a dispense every 43rd event)."""
    for i in range(count):
        if kind == "dispense" or (kind == "mixed" and i % 43 == 42):
            yield "cabinet.dispense", dispense(i)
        else:
            yield "climate.record", record(i)
