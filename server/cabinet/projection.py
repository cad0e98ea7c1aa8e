"""The cabinet projection: slots, box states, faults and card usage from the boxes' events.

An event's place is (stream id, seq): streams are numbered as an agent's outbox epochs appear,
so it orders events across epochs whatever the agent's clock said. Slot states are kept as a
history (``cabinet_slot_log``, each row the slot's whole state after its event, a restock adding
to the count before it) and the newest row of each slot is copied to ``cabinet_slots``. A replay
resets one stream at a time and applies it again; because the state before an event is read
from the history *before its place*, a slot comes out the same whichever of an agent's streams
is replayed, and ``reset`` rebuilds ``cabinet_slots`` from what history remains.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from edge_agent.wire import (
    BOARD_NOT_READY,
    BoardState,
    BoardStateEvent,
    Counted,
    CountedEvent,
    Dispense,
    DispenseEvent,
    DoorChanged,
    DoorEvent,
    Event,
    Removed,
    RemovedEvent,
    Restocked,
    RestockedEvent,
    SlotState,
    SlotStateEvent,
    TakeRefusedEvent,
    TamperEvent,
    VendFailedEvent,
    VendUnknownEvent,
)
from server.ingest.journal import insert_ignore
from server.ingest.timefix import BootRef
from server.projections import Run, redate_rows
from server.store.schema import (
    cabinet_box_log,
    cabinet_faults,
    cabinet_slot_log,
    cabinet_slots,
    cabinet_usage,
    streams,
)

KINDS = frozenset(
    {
        "cabinet.dispense",
        "cabinet.vend_failed",
        "cabinet.vend_unknown",
        "cabinet.refused",
        "cabinet.slot",
        "cabinet.restock",
        "cabinet.remove",
        "cabinet.count",
        "cabinet.door",
        "cabinet.tamper",
        "cabinet.board",
    }
)
#: Slot states that end a slot's vend fault.
_SOUND_STATES = frozenset({"ok", "low", "empty", "expired"})
_DATED = (cabinet_slot_log, cabinet_box_log, cabinet_faults, cabinet_usage)


@dataclass(frozen=True)
class SlotNow:
    """A slot's state after an event; ``None`` where nothing has told it yet."""

    product: str
    state: str | None = None
    count: int | None = None
    batch: str | None = None
    expiry: date | None = None


@dataclass(frozen=True)
class _Place:
    stream_id: int
    seq: int

    def before(self, table: sa.Table) -> sa.ColumnElement[bool]:
        return sa.or_(
            table.c.stream_id < self.stream_id,
            sa.and_(table.c.stream_id == self.stream_id, table.c.seq < self.seq),
        )


class CabinetProjection:
    name = "cabinet"
    rebuilt = True
    kinds = KINDS

    def apply(self, conn: sa.Connection, run: Run) -> None:
        stream_id = conn.execute(
            sa.select(streams.c.id).where(
                streams.c.agent_id == run.agent_id, streams.c.epoch == run.epoch
            )
        ).scalar_one()
        _Applying(conn, run, stream_id).all()

    def redate(self, conn: sa.Connection, agent_id: str, boot_id: str, ref: BootRef) -> int:
        fixed = redate_rows(conn, _DATED, agent_id, boot_id, ref)
        if fixed:
            log = cabinet_slot_log
            newest = (
                sa.select(log.c.occurred_at)
                .where(
                    log.c.agent_id == cabinet_slots.c.agent_id,
                    log.c.epoch == cabinet_slots.c.epoch,
                    log.c.seq == cabinet_slots.c.seq,
                )
                .scalar_subquery()
            )
            conn.execute(
                cabinet_slots.update()
                .where(cabinet_slots.c.agent_id == agent_id)
                .values(changed_at=newest)
            )
        return fixed

    def reset(self, conn: sa.Connection, agent_id: str, epoch: str) -> None:
        for table in _DATED:
            conn.execute(table.delete().where(table.c.agent_id == agent_id, table.c.epoch == epoch))
        f = cabinet_faults
        conn.execute(
            f.update()
            .where(f.c.agent_id == agent_id, f.c.cleared_epoch == epoch)
            .values(cleared_at=None, cleared_epoch=None, cleared_seq=None)
        )
        rebuild_slots(conn, agent_id)


def rebuild_slots(conn: sa.Connection, agent_id: str) -> None:
    """``cabinet_slots`` of one agent again from the newest history row of each slot."""
    log = cabinet_slot_log
    conn.execute(cabinet_slots.delete().where(cabinet_slots.c.agent_id == agent_id))
    ranked = (
        sa.select(
            log,
            sa.func.row_number()
            .over(
                partition_by=(log.c.box, log.c.slot),
                order_by=(log.c.stream_id.desc(), log.c.seq.desc()),
            )
            .label("rank"),
        )
        .where(log.c.agent_id == agent_id)
        .subquery()
    )
    rows = conn.execute(sa.select(ranked).where(ranked.c.rank == 1)).mappings().all()
    if rows:
        conn.execute(cabinet_slots.insert(), [_slot_row(r, r["occurred_at"]) for r in rows])


def _slot_row(r: Any, changed_at: datetime) -> dict[str, object]:
    keep = ("agent_id", "box", "slot", "site_id", "epoch", "stream_id", "seq", "product")
    out: dict[str, object] = {k: r[k] for k in keep}
    out.update(state=r["state"], count=r["count"], batch=r["batch"], expiry=r["expiry"])
    out["changed_at"] = changed_at
    return out


class _Applying:
    """One run of one stream: rows gathered in order, written at the end, slot states carried
    from event to event in memory and read from the history once per slot."""

    def __init__(self, conn: sa.Connection, run: Run, stream_id: int) -> None:
        self.conn, self.run, self.stream_id = conn, run, stream_id
        self.slots: dict[tuple[str, int], SlotNow | None] = {}
        self.slot_rows: list[dict[str, Any]] = []
        self.box_rows: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.usage: list[dict[str, Any]] = []

    def all(self) -> None:
        for e in self.run.events:
            self.one(e)
        conn = self.conn
        for table, rows in (
            (cabinet_slot_log, self.slot_rows),
            (cabinet_box_log, self.box_rows),
            (cabinet_faults, self.faults),
        ):
            if rows:
                conn.execute(table.insert(), rows)
        if self.usage:
            conn.execute(insert_ignore(conn, cabinet_usage), self.usage)
        newest: dict[tuple[str, int], dict[str, Any]] = {}
        for row in self.slot_rows:
            newest[(row["box"], row["slot"])] = row
        for row in newest.values():
            self._keep_newest(row)

    def _common(self, e: Event, box: str) -> dict[str, Any]:
        when, corrected = self.run.when(e)
        return {
            "agent_id": self.run.agent_id,
            "epoch": self.run.epoch,
            "stream_id": self.stream_id,
            "seq": e.seq,
            "site_id": self.run.site_id,
            "box": box,
            "occurred_at": when,
            "agent_occurred_at": e.occurred_at,
            "clock_synced": e.clock_synced,
            "time_corrected": corrected,
            "boot_id": e.boot_id,
            "mono_s": e.mono_s,
        }

    def one(self, e: Event) -> None:
        if isinstance(e, DispenseEvent):
            self._dispense(e, e.payload)
        elif isinstance(e, VendFailedEvent) and e.payload.reason in BOARD_NOT_READY:
            # The board could not vend just then: neither the slot nor the box is at fault.
            self._box(e, e.payload.box, "not_ready", e.payload.reason, str(e.payload.slot))
        elif isinstance(e, VendFailedEvent | VendUnknownEvent):
            p = e.payload
            failed = isinstance(e, VendFailedEvent)
            kind = "vend_failed" if failed else "vend_unknown"
            was = self._before(e, p.box, p.slot, p.product)
            self._slot(e, p.box, p.slot, kind, None,
                       replace(was, state="faulty" if failed else "count_needed"))  # fmt: skip
            self._fault(e, p.box, p.slot, kind, p.reason)
        elif isinstance(e, SlotStateEvent):
            self._slot_state(e, e.payload)
        elif isinstance(e, RestockedEvent):
            self._restock(e, e.payload)
        elif isinstance(e, RemovedEvent):
            self._remove(e, e.payload)
        elif isinstance(e, CountedEvent):
            self._count(e, e.payload)
        elif isinstance(e, TakeRefusedEvent):
            r = e.payload
            self._box(e, r.box, "refused", r.reason, None, r.product_group)
        elif isinstance(e, DoorEvent):
            self._door(e, e.payload)
        elif isinstance(e, TamperEvent):
            m = e.payload
            self._box(e, m.box, "tamper", m.reason, f"{m.open_s:.0f}")
            self._fault(e, m.box, None, "tamper", m.reason)
        elif isinstance(e, BoardStateEvent):
            self._board(e, e.payload)

    def _dispense(self, e: Event, p: Dispense) -> None:
        was = self._before(e, p.box, p.slot, p.product)
        now = replace(was, product=p.product, count=p.remaining, batch=p.batch, expiry=p.expiry)
        self._slot(e, p.box, p.slot, "dispense", p.quantity, now)
        if p.card is not None:
            self.usage.append(
                {**self._common(e, p.box), "transaction_id": str(p.transaction),
                 "card": p.card, "product_group": p.product_group, "quantity": p.quantity}
            )  # fmt: skip

    def _slot_state(self, e: Event, p: SlotState) -> None:
        was = self._before(e, p.box, p.slot, p.product)
        now = replace(was, product=p.product, state=p.state, count=p.count,
                      batch=p.batch or was.batch, expiry=p.expiry or was.expiry)  # fmt: skip
        self._slot(e, p.box, p.slot, "slot", None, now)
        if p.state in _SOUND_STATES:
            self._clear(e, p.box, ("vend_failed", "vend_unknown"), p.slot)

    def _restock(self, e: Event, p: Restocked) -> None:
        """Units go behind those already there: the head stays unless the slot was empty."""
        was = self._before(e, p.box, p.slot, p.product)
        now = replace(was, count=(was.count or 0) + p.quantity)
        if not (was.count and was.batch):
            now = replace(now, batch=p.batch, expiry=p.expiry)
        self._slot(e, p.box, p.slot, "restock", p.quantity, now)
        self._clear(e, p.box, ("vend_failed",), p.slot)

    def _remove(self, e: Event, p: Removed) -> None:
        was = self._before(e, p.box, p.slot, p.product)
        count = None if was.count is None else max(0, was.count - p.quantity)
        self._slot(e, p.box, p.slot, "remove", p.quantity, replace(was, count=count))

    def _count(self, e: Event, p: Counted) -> None:
        """A count settles the slot: its lines, in queue order, give the head."""
        was = self._before(e, p.box, p.slot, p.product)
        head = next((line for line in p.lines if line.quantity > 0), None)
        now = replace(was, count=p.counted, batch=head.batch if head else None,
                      expiry=head.expiry if head else None)  # fmt: skip
        self._slot(e, p.box, p.slot, "count", p.counted, now)
        self._clear(e, p.box, ("vend_failed", "vend_unknown"), p.slot)

    def _door(self, e: Event, p: DoorChanged) -> None:
        by = "technician" if p.technician is not None else None
        self._box(e, p.box, "door", p.state, by)
        if p.state == "closed":
            self._clear(e, p.box, ("tamper",), reason="door_left_open")
        if p.technician is not None:
            self._clear(e, p.box, ("tamper",), reason="door_without_card")

    def _board(self, e: Event, p: BoardState) -> None:
        firmware = None if p.firmware is None else str(p.firmware)
        self._box(e, p.box, "board", p.state, firmware)
        if p.state == "offline":
            self._fault(e, p.box, None, "board_offline", p.state)
        elif p.state == "drop_sensor_fault":
            self._fault(e, p.box, None, "drop_sensor", p.state)
        else:
            self._clear(e, p.box, ("board_offline", "drop_sensor"))

    # --- slots --------------------------------------------------------------------------------

    def _before(self, e: Event, box: str, slot: int, product: str) -> SlotNow:
        """The slot's state just before ``e``: from this run, or the history before its place."""
        key = (box, slot)
        if key not in self.slots:
            log = cabinet_slot_log
            row = self.conn.execute(
                sa.select(log.c.product, log.c.state, log.c.count, log.c.batch, log.c.expiry)
                .where(
                    log.c.agent_id == self.run.agent_id,
                    log.c.box == box,
                    log.c.slot == slot,
                    _Place(self.stream_id, e.seq).before(log),
                )
                .order_by(log.c.stream_id.desc(), log.c.seq.desc())
                .limit(1)
            ).one_or_none()
            self.slots[key] = None if row is None else SlotNow(*row)
        return self.slots[key] or SlotNow(product)

    def _slot(
        self, e: Event, box: str, slot: int, kind: str, quantity: int | None, now: SlotNow
    ) -> None:
        self.slots[(box, slot)] = now
        self.slot_rows.append(
            {**self._common(e, box), "slot": slot, "kind": kind, "quantity": quantity,
             "product": now.product, "state": now.state, "count": now.count,
             "batch": now.batch, "expiry": now.expiry}
        )  # fmt: skip

    def _keep_newest(self, row: dict[str, Any]) -> None:
        """Copy a slot's newest row of this run to ``cabinet_slots`` unless a later one is there
        (a replay of an older stream)."""
        s = cabinet_slots
        key = sa.and_(
            s.c.agent_id == row["agent_id"], s.c.box == row["box"], s.c.slot == row["slot"]
        )
        there = self.conn.execute(sa.select(s.c.stream_id, s.c.seq).where(key)).one_or_none()
        values = _slot_row(row, row["occurred_at"])
        if there is None:
            self.conn.execute(s.insert().values(**values))
        elif (there.stream_id, there.seq) < (row["stream_id"], row["seq"]):
            self.conn.execute(s.update().where(key).values(**values))

    # --- boxes and faults -----------------------------------------------------------------------

    def _box(
        self,
        e: Event,
        box: str,
        kind: str,
        value: str,
        detail: str | None,
        product_group: str | None = None,
    ) -> None:
        self.box_rows.append(
            {**self._common(e, box), "kind": kind, "value": value, "detail": detail,
             "product_group": product_group}
        )  # fmt: skip

    def _fault(self, e: Event, box: str, slot: int | None, kind: str, reason: str) -> None:
        self.faults.append(
            {**self._common(e, box), "slot": slot, "kind": kind, "reason": reason,
             "cleared_at": None, "cleared_epoch": None, "cleared_seq": None}
        )  # fmt: skip

    def _clear(
        self,
        e: Event,
        box: str,
        kinds: tuple[str, ...],
        slot: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Close the box's open faults of ``kinds`` (of ``slot``, with ``reason``) that came
        before ``e``: those of this run in memory, earlier ones in the table."""
        when = self.run.when(e)[0]
        cleared = {"cleared_at": when, "cleared_epoch": self.run.epoch, "cleared_seq": e.seq}
        for f in self.faults:
            if (
                f["box"] == box
                and f["kind"] in kinds
                and f["cleared_at"] is None
                and (slot is None or f["slot"] == slot)
                and (reason is None or f["reason"] == reason)
            ):
                f.update(cleared)
        t = cabinet_faults
        query = t.update().where(
            t.c.agent_id == self.run.agent_id,
            t.c.box == box,
            t.c.kind.in_(kinds),
            t.c.cleared_at.is_(None),
            _Place(self.stream_id, e.seq).before(t),
        )
        if slot is not None:
            query = query.where(t.c.slot == slot)
        if reason is not None:
            query = query.where(t.c.reason == reason)
        self.conn.execute(query.values(**cleared))
