"""Read-only questions about climate records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from server.store.db import utc
from server.store.schema import climate_notices, climate_records


@dataclass(frozen=True)
class Reading:
    id: int
    site_id: str
    agent_id: str
    storeroom: str
    sensor: str
    temperature_c: float
    humidity_pct: float
    occurred_at: datetime
    clock_synced: bool


_COLUMNS = (
    climate_records.c.id,
    climate_records.c.site_id,
    climate_records.c.agent_id,
    climate_records.c.storeroom,
    climate_records.c.sensor,
    climate_records.c.temperature_c,
    climate_records.c.humidity_pct,
    climate_records.c.occurred_at,
    climate_records.c.clock_synced,
)


def _reading(row: sa.RowMapping) -> Reading:
    values = dict(row)
    values["occurred_at"] = utc(values["occurred_at"])
    return Reading(**values)


def latest(engine: sa.Engine) -> list[Reading]:
    """The newest record of every sensor, ordered by site, storeroom and sensor. Found by
    skipping along the (site, sensor, time) index: each site, each of its sensors, and that
    sensor's newest record are a seek each, however many years of records there are (ranking
    them all read the whole table)."""
    r = climate_records
    found: list[Reading] = []
    with engine.connect() as conn:
        for site in _distinct(conn, r.c.site_id):
            newest = [
                conn.execute(
                    sa.select(r.c.id)
                    .where(r.c.site_id == site, r.c.sensor == sensor)
                    .order_by(r.c.occurred_at.desc(), r.c.id.desc())
                    .limit(1)
                ).scalar_one()
                for sensor in _distinct(conn, r.c.sensor, r.c.site_id == site)
            ]
            query = (
                sa.select(*_COLUMNS).where(r.c.id.in_(newest)).order_by(r.c.storeroom, r.c.sensor)
            )
            found += [_reading(row) for row in conn.execute(query).mappings()]
    return found


def _distinct(
    conn: sa.Connection, column: sa.Column[str], *where: sa.ColumnElement[bool]
) -> list[str]:
    """The distinct values of an indexed column (under ``where``), in the database's order: one
    seek each (``min`` above the last found), where ``DISTINCT`` would read every row."""
    found: list[str] = []
    while True:
        query = sa.select(sa.func.min(column)).where(*where)
        if found:
            query = query.where(column > found[-1])
        value = conn.execute(query).scalar()
        if value is None:
            return found
        found.append(str(value))


def since(engine: sa.Engine, after_id: int, limit: int = 1000) -> list[Reading]:
    """Records stored after ``after_id``, in the order they were stored."""
    query = (
        sa.select(*_COLUMNS)
        .where(climate_records.c.id > after_id)
        .order_by(climate_records.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_reading(r) for r in conn.execute(query).mappings()]


def last_id(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(climate_records.c.id))).scalar() or 0)


@dataclass(frozen=True)
class Notice:
    id: int
    site_id: str
    kind: str
    occurred_at: datetime
    payload: dict[str, object]


def notices_since(engine: sa.Engine, after_id: int, limit: int = 500) -> list[Notice]:
    """Climate events a person should see (states, faults, silencing), in the order stored."""
    n = climate_notices
    query = (
        sa.select(n.c.id, n.c.site_id, n.c.kind, n.c.occurred_at, n.c.payload)
        .where(n.c.id > after_id)
        .order_by(n.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            Notice(int(i), site, kind, utc(occurred), json.loads(payload))
            for i, site, kind, occurred, payload in conn.execute(query)
        ]


def last_notice_id(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(climate_notices.c.id))).scalar() or 0)


def storerooms(conn: sa.Connection, site: str) -> list[str]:
    """The site's storerooms with records, by skipping along the (site, storeroom, time) index:
    a handful of seeks, however many years of records each storeroom has."""
    return _distinct(conn, climate_records.c.storeroom, climate_records.c.site_id == site)


def room_now(conn: sa.Connection, site: str, storeroom: str, since: datetime) -> list[Reading]:
    """The newest record of each of the storeroom's sensors since ``since`` (none when silent)."""
    r = climate_records
    query = (
        sa.select(*_COLUMNS)
        .where(r.c.site_id == site, r.c.storeroom == storeroom, r.c.occurred_at >= utc(since))
        .order_by(r.c.occurred_at.desc(), r.c.id.desc())
        .limit(64)
    )
    newest: dict[str, Reading] = {}
    for row in conn.execute(query).mappings():
        newest.setdefault(str(row["sensor"]), _reading(row))
    return sorted(newest.values(), key=lambda x: x.sensor)
