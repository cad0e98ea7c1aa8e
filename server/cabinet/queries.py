"""Read-only questions about the dispensing boxes: their slots, states, open faults, days."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from server.store.db import utc
from server.store.schema import cabinet_box_log, cabinet_faults, cabinet_slot_log, cabinet_slots

#: Events counted as failures in a box's day.
FAILURE_KINDS = ("vend_failed", "vend_unknown")


@dataclass(frozen=True)
class Slot:
    slot: int
    product: str
    state: str | None
    count: int | None
    batch: str | None
    expiry: date | None
    changed_at: datetime


@dataclass(frozen=True)
class Fault:
    kind: str
    reason: str
    slot: int | None
    occurred_at: datetime


@dataclass(frozen=True)
class Latest:
    """The newest of one kind of box event: its value (a board state, door state, tamper
    reason), detail and time."""

    value: str
    detail: str | None
    at: datetime


@dataclass(frozen=True)
class Day:
    day: date
    dispensed: int = 0
    refused: int = 0
    failed: int = 0


@dataclass
class Box:
    site_id: str
    agent_id: str
    box: str
    slots: list[Slot] = field(default_factory=list)
    board: Latest | None = None
    door: Latest | None = None
    tamper: Latest | None = None
    faults: list[Fault] = field(default_factory=list)
    #: Days with any dispense, refusal or failure, newest first, in the display time zone.
    days: list[Day] = field(default_factory=list)


def boxes(
    engine: sa.Engine,
    zone: ZoneInfo,
    now: datetime,
    site: str | None = None,
    days: int = 7,
) -> list[Box]:
    """Every box (of ``site``), ordered by site, agent and box."""
    found: dict[tuple[str, str], Box] = {}

    def box(site_id: str, agent_id: str, name: str) -> Box:
        return found.setdefault((agent_id, name), Box(site_id, agent_id, name))

    since = now - timedelta(days=days)
    with engine.connect() as conn:
        s = cabinet_slots
        query = _where_site(sa.select(s), s, site).order_by(s.c.slot)
        for m in conn.execute(query).mappings():
            box(m["site_id"], m["agent_id"], m["box"]).slots.append(
                Slot(m["slot"], m["product"], m["state"], m["count"], m["batch"], m["expiry"],
                     utc(m["changed_at"]))
            )  # fmt: skip
        for r in conn.execute(_latest_box_events(site)):
            latest = Latest(r.value, r.detail, utc(r.occurred_at))
            setattr(box(r.site_id, r.agent_id, r.box), r.kind, latest)
        f = cabinet_faults
        query = _where_site(sa.select(f), f, site).where(f.c.cleared_at.is_(None))
        for r in conn.execute(query.order_by(f.c.stream_id, f.c.seq)):
            box(r.site_id, r.agent_id, r.box).faults.append(
                Fault(r.kind, r.reason, r.slot, utc(r.occurred_at))
            )
        tally: dict[tuple[str, str], dict[date, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int))
        )
        for site_id, agent_id, name, kind, at in _recent(conn, site, since):
            box(site_id, agent_id, name)
            day = utc(at).astimezone(zone).date()
            tally[(agent_id, name)][day][kind] += 1
    for key, per_day in tally.items():
        found[key].days = [
            Day(d, c["dispense"], c["refused"], sum(c[k] for k in FAILURE_KINDS))
            for d, c in sorted(per_day.items(), reverse=True)
        ]
    return sorted(found.values(), key=lambda b: (b.site_id, b.agent_id, b.box))


def _where_site(query: sa.Select[Any], table: sa.Table, site: str | None) -> sa.Select[Any]:
    return query if site is None else query.where(table.c.site_id == site)


def _latest_box_events(site: str | None) -> sa.Select[Any]:
    b = cabinet_box_log
    ranked = _where_site(
        sa.select(
            b.c.site_id, b.c.agent_id, b.c.box, b.c.kind, b.c.value, b.c.detail, b.c.occurred_at,
            sa.func.row_number()
            .over(
                partition_by=(b.c.agent_id, b.c.box, b.c.kind),
                order_by=(b.c.stream_id.desc(), b.c.seq.desc()),
            )
            .label("rank"),
        ),
        b,
        site,
    ).where(b.c.kind.in_(("board", "door", "tamper"))).subquery()  # fmt: skip
    return sa.select(ranked).where(ranked.c.rank == 1)


def _recent(conn: sa.Connection, site: str | None, since: datetime) -> list[Any]:
    """(site, agent, box, kind, time) of each dispense, failure and refusal since ``since``."""
    log, b = cabinet_slot_log, cabinet_box_log
    slot_events = _where_site(
        sa.select(log.c.site_id, log.c.agent_id, log.c.box, log.c.kind, log.c.occurred_at),
        log,
        site,
    ).where(log.c.kind.in_(("dispense", *FAILURE_KINDS)), log.c.occurred_at >= since)
    refusals = _where_site(
        sa.select(b.c.site_id, b.c.agent_id, b.c.box, b.c.kind, b.c.occurred_at), b, site
    ).where(b.c.kind == "refused", b.c.occurred_at >= since)
    return [*conn.execute(slot_events).all(), *conn.execute(refusals).all()]


# --- boxes tail ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxEvent:
    """One thing that happened at a box, as ``boxes tail`` prints it. A slot's event
    (``dispense``, ``vend_failed``, ``vend_unknown``, ``restock``, ``remove``, ``count``, or
    ``slot``: a change of state on its own) carries the slot's state after it; a box's event
    (``refused``, ``door``, ``tamper``, ``board``) its ``value``. No card is ever part of it."""

    site_id: str
    agent_id: str
    box: str
    kind: str
    occurred_at: datetime
    clock_synced: bool
    slot: int | None = None
    product: str | None = None
    quantity: int | None = None
    state: str | None = None
    count: int | None = None
    batch: str | None = None
    expiry: date | None = None
    #: Why a vend failed or its outcome is unknown, why a take was refused, the door's state,
    #: why the door alarmed, the board's state.
    value: str | None = None
    #: A door moved by a technician's card: ``technician``.
    detail: str | None = None
    product_group: str | None = None
    #: The slot changed state with this event (in the same transaction): shown on its line.
    state_changed: bool = False


@dataclass(frozen=True)
class TailCursor:
    """The last row of each log already shown."""

    slot_id: int = 0
    box_id: int = 0


def tail_cursor(engine: sa.Engine) -> TailCursor:
    """Where a tail starts: after everything stored so far."""
    with engine.connect() as conn:
        slot_id = conn.execute(sa.select(sa.func.max(cabinet_slot_log.c.id))).scalar()
        box_id = conn.execute(sa.select(sa.func.max(cabinet_box_log.c.id))).scalar()
    return TailCursor(int(slot_id or 0), int(box_id or 0))


def events_since(
    engine: sa.Engine, after: TailCursor, limit: int = 1000
) -> tuple[list[BoxEvent], TailCursor]:
    """Box events stored after ``after``, in the order they happened (time, then each agent's
    sequence), and the cursor past them. A slot's change of state recorded together with the
    event that caused it (the agent writes it just before, with the same time) is folded into
    that event, so a take and the slot it left low are one line."""
    log, b, f = cabinet_slot_log, cabinet_box_log, cabinet_faults
    reason = (
        sa.select(f.c.reason)
        .where(f.c.agent_id == log.c.agent_id, f.c.epoch == log.c.epoch, f.c.seq == log.c.seq)
        .limit(1)
        .scalar_subquery()
    )
    slot_query = (
        sa.select(log, reason.label("reason")).where(log.c.id > after.slot_id).order_by(log.c.id)
    )
    box_query = sa.select(b).where(b.c.id > after.box_id).order_by(b.c.id)
    with engine.connect() as conn:
        slot_rows = conn.execute(slot_query.limit(limit)).mappings().all()
        box_rows = conn.execute(box_query.limit(limit)).mappings().all()
    cursor = TailCursor(
        int(slot_rows[-1]["id"]) if slot_rows else after.slot_id,
        int(box_rows[-1]["id"]) if box_rows else after.box_id,
    )
    by_place = {(r["agent_id"], r["epoch"], r["seq"]): r for r in slot_rows}

    def together(change: Any, event: Any) -> bool:
        """Whether ``change`` (a slot row) is the state change recorded with ``event``."""
        return (
            change is not None
            and event is not None
            and change["kind"] == "slot"
            and event["kind"] != "slot"
            and change["seq"] + 1 == event["seq"]
            and (change["box"], change["slot"], change["occurred_at"])
            == (event["box"], event["slot"], event["occurred_at"])
        )

    found: list[tuple[tuple[datetime, int, int], BoxEvent]] = []
    for r in slot_rows:
        if together(r, by_place.get((r["agent_id"], r["epoch"], r["seq"] + 1))):
            continue
        prev = by_place.get((r["agent_id"], r["epoch"], r["seq"] - 1))
        changed = together(prev, r)
        # The state change carries the agent's own count after the event: the one to show
        # (the projection's row adds a restock to a count that already holds it).
        own = prev if changed and prev is not None else r
        event = BoxEvent(
            site_id=r["site_id"], agent_id=r["agent_id"], box=r["box"], kind=r["kind"],
            occurred_at=utc(r["occurred_at"]), clock_synced=bool(r["clock_synced"]),
            slot=r["slot"], product=r["product"], quantity=r["quantity"], state=own["state"],
            count=own["count"], batch=r["batch"], expiry=r["expiry"], value=r["reason"],
            state_changed=changed or r["kind"] == "slot",
        )  # fmt: skip
        found.append(((event.occurred_at, int(r["stream_id"]), int(r["seq"])), event))
    for r in box_rows:
        event = BoxEvent(
            site_id=r["site_id"], agent_id=r["agent_id"], box=r["box"], kind=r["kind"],
            occurred_at=utc(r["occurred_at"]), clock_synced=bool(r["clock_synced"]),
            value=r["value"], detail=r["detail"], product_group=r["product_group"],
        )  # fmt: skip
        found.append(((event.occurred_at, int(r["stream_id"]), int(r["seq"])), event))
    found.sort(key=lambda pair: pair[0])
    return [event for _, event in found], cursor


def dispensed(conn: sa.Connection, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """Per (site, box), what the box itself recorded dispensing over ``[start, end)``."""
    s = cabinet_slot_log
    query = (
        sa.select(s.c.site_id, s.c.box, sa.func.sum(s.c.quantity))
        .where(s.c.kind == "dispense", s.c.occurred_at >= utc(start), s.c.occurred_at < utc(end))
        .group_by(s.c.site_id, s.c.box)
    )
    return {(str(site), str(box)): int(n or 0) for site, box, n in conn.execute(query)}


def known_boxes(conn: sa.Connection) -> list[tuple[str, str]]:
    """Every (site, box) with a slot: the dispensing points, those that gave nothing too."""
    s = cabinet_slots
    return [(str(a), str(b)) for a, b in conn.execute(sa.select(s.c.site_id, s.c.box).distinct())]
