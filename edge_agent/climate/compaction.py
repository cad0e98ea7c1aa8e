"""How climate records are folded when the outbox is over its cap: min/mean/max per sensor.

Climate supplies this to the outbox (``Compaction``); the outbox itself knows no event's meaning.
Only records are ever folded; alarms, faults and state changes are kept one by one.
"""

from __future__ import annotations

import collections
import statistics
from typing import Any

from edge_agent.outbox import Compaction
from edge_agent.wire import ClimateSummary, SensorSummary


def summarise(events: list[dict[str, Any]]) -> ClimateSummary:
    """min/mean/max per sensor of climate-record events (as stored JSON dicts)."""
    by_sensor: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for e in events:
        by_sensor[(e["payload"]["storeroom"], e["payload"]["sensor"])].append(e)
    sensors = []
    for (room, sensor), items in sorted(by_sensor.items()):
        temps = [i["payload"]["temperature_c"] for i in items]
        hums = [i["payload"]["humidity_pct"] for i in items]
        sensors.append(
            SensorSummary(
                storeroom=room,
                sensor=sensor,
                count=len(items),
                first_at=items[0]["occurred_at"],
                last_at=items[-1]["occurred_at"],
                temperature_min_c=min(temps),
                temperature_mean_c=round(statistics.fmean(temps), 3),
                temperature_max_c=max(temps),
                humidity_min_pct=min(hums),
                humidity_mean_pct=round(statistics.fmean(hums), 3),
                humidity_max_pct=max(hums),
            )
        )
    return ClimateSummary(
        window_start=events[0]["occurred_at"],
        window_end=events[-1]["occurred_at"],
        records=len(events),
        sensors=sensors,
    )


COMPACTION = Compaction(kind="climate.record", summary_kind="climate.summary", fold=summarise)
