"""The ledger projection: master data, movements and stock from the county's entries and the
boxes' events (``rules.py`` says what each moves).

Each event is applied once: ``ledger_events`` keeps its place (stream id, seq), and an event
found there already is skipped, so applying a run again changes nothing. Movements are
appended; ``ledger_stock`` is updated with each, in the same transaction, so it always equals the
sum of the movements. A replay resets one stream (its movements subtracted from the stock, its
rows removed) and applies it again.

A box's count is settled against the books as they stand when it is applied; after an outbox
reset (a second stream of the same agent) or a county adjustment of a box's slot, a replay of an
older stream may settle it against a slightly different figure. The stock still equals the sum
of the movements; only how the variance is split between the events differs.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from edge_agent.wire import Counted, Dispense, Event, Removed, Restocked
from server.ingest.journal import insert_ignore
from server.ingest.timefix import BootRef
from server.ledger import entries as en
from server.ledger import rules
from server.ledger.rules import Bucket, Discrepancy, Movement
from server.projections import Run, redate_rows
from server.store.schema import (
    ledger_batches,
    ledger_discrepancies,
    ledger_events,
    ledger_movements,
    ledger_products,
    ledger_sites,
    ledger_stock,
    streams,
)

BOX_KINDS = frozenset({"cabinet.dispense", "cabinet.restock", "cabinet.remove", "cabinet.count"})
KINDS = BOX_KINDS | frozenset(en.KINDS)
_DATED = (ledger_movements, ledger_discrepancies)


class LedgerProjection:
    name = "ledger"
    rebuilt = True
    kinds = KINDS

    def apply(self, conn: sa.Connection, run: Run) -> None:
        """The run's movements are collected with what they change (``overlay``: each event sees
        the ones before it) and written at the end, one statement per table."""
        stream_id = conn.execute(
            sa.select(streams.c.id).where(
                streams.c.agent_id == run.agent_id, streams.c.epoch == run.epoch
            )
        ).scalar_one()
        overlay = rules.Books()
        written = _Rows()
        for event in _first_times(conn, stream_id, run):
            payload: Any = getattr(event, "payload", None)
            if isinstance(payload, en.ProductEntry | en.BatchEntry | en.SiteEntry):
                _master(conn, payload)
                continue
            if isinstance(payload, Dispense | Restocked | Removed | Counted):
                moves, short = rules.from_box(
                    run.site_id, payload,
                    lambda b, p, n: held(conn, b, p, n) + overlay.held(b, p, n),
                    lambda b: _merged(lots(conn, b), overlay.lots(b)),
                )  # fmt: skip
                by = None
            elif isinstance(payload, en.MovementEntry):
                moves, short, by = rules.movements(payload), [], payload.by
            else:
                continue
            overlay.apply(moves)
            written.add(stream_id, run, event, run.when(event), moves, short, by)
        written.flush(conn)
        _add_stock(conn, ((k, v) for k, v in overlay.stock.items() if v))

    def redate(self, conn: sa.Connection, agent_id: str, boot_id: str, ref: BootRef) -> int:
        return redate_rows(conn, _DATED, agent_id, boot_id, ref)

    def reset(self, conn: sa.Connection, agent_id: str, epoch: str) -> None:
        m = ledger_movements
        mine = sa.and_(m.c.agent_id == agent_id, m.c.epoch == epoch)
        undo: dict[tuple[Bucket, str, str], int] = defaultdict(int)
        for row in conn.execute(sa.select(m).where(mine)):
            move = _movement(row)
            undo[(move.source, move.product, move.batch)] += move.quantity
            undo[(move.target, move.product, move.batch)] -= move.quantity
        _add_stock(conn, ((k, v) for k, v in undo.items() if v))
        conn.execute(m.delete().where(mine))
        d = ledger_discrepancies
        conn.execute(d.delete().where(d.c.agent_id == agent_id, d.c.epoch == epoch))
        e = ledger_events
        conn.execute(e.delete().where(e.c.agent_id == agent_id, e.c.epoch == epoch))
        if agent_id == _county_agent():
            for table in (ledger_products, ledger_batches, ledger_sites):
                conn.execute(table.delete())


def _county_agent() -> str:
    from server.entries import COUNTY_AGENT

    return COUNTY_AGENT


def _first_times(conn: sa.Connection, stream_id: int, run: Run) -> list[Event]:
    """The run's events not applied before, now marked applied. Under the agent's lock (ingest
    and replay hold it), so what the select finds is what the insert would."""
    if not run.events:
        return []
    e = ledger_events
    seqs = [event.seq for event in run.events]
    seen = set(
        conn.execute(
            sa.select(e.c.seq).where(
                e.c.stream_id == stream_id, e.c.seq.between(min(seqs), max(seqs))
            )
        ).scalars()
    )
    fresh = {event.seq: event for event in run.events if event.seq not in seen}
    if fresh:
        conn.execute(
            insert_ignore(conn, e),
            [
                {"stream_id": stream_id, "seq": seq, "agent_id": run.agent_id,
                 "epoch": run.epoch, "kind": event.kind}
                for seq, event in fresh.items()
            ],
        )  # fmt: skip
    return list(fresh.values())


def _merged(*parts: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for part in parts:
        for key, quantity in part.items():
            out[key] += quantity
    return {k: v for k, v in out.items() if v}


def _master(conn: sa.Connection, entry: en.ProductEntry | en.BatchEntry | en.SiteEntry) -> None:
    values: dict[str, Any]
    if isinstance(entry, en.ProductEntry):
        table, values = ledger_products, {
            "product": entry.product, "name_zh": entry.name_zh, "name_en": entry.name_en,
            "unit_zh": entry.unit_zh, "unit_en": entry.unit_en, "storeroom": entry.storeroom,
            "product_group": entry.group,
        }  # fmt: skip
        keys = ["product"]
    elif isinstance(entry, en.BatchEntry):
        table, values = ledger_batches, {
            "product": entry.product, "batch": entry.batch, "expiry": entry.expiry,
            "manufacturer": entry.manufacturer,
        }  # fmt: skip
        keys = ["product", "batch"]
    else:
        table, values = ledger_sites, {
            "site": entry.site, "name": entry.name, "level": entry.level, "parent": entry.parent,
        }  # fmt: skip
        keys = ["site"]
    _upsert(conn, table, values, keys)


def _upsert(conn: sa.Connection, table: sa.Table, values: dict[str, Any], keys: list[str]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values)
    rest = {k: v for k, v in values.items() if k not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=rest))


@dataclass
class _Rows:
    """A run's movement and discrepancy rows, written together."""

    movements: list[dict[str, Any]] = field(default_factory=list)
    discrepancies: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        stream_id: int,
        run: Run,
        event: Event,
        at: tuple[datetime, bool],
        moves: list[Movement],
        short: list[Discrepancy],
        by: str | None,
    ) -> None:
        occurred_at, corrected = at
        common = {
            "stream_id": stream_id, "seq": event.seq, "agent_id": run.agent_id,
            "epoch": run.epoch, "occurred_at": occurred_at,
            "agent_occurred_at": event.occurred_at, "clock_synced": event.clock_synced,
            "time_corrected": corrected, "boot_id": event.boot_id, "mono_s": event.mono_s,
        }  # fmt: skip
        self.movements += [
            {**common, **_columns(m), "line": line, "entered_by": by}
            for line, m in enumerate(moves)
        ]
        self.discrepancies += [
            {**common, "what": d.what, "site": d.bucket.site, "place": d.bucket.place,
             "slot": d.bucket.slot, "product": d.product, "batch": d.batch, "books": d.books,
             "needed": d.needed}
            for d in short
        ]  # fmt: skip

    def flush(self, conn: sa.Connection) -> None:
        if self.movements:
            conn.execute(ledger_movements.insert(), self.movements)
        if self.discrepancies:
            conn.execute(ledger_discrepancies.insert(), self.discrepancies)


def _columns(m: Movement) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": m.kind, "product": m.product, "batch": m.batch, "quantity": m.quantity,
        "reason": m.reason,
    }  # fmt: skip
    for side, b in (("from", m.source), ("to", m.target)):
        out |= {f"{side}_site": b.site, f"{side}_place": b.place, f"{side}_slot": b.slot,
                f"{side}_zone": b.zone}  # fmt: skip
    return out


def _movement(row: Any) -> Movement:
    return Movement(
        row.kind, row.product, row.batch, int(row.quantity),
        Bucket(row.from_site, row.from_place, row.from_slot, row.from_zone),
        Bucket(row.to_site, row.to_place, row.to_slot, row.to_zone), row.reason,
    )  # fmt: skip


def _add_stock(conn: sa.Connection, changes: Iterable[tuple[tuple[Bucket, str, str], int]]) -> None:
    """Add to what buckets hold, in one statement; in key order, so two transactions that
    touch the same buckets take their row locks in the same order."""
    rows = [
        {"site": bucket.site, "place": bucket.place, "slot": bucket.slot, "zone": bucket.zone,
         "product": product, "batch": batch, "quantity": quantity}
        for (bucket, product, batch), quantity in sorted(changes)
    ]  # fmt: skip
    if rows:
        conn.execute(_stock_upsert(conn.dialect.name), rows)


@functools.cache
def _stock_upsert(dialect_name: str) -> Any:
    s = ledger_stock
    stmt = (postgresql if dialect_name == "postgresql" else sqlite).insert(s)
    return stmt.on_conflict_do_update(
        index_elements=["site", "place", "slot", "zone", "product", "batch"],
        set_={"quantity": s.c.quantity + stmt.excluded.quantity},
    )


def _in_bucket() -> sa.ColumnElement[bool]:
    s = ledger_stock
    return sa.and_(*(getattr(s.c, k) == sa.bindparam(k) for k in ("site", "place", "slot", "zone")))


#: Built once: per event, building a statement cost more than running it.
_HELD = sa.select(ledger_stock.c.quantity).where(
    _in_bucket(), ledger_stock.c.product == sa.bindparam("product"),
    ledger_stock.c.batch == sa.bindparam("batch"),
)  # fmt: skip
_LOTS = sa.select(ledger_stock.c.product, ledger_stock.c.batch, ledger_stock.c.quantity).where(
    _in_bucket(), ledger_stock.c.quantity != 0
)


def _bucket_params(bucket: Bucket) -> dict[str, Any]:
    return {"site": bucket.site, "place": bucket.place, "slot": bucket.slot, "zone": bucket.zone}


def held(conn: sa.Connection, bucket: Bucket, product: str, batch: str) -> int:
    found = conn.execute(_HELD, {**_bucket_params(bucket), "product": product, "batch": batch})
    return int(found.scalar() or 0)


def lots(conn: sa.Connection, bucket: Bucket) -> dict[tuple[str, str], int]:
    rows = conn.execute(_LOTS, _bucket_params(bucket))
    return {(p, b): int(q) for p, b, q in rows}
