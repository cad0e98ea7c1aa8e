"""The monthly temperature and humidity record sheet of one storeroom (库房温湿度记录表), as the
paper form has it, made from the recorded history instead of by hand.

Per day, a check at each of the station's fixed times (08:00 and 16:00 by default, 09:00 and
15:00 at some stations): the storeroom's reading then, whether it was in range, the regulating
action taken (the acknowledgements of the storeroom's climate alerts between that check and
the next, with who took it), and the reading ``AFTER`` the action; the day's lowest and highest
values; remarks (no reading at a check). For the month: every excursion with its duration and
extremes, and the mean kinetic temperature.

The storeroom's reading at a moment is the mean, over its sensors, of each sensor's record
nearest to that moment within ``NEAR`` (records come at least every 30 minutes in range, more
often out of it); a sensor with no record that near does not count, and a check no sensor has a
record near has no reading. The storeroom is out of range while any sensor's latest record is.

``make`` is pure (records and actions in, a ``Sheet`` out); ``load`` reads them from the store.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import sqlalchemy as sa

from server.alerts.entries import Acknowledgement
from server.alerts.signals import Range
from server.climate import history
from server.climate.kinetic import DELTA_H_OVER_R_K
from server.entries import COUNTY_AGENT
from server.i18n import Language, t
from server.store.db import utc
from server.store.schema import climate_records, journal, messages, streams

#: How far from a check's time a sensor's record may be and still be its reading.
NEAR = timedelta(minutes=30)
#: How long after a regulating action its effect is read.
AFTER = timedelta(minutes=30)
#: The checks of a day when the station has not set its own.
TIMES = ("08:00", "16:00")
#: The alerts whose acknowledgement is a storeroom's regulating action.
CLIMATE_RULES = ("climate.range", "climate.room")


@dataclass(frozen=True)
class Record:
    at: datetime
    sensor: str
    temperature_c: float
    humidity_pct: float


@dataclass(frozen=True)
class Action:
    """A regulating action: an acknowledgement of one of the storeroom's climate alerts."""

    at: datetime
    by: str
    action: str


@dataclass(frozen=True)
class Reading:
    at: datetime
    temperature_c: float
    humidity_pct: float
    #: Sensors whose records made it.
    sensors: int


@dataclass(frozen=True)
class Check:
    #: The fixed time of the check (in the site's zone).
    due: datetime
    reading: Reading | None
    in_range: bool | None
    #: The actions taken between this check and the next, oldest first.
    actions: tuple[Action, ...]
    #: The storeroom's reading ``AFTER`` the last of them (None: none, or not yet recorded).
    after: Reading | None


@dataclass(frozen=True)
class Day:
    day: date
    checks: tuple[Check, ...]
    temperature_min_c: float | None
    temperature_max_c: float | None
    humidity_min_pct: float | None
    humidity_max_pct: float | None
    records: int


@dataclass(frozen=True)
class Excursion:
    """A spell out of range; its extremes are those of the records that were out of range."""

    start: datetime
    #: When the storeroom was back in range (None: still out at the sheet's end).
    end: datetime | None
    duration_s: float
    temperature_min_c: float
    temperature_max_c: float
    humidity_min_pct: float
    humidity_max_pct: float


@dataclass(frozen=True)
class Sheet:
    site: str
    storeroom: str
    year: int
    month: int
    limits: Range
    times: tuple[str, ...]
    days: tuple[Day, ...]
    excursions: tuple[Excursion, ...]
    mkt_c: float | None


def month_span(year: int, month: int, zone: tzinfo) -> tuple[datetime, datetime]:
    """The month from its first midnight to the next month's, in the site's zone."""
    start = datetime(year, month, 1, tzinfo=zone)
    following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start, following


def parse_times(times: Sequence[str]) -> tuple[time, ...]:
    """``("08:00", "16:00")`` as times of day, in order; ``ValueError`` for anything else."""
    parsed = sorted(time.fromisoformat(t) for t in times)
    if not parsed or len(set(parsed)) != len(parsed):
        raise ValueError(f"checks at distinct times of day, e.g. 08:00 and 16:00, not {times}")
    return tuple(parsed)


def make(
    site: str,
    storeroom: str,
    year: int,
    month: int,
    zone: tzinfo,
    limits: Range,
    records: Sequence[Record],
    actions: Sequence[Action],
    times: Sequence[str] = TIMES,
    mkt_c: float | None = None,
    now: datetime | None = None,
) -> Sheet:
    """The sheet of one storeroom's month from its records and actions (any order); ``now``
    (default: the month's end) bounds what can have been read yet."""
    start, end = month_span(year, month, zone)
    until = end if now is None else min(end, now)
    by_sensor: dict[str, list[Record]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.at, r.sensor)):
        if start <= r.at < end:
            by_sensor[r.sensor].append(r)
    stamps = {s: [r.at for r in rs] for s, rs in by_sensor.items()}

    def reading(at: datetime) -> Reading | None:
        if at > until:
            return None
        near = []
        for sensor, rs in by_sensor.items():
            i = bisect.bisect_left(stamps[sensor], at)
            nearest = min((rs[j] for j in (i - 1, i) if 0 <= j < len(rs)),
                          key=lambda r: (abs(r.at - at), r.at), default=None)  # fmt: skip
            if nearest is not None and abs(nearest.at - at) <= NEAR:
                near.append(nearest)
        if not near:
            return None
        return Reading(at, _mean([r.temperature_c for r in near]),
                       _mean([r.humidity_pct for r in near]), len(near))  # fmt: skip

    checks_of_day = parse_times(times)
    dues = [
        datetime.combine(start.date() + timedelta(days=d), t, tzinfo=zone)
        for d in range((end.date() - start.date()).days)
        for t in checks_of_day
    ]
    ordered_actions = sorted((a for a in actions if start <= a.at < end), key=lambda a: a.at)
    checks = []
    for n, due in enumerate(dues):
        upto = dues[n + 1] if n + 1 < len(dues) else end
        taken = tuple(a for a in ordered_actions if due <= a.at < upto)
        seen = reading(due)
        checks.append(Check(
            due, seen, None if seen is None else not limits.outside(seen.temperature_c,
                                                                    seen.humidity_pct),
            taken, reading(taken[-1].at + AFTER) if taken else None,
        ))  # fmt: skip
    everything = sorted((r for rs in by_sensor.values() for r in rs), key=lambda r: r.at)
    per_day: dict[date, list[Record]] = defaultdict(list)
    for r in everything:
        per_day[r.at.astimezone(zone).date()].append(r)
    days = []
    per = len(checks_of_day)
    for d in range((end.date() - start.date()).days):
        day = start.date() + timedelta(days=d)
        rs = per_day.get(day, [])
        days.append(Day(
            day, tuple(checks[d * per:(d + 1) * per]),
            min((r.temperature_c for r in rs), default=None),
            max((r.temperature_c for r in rs), default=None),
            min((r.humidity_pct for r in rs), default=None),
            max((r.humidity_pct for r in rs), default=None),
            len(rs),
        ))  # fmt: skip
    return Sheet(site, storeroom, year, month, limits, tuple(times), tuple(days),
                 tuple(_excursions(everything, limits, until)), mkt_c)  # fmt: skip


def _excursions(records: Sequence[Record], limits: Range, until: datetime) -> list[Excursion]:
    """Spells during which any sensor's latest record was out of range."""
    latest: dict[str, Record] = {}
    out: list[Excursion] = []
    spell: list[Record] = []
    began: datetime | None = None
    for r in records:
        latest[r.sensor] = r
        outside = any(limits.outside(x.temperature_c, x.humidity_pct) for x in latest.values())
        if outside:
            if began is None:
                began = r.at
            if limits.outside(r.temperature_c, r.humidity_pct):
                spell.append(r)  # the extremes are those of the values out of range
        elif began is not None:
            out.append(_excursion(began, r.at, spell))
            began, spell = None, []
    if began is not None:
        out.append(_excursion(began, None, spell, until))
    return out


def _excursion(start: datetime, end: datetime | None, spell: list[Record],
               until: datetime | None = None) -> Excursion:  # fmt: skip
    stop = end if end is not None else max(until or start, start)
    spell = spell or [Record(start, "", math.nan, math.nan)]
    return Excursion(
        start, end, (stop - start).total_seconds(),
        min(r.temperature_c for r in spell), max(r.temperature_c for r in spell),
        min(r.humidity_pct for r in spell), max(r.humidity_pct for r in spell),
    )  # fmt: skip


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 2)


# --- from the store -------------------------------------------------------------------------------


def load(
    conn: sa.Connection,
    site: str,
    storeroom: str,
    year: int,
    month: int,
    zone: tzinfo,
    limits: Range,
    times: Sequence[str] = TIMES,
    now: datetime | None = None,
    delta_h_over_r_k: float = DELTA_H_OVER_R_K,
) -> Sheet:
    """The sheet from the storeroom's records (corrected values) and the acknowledgements of its
    climate alerts in the month (``acknowledgements``)."""
    start, end = month_span(year, month, zone)
    since, until = utc(start), utc(end)
    r = climate_records
    rows = conn.execute(
        sa.select(r.c.occurred_at, r.c.sensor, r.c.temperature_c, r.c.humidity_pct).where(
            r.c.site_id == site, r.c.storeroom == storeroom,
            r.c.occurred_at >= since, r.c.occurred_at < until,
        )
    ).all()  # fmt: skip
    records = [Record(utc(at).astimezone(zone), sensor, t, h) for at, sensor, t, h in rows]
    actions = [
        Action(a.at.astimezone(zone), a.by, a.action)
        for a in acknowledgements(conn, site, storeroom, since, until)
    ]
    found = history.mkt(conn, site, storeroom, start, min(end, now) if now else end,
                        delta_h_over_r_k=delta_h_over_r_k)  # fmt: skip
    return make(site, storeroom, year, month, zone, limits, records, actions, times,
                None if found is None else found.mkt_c, now)  # fmt: skip


def acknowledgements(
    conn: sa.Connection, site: str, storeroom: str, since: datetime, until: datetime
) -> list[Action]:
    """Every acknowledgement with an action of the storeroom's climate alerts in ``[since,
    until)``, oldest first, as journaled: an alert acknowledged again keeps only its newest
    action in ``alerts``, and the record sheet needs each action with the reading after it.

    The county's entries are read by its stream's key, and an acknowledgement's time is its
    message's (``Ingestor.enter`` stamps both with one time). Neither the entry's kind nor that
    time is indexed, so this reads every entry the county has made (never the agents' events)
    and the stored message of each acknowledgement."""
    keys = {f"{rule}:{site}:{storeroom}" for rule in CLIMATE_RULES}  # as ``signals`` names them
    s, j, m = streams, journal, messages
    rows = conn.execute(
        sa.select(m.c.payload, j.c.idx)
        .select_from(s.join(j, j.c.stream_id == s.c.id).join(m, m.c.id == j.c.message_id))
        .where(s.c.agent_id == COUNTY_AGENT, j.c.kind == "alerts.ack",
               m.c.received_at >= utc(since), m.c.received_at < utc(until))
        .order_by(j.c.stream_id, j.c.seq)
    ).all()  # fmt: skip
    found = []
    for payload, idx in rows:
        event = json.loads(payload)["events"][idx]
        ack = Acknowledgement.model_validate(event["payload"])
        if ack.key in keys and ack.action is not None:
            found.append(Action(datetime.fromisoformat(event["occurred_at"]), ack.by, ack.action))
    return found


# --- as people read it -------------------------------------------------------------------------


def rows(made: Sheet, lang: Language) -> tuple[list[str], list[list[str]]]:
    """The sheet as the paper form's table: a header and one row per check, for print and CSV."""
    keys = ("date", "time", "t", "h", "ok", "action", "after_t", "after_h", "recorder",
            "day_range")  # fmt: skip
    header = [t(f"sheet.{k}", lang) for k in keys]
    rows = []
    for day in made.days:
        extremes = (
            "-" if day.temperature_min_c is None
            else f"{day.temperature_min_c:.1f}/{day.temperature_max_c:.1f} °C "
            f"{day.humidity_min_pct:.0f}/{day.humidity_max_pct:.0f} %"
        )  # fmt: skip
        for n, check in enumerate(day.checks):
            r, after = check.reading, check.after
            ok = "-" if check.in_range is None else t(
                "sheet.yes" if check.in_range else "sheet.no", lang)  # fmt: skip
            actions = "；".join(a.action for a in check.actions)
            recorder = "、".join(dict.fromkeys(a.by for a in check.actions if a.by))
            rows.append([
                day.day.isoformat() if n == 0 else "",
                check.due.strftime("%H:%M"),
                t("sheet.none", lang) if r is None else f"{r.temperature_c:.1f}",
                "" if r is None else f"{r.humidity_pct:.0f}",
                ok, actions or "-",
                "" if after is None else f"{after.temperature_c:.1f}",
                "" if after is None else f"{after.humidity_pct:.0f}",
                recorder or (t("sheet.auto", lang) if r is not None else "-"),
                extremes if n == 0 else "",
            ])  # fmt: skip
    return header, rows


def excursion_lines(made: Sheet, lang: Language, zone: tzinfo) -> list[str]:
    """The remarks under the table: every excursion with its duration and extremes."""
    if not made.excursions:
        return [t("sheet.no_excursions", lang)]
    lines = [t("sheet.excursions", lang)]
    for x in made.excursions:
        end = t("sheet.ongoing", lang) if x.end is None else x.end.astimezone(zone).strftime(
            "%m-%d %H:%M")  # fmt: skip
        hours, rest = divmod(int(x.duration_s), 3600)
        lines.append(t("sheet.excursion", lang).format(
            start=x.start.astimezone(zone).strftime("%m-%d %H:%M"), end=end,
            duration=f"{hours}h{rest // 60:02d}m", t0=x.temperature_min_c,
            t1=x.temperature_max_c, h0=x.humidity_min_pct, h1=x.humidity_max_pct,
        ))  # fmt: skip
    return lines
