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

from collections import defaultdict
from collections.abc import Iterable
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
    kinds = KINDS

    def apply(self, conn: sa.Connection, run: Run) -> None:
        stream_id = conn.execute(
            sa.select(streams.c.id).where(
                streams.c.agent_id == run.agent_id, streams.c.epoch == run.epoch
            )
        ).scalar_one()
        for event in run.events:
            if not _first_time(conn, stream_id, run, event):
                continue
            payload: Any = getattr(event, "payload", None)
            if isinstance(payload, en.ProductEntry | en.BatchEntry | en.SiteEntry):
                _master(conn, payload)
                continue
            if isinstance(payload, Dispense | Restocked | Removed | Counted):
                moves, short = rules.from_box(
                    run.site_id, payload, lambda b, p, n: held(conn, b, p, n),
                    lambda b: lots(conn, b),
                )  # fmt: skip
                by = None
            elif isinstance(payload, en.MovementEntry):
                moves, short, by = rules.movements(payload), [], payload.by
            else:
                continue
            at = run.when(event)
            _write(conn, stream_id, run, event, at, moves, short, by)

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


def _first_time(conn: sa.Connection, stream_id: int, run: Run, event: Event) -> bool:
    done = conn.execute(
        insert_ignore(conn, ledger_events).values(
            stream_id=stream_id, seq=event.seq, agent_id=run.agent_id, epoch=run.epoch,
            kind=event.kind,
        )
    )  # fmt: skip
    return bool(done.rowcount)


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


def _write(
    conn: sa.Connection,
    stream_id: int,
    run: Run,
    event: Event,
    at: tuple[datetime, bool],
    moves: list[Movement],
    short: list[Discrepancy],
    by: str | None,
) -> None:
    occurred_at, corrected = at
    dating = {
        "occurred_at": occurred_at, "agent_occurred_at": event.occurred_at,
        "clock_synced": event.clock_synced, "time_corrected": corrected,
        "boot_id": event.boot_id, "mono_s": event.mono_s,
    }  # fmt: skip
    place = {"stream_id": stream_id, "seq": event.seq, "agent_id": run.agent_id,
             "epoch": run.epoch}  # fmt: skip
    if moves:
        conn.execute(
            ledger_movements.insert(),
            [
                {**place, **dating, **_columns(m), "line": line, "entered_by": by}
                for line, m in enumerate(moves)
            ],
        )
        delta: dict[tuple[Bucket, str, str], int] = defaultdict(int)
        for m in moves:
            delta[(m.source, m.product, m.batch)] -= m.quantity
            delta[(m.target, m.product, m.batch)] += m.quantity
        _add_stock(conn, ((k, v) for k, v in delta.items() if v))
    if short:
        conn.execute(
            ledger_discrepancies.insert(),
            [
                {**place, **dating, "what": d.what, "site": d.bucket.site,
                 "place": d.bucket.place, "slot": d.bucket.slot, "product": d.product,
                 "batch": d.batch, "books": d.books, "needed": d.needed}
                for d in short
            ],
        )  # fmt: skip


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
    s = ledger_stock
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for (bucket, product, batch), quantity in sorted(changes):
        stmt = dialect.insert(s).values(
            site=bucket.site, place=bucket.place, slot=bucket.slot, zone=bucket.zone,
            product=product, batch=batch, quantity=quantity,
        )  # fmt: skip
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["site", "place", "slot", "zone", "product", "batch"],
                set_={"quantity": s.c.quantity + stmt.excluded.quantity},
            )
        )


def held(conn: sa.Connection, bucket: Bucket, product: str, batch: str) -> int:
    s = ledger_stock
    found = conn.execute(
        sa.select(s.c.quantity).where(
            s.c.site == bucket.site, s.c.place == bucket.place, s.c.slot == bucket.slot,
            s.c.zone == bucket.zone, s.c.product == product, s.c.batch == batch,
        )
    ).scalar()  # fmt: skip
    return int(found or 0)


def lots(conn: sa.Connection, bucket: Bucket) -> dict[tuple[str, str], int]:
    s = ledger_stock
    rows = conn.execute(
        sa.select(s.c.product, s.c.batch, s.c.quantity).where(
            s.c.site == bucket.site, s.c.place == bucket.place, s.c.slot == bucket.slot,
            s.c.zone == bucket.zone, s.c.quantity != 0,
        )
    )  # fmt: skip
    return {(p, b): int(q) for p, b, q in rows}
