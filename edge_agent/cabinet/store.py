"""The cabinet's tables in the outbox file: slots and their lots, the card registry and usage,
vends under way, board sequence numbers and restock orders.

Every function takes the ``Unit`` of an outbox transaction, so a stock change, a usage row and
the event that tells the server about them commit together or not at all.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from edge_agent.cabinet import stock
from edge_agent.cabinet.config import BoxConfig
from edge_agent.cabinet.quota import Card, Use
from edge_agent.outbox import DomainSchema, Unit
from edge_agent.wire import (
    CardsSyncCommand,
    CardsUsageCommand,
    GuestPolicy,
    QuotaRule,
    RestockOrderCommand,
)


def _cabinet_v1(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript would commit the outbox's migration transaction.
    for statement in _V1.split(";"):
        if statement.strip():
            db.execute(statement)


_V1 = """
        CREATE TABLE cabinet_slots (
            box TEXT NOT NULL, slot INTEGER NOT NULL, product TEXT NOT NULL,
            fault TEXT, count_needed INTEGER NOT NULL DEFAULT 0, reported TEXT NOT NULL,
            PRIMARY KEY (box, slot));
        CREATE TABLE cabinet_lots (
            box TEXT NOT NULL, slot INTEGER NOT NULL, position INTEGER NOT NULL,
            batch TEXT NOT NULL, expiry TEXT NOT NULL, count INTEGER NOT NULL CHECK (count > 0),
            PRIMARY KEY (box, slot, position));
        CREATE TABLE cabinet_cards (
            card TEXT PRIMARY KEY, status TEXT NOT NULL, role TEXT NOT NULL, grp TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE cabinet_registry (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE cabinet_usage (
            txn TEXT PRIMARY KEY, card TEXT NOT NULL, product_group TEXT NOT NULL,
            quantity INTEGER NOT NULL, at TEXT NOT NULL, box TEXT NOT NULL);
        CREATE INDEX cabinet_usage_card ON cabinet_usage (card, product_group, at);
        CREATE INDEX cabinet_usage_at ON cabinet_usage (at);
        CREATE TABLE cabinet_vends (
            txn TEXT PRIMARY KEY, box TEXT NOT NULL, slot INTEGER NOT NULL, seq INTEGER NOT NULL,
            product TEXT NOT NULL, card TEXT, started_at TEXT NOT NULL);
        CREATE TABLE cabinet_open_vends (box TEXT NOT NULL, at TEXT NOT NULL);
        CREATE TABLE cabinet_boards (box TEXT PRIMARY KEY, seq INTEGER NOT NULL);
        CREATE TABLE cabinet_orders (
            order_id TEXT PRIMARY KEY, box TEXT NOT NULL, body TEXT NOT NULL,
            received_at TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending');
        """


def _report_every_slot(db: sqlite3.Connection) -> None:
    """Before slots new to an agent were reported (``Books.first_reports``), they were stored as
    reported ``empty`` without a word: report every slot once more, so the county knows them."""
    db.execute("UPDATE cabinet_slots SET reported = ''")


#: The cabinet domain's tables in the outbox file.
SCHEMA = DomainSchema("cabinet", [_cabinet_v1, _report_every_slot])


# --- slots ----------------------------------------------------------------------------------


def load_slots(unit: Unit, box: BoxConfig) -> list[stock.Slot]:
    """The box's slots as stored, with any slot the configuration adds (empty, never reported:
    see ``records.Books.first_reports``) and the product the configuration gives each."""
    rows = {
        r[0]: r
        for r in unit.execute(
            "SELECT slot, product, fault, count_needed, reported FROM cabinet_slots WHERE box = ?",
            [box.id],
        )
    }
    lots: dict[int, list[stock.Lot]] = {}
    for slot, batch, expiry, count in unit.execute(
        "SELECT slot, batch, expiry, count FROM cabinet_lots WHERE box = ? ORDER BY slot, position",
        [box.id],
    ):
        lots.setdefault(slot, []).append(stock.Lot(batch, date.fromisoformat(expiry), count))
    slots = []
    for config in box.slots:
        row = rows.get(config.number)
        slot = stock.Slot(
            box.id,
            config.number,
            config.product,
            config.capacity,
            tuple(lots.get(config.number, ())),
            fault=row[2] if row else None,
            count_needed=bool(row[3]) if row else False,
            reported=(row[4] or None) if row else None,
        )
        slots.append(slot)
    return slots


def save_slot(unit: Unit, slot: stock.Slot) -> None:
    unit.execute(
        "INSERT OR REPLACE INTO cabinet_slots (box, slot, product, fault, count_needed, reported) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            slot.box,
            slot.number,
            slot.product,
            slot.fault,
            int(slot.count_needed),
            slot.reported or "",
        ],
    )
    unit.execute("DELETE FROM cabinet_lots WHERE box = ? AND slot = ?", [slot.box, slot.number])
    for position, lot in enumerate(slot.lots):
        unit.execute(
            "INSERT INTO cabinet_lots (box, slot, position, batch, expiry, count) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [slot.box, slot.number, position, lot.batch, lot.expiry.isoformat(), lot.count],
        )


# --- the registry -------------------------------------------------------------------------


def card(unit: Unit, pseudonym: str) -> Card | None:
    row = unit.execute(
        "SELECT status, role, grp FROM cabinet_cards WHERE card = ?", [pseudonym]
    ).fetchone()
    return Card(row[0], row[1], row[2]) if row else None


def _get(unit: Unit, key: str) -> Any:
    row = unit.execute("SELECT value FROM cabinet_registry WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else None


def _put(unit: Unit, key: str, value: Any) -> None:
    unit.execute(
        "INSERT OR REPLACE INTO cabinet_registry (key, value) VALUES (?, ?)",
        [key, json.dumps(value)],
    )


def version(unit: Unit) -> int:
    return int(_get(unit, "version") or 0)


@dataclass(frozen=True)
class Registry:
    """The rules the server's registry sent (``None``: none yet, the configuration's hold)."""

    version: int
    rules: list[QuotaRule] | None
    guest: GuestPolicy | None


def registry(unit: Unit) -> Registry:
    rules = _get(unit, "rules")
    guest = _get(unit, "guest")
    return Registry(
        version(unit),
        [QuotaRule.model_validate(r) for r in rules] if rules is not None else None,
        GuestPolicy.model_validate(guest) if guest is not None else None,
    )


def apply_sync(unit: Unit, body: CardsSyncCommand) -> tuple[bool, str]:
    held = version(unit)
    if body.version <= held:
        return True, f"registry v{held} already held; v{body.version} not needed"
    if not body.full and body.version_from != held:
        return False, f"registry v{held} held; this delta starts from v{body.version_from}"
    if body.full:
        unit.execute("DELETE FROM cabinet_cards")
    unit.execute(
        "CREATE TEMP TABLE IF NOT EXISTS cabinet_sync (card TEXT, status TEXT, role TEXT, grp TEXT)"
    )
    unit.execute("DELETE FROM cabinet_sync")
    for entry in body.cards:
        unit.execute(
            "INSERT INTO cabinet_sync VALUES (?, ?, ?, ?)",
            [entry.card, entry.status, entry.role, entry.group],
        )
    unit.execute(
        "INSERT OR REPLACE INTO cabinet_cards (card, status, role, grp) "
        "SELECT card, status, role, grp FROM cabinet_sync"
    )
    unit.execute("DELETE FROM cabinet_sync")
    if body.rules is not None:
        _put(unit, "rules", [r.model_dump(mode="json") for r in body.rules])
    if body.guest is not None:
        _put(unit, "guest", body.guest.model_dump(mode="json"))
    _put(unit, "version", body.version)
    kind = "full registry" if body.full else "delta"
    return True, f"{kind} v{body.version} applied ({len(body.cards)} cards)"


def apply_usage(unit: Unit, body: CardsUsageCommand) -> tuple[bool, str]:
    before = unit.execute("SELECT count(*) FROM cabinet_usage").fetchone()[0]
    for use in body.usage:
        add_use(unit, use.transaction, use.card, use.product_group, use.quantity, use.at, use.box)
    added = unit.execute("SELECT count(*) FROM cabinet_usage").fetchone()[0] - before
    return True, f"{added} takes on other boxes kept ({len(body.usage) - added} already known)"


def add_use(
    unit: Unit,
    transaction: uuid.UUID,
    card: str,
    product_group: str,
    quantity: int,
    at: datetime,
    box: str,
) -> None:
    unit.execute(
        "INSERT OR IGNORE INTO cabinet_usage (txn, card, product_group, quantity, at, box) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [str(transaction), card, product_group, quantity, _time(at), box],
    )


def uses(unit: Unit, card: str, product_group: str, since: datetime) -> list[Use]:
    return [
        Use(datetime.fromisoformat(at), quantity)
        for at, quantity in unit.execute(
            "SELECT at, quantity FROM cabinet_usage "
            "WHERE card = ? AND product_group = ? AND at > ?",
            [card, product_group, _time(since)],
        )
    ]


def forget_usage_before(unit: Unit, before: datetime) -> int:
    """Takes older than any rule's period count for nothing; keeps the table bounded."""
    return unit.execute("DELETE FROM cabinet_usage WHERE at < ?", [_time(before)]).rowcount


# --- vends under way and the boards' numbering ----------------------------------------------


@dataclass(frozen=True)
class Intent:
    transaction: uuid.UUID
    box: str
    slot: int
    seq: int
    product: str
    card: str | None
    started_at: datetime


def begin_vend(unit: Unit, intent: Intent) -> None:
    """Committed before the vend frame goes out: after a power loss, this is what to ask about."""
    unit.execute(
        "INSERT INTO cabinet_vends (txn, box, slot, seq, product, card, started_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            str(intent.transaction),
            intent.box,
            intent.slot,
            intent.seq,
            intent.product,
            intent.card,
            _time(intent.started_at),
        ],
    )
    save_seq(unit, intent.box, intent.seq)


def end_vend(unit: Unit, transaction: uuid.UUID) -> bool:
    """Forget a vend whose outcome is recorded; ``False`` if it was recorded already."""
    deleted = unit.execute("DELETE FROM cabinet_vends WHERE txn = ?", [str(transaction)])
    return deleted.rowcount == 1


def vends_under_way(unit: Unit, box: str) -> list[Intent]:
    return [
        Intent(uuid.UUID(t), b, slot, seq, product, card, datetime.fromisoformat(at))
        for t, b, slot, seq, product, card, at in unit.execute(
            "SELECT txn, box, slot, seq, product, card, started_at FROM cabinet_vends "
            "WHERE box = ? ORDER BY started_at",
            [box],
        )
    ]


def saved_seq(unit: Unit, box: str) -> int:
    row = unit.execute("SELECT seq FROM cabinet_boards WHERE box = ?", [box]).fetchone()
    return int(row[0]) if row else 0


def save_seq(unit: Unit, box: str, seq: int) -> None:
    unit.execute("INSERT OR REPLACE INTO cabinet_boards (box, seq) VALUES (?, ?)", [box, seq])


def open_vends(unit: Unit, box: str, since: datetime) -> list[datetime]:
    return [
        datetime.fromisoformat(at)
        for (at,) in unit.execute(
            "SELECT at FROM cabinet_open_vends WHERE box = ? AND at > ?", [box, _time(since)]
        )
    ]


def add_open_vend(unit: Unit, box: str, at: datetime, forget_before: datetime) -> None:
    unit.execute(
        "DELETE FROM cabinet_open_vends WHERE box = ? AND at < ?", [box, _time(forget_before)]
    )
    unit.execute("INSERT INTO cabinet_open_vends (box, at) VALUES (?, ?)", [box, _time(at)])


# --- restock orders -----------------------------------------------------------------------


def store_order(unit: Unit, order: RestockOrderCommand, received_at: datetime) -> None:
    unit.execute(
        "INSERT OR REPLACE INTO cabinet_orders (order_id, box, body, received_at, state) "
        "VALUES (?, ?, ?, ?, 'pending')",
        [order.order_id, order.box, order.model_dump_json(), _time(received_at)],
    )


def pending_orders(unit: Unit, box: str) -> list[RestockOrderCommand]:
    return [
        RestockOrderCommand.model_validate_json(body)
        for (body,) in unit.execute(
            "SELECT body FROM cabinet_orders WHERE box = ? AND state = 'pending' "
            "ORDER BY received_at",
            [box],
        )
    ]


def close_orders(unit: Unit, order_ids: Iterable[str], state: str) -> None:
    for order_id in order_ids:
        unit.execute("UPDATE cabinet_orders SET state = ? WHERE order_id = ?", [state, order_id])


def _time(at: datetime) -> str:
    """UTC ISO text with fixed precision, which sorts as time does (the usage window is a text
    comparison)."""
    if at.tzinfo is None:
        raise ValueError("a naive time cannot be stored")
    return at.astimezone(UTC).isoformat(timespec="microseconds")
