"""Every climate record of a site (or one storeroom) over a window, as CSV for a spreadsheet.

One row per record with its corrected and raw values, and one per summary (records an agent
folded into min/mean/max when its outbox ran full) with its mean, range and count, in time
order per storeroom. Times in UTC and in the server's zone; UTF-8 with a byte-order mark so
Excel in China reads the Chinese headers as they are. Rows are streamed from the database, so
five years of a site never sit in memory.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from server.clisupport import csv_file
from server.i18n import Language, t
from server.store.db import utc
from server.store.schema import climate_records, climate_summaries

#: Rows fetched from the database at a time.
CHUNK = 5000


@dataclass(frozen=True)
class Written:
    records: int
    summaries: int


def _where(
    table: sa.Table, at: Any, site: str, room: str | None, start: datetime, end: datetime
) -> Any:
    found = sa.and_(table.c.site_id == site, at >= utc(start), at < utc(end))
    return found if room is None else sa.and_(found, table.c.storeroom == room)


def _records(
    conn: sa.Connection, site: str, room: str | None, start: datetime, end: datetime
) -> Iterator[tuple[Any, ...]]:
    r = climate_records
    query = (
        sa.select(
            r.c.storeroom, r.c.occurred_at, r.c.sensor, r.c.serial, r.c.temperature_c,
            r.c.humidity_pct, r.c.raw_temperature_c, r.c.raw_humidity_pct, r.c.quality,
            r.c.clock_synced, r.c.agent_id, r.c.seq,
        )
        .where(_where(r, r.c.occurred_at, site, room, start, end))
        .order_by(r.c.storeroom, r.c.occurred_at, r.c.id)
        .execution_options(yield_per=CHUNK)
    )  # fmt: skip
    for row in conn.execute(query):
        yield (row[0], utc(row[1]), 0, *row[2:])


def _summaries(
    conn: sa.Connection, site: str, room: str | None, start: datetime, end: datetime
) -> Iterator[tuple[Any, ...]]:
    s = climate_summaries
    query = (
        sa.select(
            s.c.storeroom, s.c.first_at, s.c.sensor, s.c.last_at, s.c.count,
            s.c.temperature_min_c, s.c.temperature_mean_c, s.c.temperature_max_c,
            s.c.humidity_min_pct, s.c.humidity_mean_pct, s.c.humidity_max_pct,
            s.c.clock_synced, s.c.agent_id, s.c.seq,
        )
        .where(_where(s, s.c.first_at, site, room, start, end))
        .order_by(s.c.storeroom, s.c.first_at, s.c.id)
        .execution_options(yield_per=CHUNK)
    )  # fmt: skip
    for row in conn.execute(query):
        yield (row[0], utc(row[1]), 1, row[2], utc(row[3]), *row[4:])


def header(lang: Language, zone_name: str) -> list[str]:
    keys = (
        "csv.kind", "csv.site", "csv.storeroom", "csv.sensor", "csv.serial", "csv.time_utc",
        "csv.time_local", "csv.until_local", "csv.records", "csv.temperature", "csv.humidity",
        "csv.raw_temperature", "csv.raw_humidity", "csv.t_min", "csv.t_max", "csv.h_min",
        "csv.h_max", "csv.quality", "csv.clock_synced", "csv.agent", "csv.seq",
    )  # fmt: skip
    return [t(k, lang).format(zone=zone_name) for k in keys]


def _num(value: float) -> str:
    return f"{round(value, 2):g}"


def _cells(site: str, row: tuple[Any, ...], zone: tzinfo, lang: Language) -> list[str]:
    def when(value: datetime, z: tzinfo) -> str:
        return value.astimezone(z).strftime("%Y-%m-%d %H:%M:%S")

    room, at, kind = row[0], row[1], row[2]
    synced = t("yes" if row[-3] else "no", lang)
    if kind == 0:
        sensor, serial, temp, hum, raw_t, raw_h, quality = row[3:10]
        return [
            t("csv.record", lang), site, room, sensor, serial or "", when(at, UTC),
            when(at, zone), "", "1", _num(temp), _num(hum), _num(raw_t), _num(raw_h),
            "", "", "", "", quality, synced, row[-2], str(row[-1]),
        ]  # fmt: skip
    sensor, last, count, t_min, t_mean, t_max, h_min, h_mean, h_max = row[3:12]
    return [
        t("csv.summary", lang), site, room, sensor, "", when(at, UTC), when(at, zone),
        when(last, zone), str(count), _num(t_mean), _num(h_mean), "", "", _num(t_min),
        _num(t_max), _num(h_min), _num(h_max), "", synced, row[-2], str(row[-1]),
    ]  # fmt: skip


def write_csv(
    bind: sa.Engine,
    path: Path,
    site: str,
    room: str | None,
    start: datetime,
    end: datetime,
    zone: tzinfo,
    zone_name: str,
    lang: Language,
) -> Written:
    """Write the window's records and summaries to ``path`` (through a temporary file beside
    it, so a failure leaves no half-written file); an empty window writes nothing and returns
    zero counts. Raises OSError when the file cannot be written."""
    counts = [0, 0]
    with bind.connect() as conn:
        rows = heapq.merge(
            _records(conn, site, room, start, end),
            _summaries(conn, site, room, start, end),
            key=lambda r: (r[0], r[1], r[2]),
        )
        first = next(rows, None)
        if first is None:
            return Written(records=0, summaries=0)
        with csv_file(path) as writer:
            writer.writerow(header(lang, zone_name))
            for row in itertools.chain([first], rows):
                counts[row[2]] += 1
                writer.writerow(_cells(site, row, zone, lang))
    return Written(records=counts[0], summaries=counts[1])
