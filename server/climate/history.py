"""Climate history: a storeroom's series over any window, downsampled on the server, and its
mean kinetic temperature (MKT).

The MKT formula and what a record weighs are pure (``kinetic.py``), and so is which bucket a
window gets (below); the queries do their arithmetic in SQL (``GROUP BY`` bucket, window
functions) on SQLite and PostgreSQL alike, so years of records never cross into Python row by
row.

Records are read by storeroom (every sensor of the room together) through the index
``ix_climate_records_room_time``; summaries (records an agent folded into min/mean/max when its
outbox ran full) count in every series and MKT with the records they stand for.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

import sqlalchemy as sa

from server.climate.kinetic import DELTA_H_OVER_R_K, KELVIN, MAX_WEIGHT_S, mkt_from_sums
from server.store.db import utc
from server.store.schema import agents, climate_records, climate_summaries

#: Windows up to this long are shown record by record (unless they hold over ``MAX_POINTS``).
RAW_UP_TO = timedelta(days=2)
#: Bucket sizes (seconds) tried in order for longer windows: 15 min, 1 h, 6 h, 1 day, 1 week.
BUCKETS_S = (900, 3600, 6 * 3600, 86400, 7 * 86400)
#: A series has at most about this many points (a 5-year window: 261 weekly points).
MAX_POINTS = 1000

Values = Literal["corrected", "raw"]
Bucket = int | Literal["auto", "raw"]
Bind = sa.Engine | sa.Connection


# --- pure --------------------------------------------------------------------------------------


def choose_bucket(start: datetime, end: datetime) -> int | None:
    """The bucket (seconds) for a series over ``[start, end)``: None (every record) up to
    ``RAW_UP_TO``, else the smallest of ``BUCKETS_S`` giving at most ``MAX_POINTS`` points."""
    window = (end - start).total_seconds()
    if window <= RAW_UP_TO.total_seconds():
        return None
    for size in BUCKETS_S:
        if window / size <= MAX_POINTS:
            return size
    return BUCKETS_S[-1]


def bucket_shift_s(size: int, zone: tzinfo, at: datetime) -> int:
    """Seconds added to a Unix time before dividing by ``size``, so buckets start on the zone's
    hours and midnights (its offset at ``at``) and weeks on Mondays (day 0 was a Thursday)."""
    offset = zone.utcoffset(at.astimezone(zone).replace(tzinfo=None))
    shift = int(offset.total_seconds()) if offset is not None else 0
    return shift + (3 * 86400 if size % (7 * 86400) == 0 else 0)


def bucket_start(index: int, size: int, shift_s: int) -> datetime:
    return datetime.fromtimestamp(index * size - shift_s, UTC)


# --- queries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One point of a series: a bucket, or (``bucket_s`` None) one record or one summary."""

    at: datetime
    #: Records it stands for; ``summarised`` of them came from summaries.
    records: int
    summarised: int
    temperature_min_c: float
    temperature_mean_c: float
    temperature_max_c: float
    humidity_min_pct: float
    humidity_mean_pct: float
    humidity_max_pct: float
    #: The sensor of a single record or summary; None for a bucket.
    sensor: str | None = None


@dataclass(frozen=True)
class Series:
    site_id: str
    storeroom: str
    start: datetime
    end: datetime
    #: Seconds per point, or None: every record.
    bucket_s: int | None
    values: Values
    points: list[Point]

    @property
    def records(self) -> int:
        return sum(p.records for p in self.points)


def _point(at: datetime, n: Any, folded: Any, v: Sequence[Any], sensor: str | None = None) -> Point:
    """A point from a row's count, folded count and six values (temperature then humidity
    min, mean, max)."""
    t_min, t_mean, t_max, h_min, h_mean, h_max = (float(x) for x in v)
    return Point(at, int(n), int(folded), t_min, t_mean, t_max, h_min, h_mean, h_max, sensor)


@contextmanager
def _connection(bind: Bind) -> Iterator[sa.Connection]:
    if isinstance(bind, sa.Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


def _bucket_of(column: Any, dialect: str, size: int, shift: int) -> Any:
    """The bucket number of a stored time: ``floor((unix seconds + shift) / size)``."""
    if dialect == "sqlite":
        # julianday() holds whole milliseconds; half a millisecond more keeps a time on a
        # bucket's first instant from rounding into the bucket before. Twice as fast as
        # strftime('%s') and, unlike unixepoch(), in every SQLite 3.x.
        seconds = _unix_s(column, dialect) + sa.literal(shift + 0.0005, sa.Float)
        return sa.cast(seconds, sa.Integer) // sa.literal(size, sa.Integer)
    shifted = _unix_s(column, dialect) + sa.literal(shift, sa.Integer)
    return sa.cast(sa.func.floor(shifted / sa.literal(size, sa.Integer)), sa.BigInteger)


def _in_room(table: sa.Table, at: Any, site: str, room: str, start: datetime, end: datetime) -> Any:
    return sa.and_(table.c.site_id == site, table.c.storeroom == room, at >= start, at < end)


def series(
    bind: Bind,
    site: str,
    storeroom: str,
    start: datetime,
    end: datetime,
    *,
    bucket: Bucket = "auto",
    values: Values = "corrected",
    zone: tzinfo = UTC,
) -> Series:
    """The storeroom's temperature and humidity over ``[start, end)``, every sensor together:
    per bucket min/mean/max (mean over records, a summary counting as its records), or every
    record when the bucket is ``"raw"`` (or ``"auto"`` picks none: a window of up to 2 days
    with at most ``MAX_POINTS`` records, else 15-minute buckets). Buckets start on ``zone``'s
    hours and midnights. ``values="raw"``: the transmitters' own values, before calibration;
    summaries carry corrected values only and are left out."""
    start, end = utc(start), utc(end)
    size = choose_bucket(start, end) if bucket == "auto" else None if bucket == "raw" else bucket
    r = climate_records
    temp, hum = (
        (r.c.temperature_c, r.c.humidity_pct)
        if values == "corrected"
        else (r.c.raw_temperature_c, r.c.raw_humidity_pct)
    )
    with _connection(bind) as conn:
        if (
            bucket == "auto"
            and size is None
            and _rows(conn, site, storeroom, start, end) > MAX_POINTS
        ):
            size = BUCKETS_S[0]  # a short window recorded densely (every 2 min out of range)
        if size is None:
            points = _raw_points(conn, site, storeroom, start, end, temp, hum, values)
        else:
            points = _bucket_points(
                conn, site, storeroom, start, end, size, zone, temp, hum, values
            )
    return Series(site, storeroom, start, end, size, values, points)


def _rows(conn: sa.Connection, site: str, room: str, start: datetime, end: datetime) -> int:
    """Records and summaries of the storeroom in the window (an index range each)."""
    found = 0
    for table, at in ((climate_records, "occurred_at"), (climate_summaries, "first_at")):
        query = sa.select(sa.func.count()).where(
            _in_room(table, table.c[at], site, room, start, end)
        )
        found += int(conn.execute(query).scalar_one())
    return found


def _raw_points(
    conn: sa.Connection,
    site: str,
    room: str,
    start: datetime,
    end: datetime,
    temp: Any,
    hum: Any,
    values: Values,
) -> list[Point]:
    r, s = climate_records, climate_summaries
    one = sa.literal(1, sa.Integer)
    parts: list[Any] = [
        sa.select(
            r.c.occurred_at.label("at"), r.c.sensor, one.label("n"),
            sa.literal(0, sa.Integer).label("folded"),
            temp.label("t_min"), temp.label("t_mean"), temp.label("t_max"),
            hum.label("h_min"), hum.label("h_mean"), hum.label("h_max"),
        ).where(_in_room(r, r.c.occurred_at, site, room, start, end))
    ]  # fmt: skip
    if values == "corrected":
        parts.append(
            sa.select(
                s.c.first_at, s.c.sensor, s.c.count, s.c.count,
                s.c.temperature_min_c, s.c.temperature_mean_c, s.c.temperature_max_c,
                s.c.humidity_min_pct, s.c.humidity_mean_pct, s.c.humidity_max_pct,
            ).where(_in_room(s, s.c.first_at, site, room, start, end))
        )  # fmt: skip
    both = sa.union_all(*parts).subquery()
    rows = conn.execute(sa.select(both).order_by(both.c.at, both.c.sensor)).all()
    return [_point(utc(at), n, folded, rest, sensor) for at, sensor, n, folded, *rest in rows]


def _bucket_points(
    conn: sa.Connection,
    site: str,
    room: str,
    start: datetime,
    end: datetime,
    size: int,
    zone: tzinfo,
    temp: Any,
    hum: Any,
    values: Values,
) -> list[Point]:
    r, s = climate_records, climate_summaries
    dialect = conn.dialect.name
    shift = bucket_shift_s(size, zone, start)
    parts: list[Any] = [
        sa.select(
            _bucket_of(r.c.occurred_at, dialect, size, shift).label("b"),
            sa.func.count().label("n"), sa.literal(0, sa.Integer).label("folded"),
            sa.func.min(temp).label("t_min"), sa.func.sum(temp).label("t_sum"),
            sa.func.max(temp).label("t_max"), sa.func.min(hum).label("h_min"),
            sa.func.sum(hum).label("h_sum"), sa.func.max(hum).label("h_max"),
        )
        .where(_in_room(r, r.c.occurred_at, site, room, start, end))
        .group_by(sa.literal_column("b"))
    ]  # fmt: skip
    if values == "corrected":
        parts.append(
            sa.select(
                _bucket_of(s.c.first_at, dialect, size, shift), s.c.count, s.c.count,
                s.c.temperature_min_c, s.c.temperature_mean_c * s.c.count,
                s.c.temperature_max_c, s.c.humidity_min_pct, s.c.humidity_mean_pct * s.c.count,
                s.c.humidity_max_pct,
            ).where(_in_room(s, s.c.first_at, site, room, start, end))
        )  # fmt: skip
    u = sa.union_all(*parts).subquery()
    n = sa.func.sum(u.c.n)
    query = (
        sa.select(
            u.c.b, n, sa.func.sum(u.c.folded),
            sa.func.min(u.c.t_min), sa.func.sum(u.c.t_sum) / n, sa.func.max(u.c.t_max),
            sa.func.min(u.c.h_min), sa.func.sum(u.c.h_sum) / n, sa.func.max(u.c.h_max),
        )
        .group_by(u.c.b)
        .order_by(u.c.b)
    )  # fmt: skip
    return [
        _point(bucket_start(int(b), size, shift), count, folded, rest)
        for b, count, folded, *rest in conn.execute(query)
    ]


@dataclass(frozen=True)
class Mkt:
    """A storeroom's mean kinetic temperature over a window, with what it was made of."""

    mkt_c: float
    #: The time-weighted arithmetic mean, with the same weights as the MKT (so MKT ≥ mean).
    mean_c: float
    min_c: float
    max_c: float
    records: int
    #: Records of the total that came folded in summaries (their mean counts for them).
    summarised: int
    #: Seconds the records stand for, all sensors together (coverage of the window).
    weight_s: float
    delta_h_over_r_k: float


def mkt(
    bind: Bind,
    site: str,
    storeroom: str,
    start: datetime,
    end: datetime,
    *,
    delta_h_over_r_k: float = DELTA_H_OVER_R_K,
    cap_s: float = MAX_WEIGHT_S,
) -> Mkt | None:
    """Mean kinetic temperature of the storeroom over ``[start, end)`` (None: no records).

    Every record of every sensor in the room counts, weighted by ``record_weights`` (the time
    until its sensor's next record in the window, at most ``cap_s``); a summary counts as its
    mean temperature, weighted by ``summary_weight``. The sums are made in SQL."""
    start, end = utc(start), utc(end)
    with _connection(bind) as conn:
        dialect = conn.dialect.name
        if dialect == "sqlite":
            _ensure_exp(conn)
        a = sa.literal(float(delta_h_over_r_k), sa.Float)
        cap = sa.literal(float(cap_s), sa.Float)
        r, s = climate_records, climate_summaries
        at = _unix_s(r.c.occurred_at, dialect)  # each time read once, as seconds
        inner = (
            sa.select(
                r.c.temperature_c.label("t"),
                at.label("x"),
                sa.func.lead(at)
                .over(partition_by=r.c.sensor, order_by=(r.c.occurred_at, r.c.id))
                .label("nxt"),
            )
            .where(_in_room(r, r.c.occurred_at, site, storeroom, start, end))
            .subquery()
        )
        until = sa.func.coalesce(inner.c.nxt, sa.literal(end.timestamp(), sa.Float))
        weight = _least(dialect, until - inner.c.x, cap)
        kelvin = sa.literal(KELVIN, sa.Float)
        row = conn.execute(
            sa.select(
                sa.func.sum(weight * sa.func.exp(-a / (inner.c.t + kelvin))),
                sa.func.sum(weight), sa.func.sum(weight * inner.c.t),
                sa.func.min(inner.c.t), sa.func.max(inner.c.t), sa.func.count(),
            )
        ).one()  # fmt: skip
        span = _unix_s(s.c.last_at, dialect) - _unix_s(s.c.first_at, dialect)
        s_weight = sa.case(
            (s.c.count <= 1, cap),
            else_=_least(dialect, s.c.count * cap, span * s.c.count / (s.c.count - 1)),
        )
        folded = conn.execute(
            sa.select(
                sa.func.sum(s_weight * sa.func.exp(-a / (s.c.temperature_mean_c + kelvin))),
                sa.func.sum(s_weight), sa.func.sum(s_weight * s.c.temperature_mean_c),
                sa.func.min(s.c.temperature_min_c), sa.func.max(s.c.temperature_max_c),
                sa.func.coalesce(sa.func.sum(s.c.count), 0),
            ).where(_in_room(s, s.c.first_at, site, storeroom, start, end))
        ).one()  # fmt: skip
    records, summarised = int(row[5]) + int(folded[5]), int(folded[5])
    if records == 0:
        return None
    parts = [p for p in (row, folded) if p[1] is not None and float(p[1]) > 0]
    weighted = sum(float(p[0]) for p in parts)
    total = sum(float(p[1]) for p in parts)
    mins = [float(p[3]) for p in (row, folded) if p[3] is not None]
    maxes = [float(p[4]) for p in (row, folded) if p[4] is not None]
    if total <= 0:  # every record at the window's very end: all alike
        return None
    return Mkt(
        mkt_c=mkt_from_sums(weighted, total, delta_h_over_r_k),
        mean_c=sum(float(p[2]) for p in parts) / total,
        min_c=min(mins),
        max_c=max(maxes),
        records=records,
        summarised=summarised,
        weight_s=total,
        delta_h_over_r_k=delta_h_over_r_k,
    )


def _unix_s(column: Any, dialect: str) -> Any:
    """Unix seconds of a stored time, with its fraction, as a float in SQL."""
    if dialect == "sqlite":
        return (sa.func.julianday(column) - sa.literal(2440587.5)) * sa.literal(86400.0)
    return sa.type_coerce(sa.extract("epoch", column), sa.Float)


def _least(dialect: str, a: Any, b: Any) -> Any:
    return sa.func.min(a, b) if dialect == "sqlite" else sa.func.least(a, b)


def _ensure_exp(conn: sa.Connection) -> None:
    """SQLite built without its math functions has no ``exp``: lend it Python's."""
    try:
        conn.exec_driver_sql("SELECT exp(0)")
    except sa.exc.OperationalError:
        raw: Any = conn.connection.driver_connection
        raw.create_function("exp", 1, math.exp, deterministic=True)


# --- what exists -------------------------------------------------------------------------------


def site_known(bind: Bind, site: str) -> bool:
    """The site has an agent or any climate record."""
    with _connection(bind) as conn:
        for table in (agents, climate_records, climate_summaries):
            if conn.execute(sa.select(1).where(table.c.site_id == site).limit(1)).first():
                return True
    return False


def room_known(bind: Bind, site: str, storeroom: str) -> bool:
    """The storeroom has a record or a summary at the site, at any time."""
    with _connection(bind) as conn:
        for table in (climate_records, climate_summaries):
            found = conn.execute(
                sa.select(1).where(table.c.site_id == site, table.c.storeroom == storeroom).limit(1)
            ).first()
            if found:
                return True
    return False


def rooms(bind: Bind, site: str) -> list[str]:
    """The site's storerooms with records or summaries (for a message naming them)."""
    with _connection(bind) as conn:
        found: set[str] = set()
        for table in (climate_records, climate_summaries):
            query = sa.select(table.c.storeroom).where(table.c.site_id == site).distinct()
            found.update(conn.execute(query).scalars())
    return sorted(found)
