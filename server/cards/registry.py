"""Writing the card registry: issue, status, quota rules, guest policy, each a new version.

Cards are kept by pseudonym only; whoever calls in here has already hashed the card (the CLI
does it the moment it reads a number). Every change takes the next version from the counter row
``card_registry``, which each writing transaction updates first: on PostgreSQL that is a row
lock held to the commit, on SQLite the database's write lock, so with any number of processes
versions are distinct and become visible in their order (a reader that sees version n sees
every change up to n, which is what the sync relies on). Each change is logged in
``card_changes`` with its version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

import sqlalchemy as sa

from edge_agent.wire import GuestPolicy, QuotaRule
from server.ingest.journal import insert_ignore
from server.store.schema import card_changes, card_holders, card_registry, cards, quota_rules

Status = Literal["active", "lost", "revoked"]
Role = Literal["villager", "technician"]
Change = Literal["issued", "reissued", "updated", "unchanged"]
CHANGES: tuple[Change, ...] = get_args(Change)

#: Pseudonyms looked up at a time when many cards are issued at once (an import).
LOOKUP_CHUNK = 500
#: Changes logged one line each; more (an import) are logged as one line.
LOG_EACH = 20
log = logging.getLogger(__name__)


class RegistryError(Exception):
    """A registry request that cannot be done; ``key`` names the people's text (``i18n``)."""

    def __init__(self, key: str, **fields: object) -> None:
        super().__init__(key)
        self.key = key
        self.fields = fields


@dataclass(frozen=True)
class Holder:
    name: str | None = None
    phone: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Issue:
    """A card to register (or re-register) as active, with this role and group if given."""

    pseudonym: str
    role: Role | None = None
    group: str | None = None
    holder: Holder | None = None


@dataclass(frozen=True)
class Outcome:
    pseudonym: str
    change: Change
    #: The version of the change; for ``unchanged``, the card's current version.
    version: int
    role: str = ""
    group: str = ""


def lock(conn: sa.Connection) -> int:
    """Take the registry's write lock (the counter row, created if missing) and return its
    version. Must be the transaction's first statement, so SQLite takes its write lock before
    anything is read."""
    conn.execute(insert_ignore(conn, card_registry).values(id=1))
    conn.execute(
        card_registry.update()
        .where(card_registry.c.id == 1)
        .values(version=card_registry.c.version)
    )
    return int(
        conn.execute(sa.select(card_registry.c.version).where(card_registry.c.id == 1)).scalar_one()
    )


def _take(conn: sa.Connection, n: int) -> int:
    """Reserve ``n`` versions (under the lock); return the first."""
    conn.execute(
        card_registry.update()
        .where(card_registry.c.id == 1)
        .values(version=card_registry.c.version + n)
    )
    last = conn.execute(sa.select(card_registry.c.version).where(card_registry.c.id == 1))
    return int(last.scalar_one()) - n + 1


def _log(conn: sa.Connection, rows: list[dict[str, object]]) -> None:
    """Keep the changes in ``card_changes``, and say them in the log (an import, in one line)."""
    if not rows:
        return
    conn.execute(card_changes.insert(), rows)
    if len(rows) > LOG_EACH:
        log.info("card registry versions %s..%s: %d changes", rows[0]["version"],
                 rows[-1]["version"], len(rows))  # fmt: skip
        return
    for row in rows:
        card = str(row["card"])[:12] if row["card"] else "-"
        log.info("card registry version %s: %s card %s %s", row["version"], row["change"],
                 card, row["detail"])  # fmt: skip


def issue(engine: sa.Engine, wanted: Sequence[Issue], now: datetime) -> list[Outcome]:
    """Register cards as active (new ones, or lost/revoked ones again, or a new role or group),
    all in one transaction; a card already so registered is left alone. A role or group not
    given is the card's own (villager, default for a new card). Holders given are kept in
    ``card_holders``."""
    if len({w.pseudonym for w in wanted}) != len(wanted):
        raise RegistryError("card.twice")
    with engine.begin() as conn:
        lock(conn)
        before = _current(conn, [w.pseudonym for w in wanted])
        settled: list[tuple[str, str, str, Change, str]] = []
        for w in wanted:
            row = before.get(w.pseudonym)
            if row is None:
                settled.append((w.pseudonym, w.role or "villager", w.group or "default",
                                "issued", "issued"))  # fmt: skip
                continue
            role, group = w.role or str(row.role), w.group or str(row.card_group)
            changed = [
                name
                for name, old, new in (
                    ("status", row.status, "active"),
                    ("role", row.role, role),
                    ("group", row.card_group, group),
                )
                if old != new
            ]
            change: Change = "unchanged"
            if changed:
                change = "reissued" if row.status != "active" else "updated"
            settled.append((w.pseudonym, role, group, change, ",".join(changed)))
        moving = [x for x in settled if x[3] != "unchanged"]
        version = _take(conn, len(moving)) if moving else 0
        outcomes = []
        log_rows = []
        for pseudonym, role, group, change, what in settled:
            if change == "unchanged":
                outcomes.append(
                    Outcome(pseudonym, change, int(before[pseudonym].version), role, group)
                )
                continue
            values = {"status": "active", "role": role, "card_group": group,
                      "updated_at": now, "version": version}  # fmt: skip
            if change == "issued":
                conn.execute(cards.insert().values(pseudonym=pseudonym, issued_at=now, **values))
            else:
                conn.execute(cards.update().where(cards.c.pseudonym == pseudonym).values(**values))
            log_rows.append({"version": version, "changed_at": now, "change": what,
                             "card": pseudonym, "detail": f"{role}:{group}"})  # fmt: skip
            outcomes.append(Outcome(pseudonym, change, version, role, group))
            version += 1
        _log(conn, log_rows)
        for w in wanted:
            if w.holder is not None:
                keep_holder(conn, w.pseudonym, w.holder, now)
    return outcomes


def _current(conn: sa.Connection, pseudonyms: Iterable[str]) -> dict[str, sa.Row[tuple[object]]]:
    wanted = sorted(set(pseudonyms))
    found: dict[str, sa.Row[tuple[object]]] = {}
    for i in range(0, len(wanted), LOOKUP_CHUNK):
        part = wanted[i : i + LOOKUP_CHUNK]
        for row in conn.execute(sa.select(cards).where(cards.c.pseudonym.in_(part))):
            found[row.pseudonym] = row
    return found


def keep_holder(conn: sa.Connection, pseudonym: str, holder: Holder, now: datetime) -> None:
    """Write who holds a card (administrators only: ``card_holders``); not a registry change,
    since the boxes never learn it."""
    values = {"name": holder.name, "phone": holder.phone, "note": holder.note, "updated_at": now}
    done = conn.execute(
        card_holders.update().where(card_holders.c.pseudonym == pseudonym).values(**values)
    )
    if done.rowcount == 0:
        conn.execute(card_holders.insert().values(pseudonym=pseudonym, **values))


def set_status(engine: sa.Engine, pseudonym: str, status: Status, now: datetime) -> Outcome:
    """Mark a registered card active, lost or revoked; ``unchanged`` if it already is."""
    with engine.begin() as conn:
        lock(conn)
        row = _current(conn, [pseudonym]).get(pseudonym)
        if row is None:
            raise RegistryError("card.unknown")
        if row.status == status:
            return Outcome(pseudonym, "unchanged", int(row.version))
        version = _take(conn, 1)
        conn.execute(
            cards.update()
            .where(cards.c.pseudonym == pseudonym)
            .values(status=status, updated_at=now, version=version)
        )
        _log(conn, [{"version": version, "changed_at": now, "change": "status",
                     "card": pseudonym, "detail": f"{row.status}->{status}"}])  # fmt: skip
    return Outcome(pseudonym, "updated", version)


def set_rule(engine: sa.Engine, rule: QuotaRule, now: datetime) -> int:
    """Set (add or replace) one quota rule; return the registry version it took."""
    site = rule.site or ""
    key = sa.and_(
        quota_rules.c.card_group == rule.group,
        quota_rules.c.product_group == rule.product_group,
        quota_rules.c.site == site,
    )
    with engine.begin() as conn:
        lock(conn)
        version = _take(conn, 1)
        values = {"quantity": rule.quantity, "period_days": rule.period_days,
                  "updated_at": now, "version": version}  # fmt: skip
        if conn.execute(quota_rules.update().where(key).values(**values)).rowcount == 0:
            conn.execute(
                quota_rules.insert().values(
                    card_group=rule.group, product_group=rule.product_group, site=site, **values
                )
            )
        conn.execute(
            card_registry.update()
            .where(card_registry.c.id == 1)
            .values(rules_version=version, updated_at=now)
        )
        detail = f"{rule.group}:{rule.product_group}:{rule.quantity}/{rule.period_days}d"
        _log(conn, [{"version": version, "changed_at": now, "change": "rule",
                     "card": None, "detail": detail + (f"@{site}" if site else "")}])  # fmt: skip
    return version


def set_guest(engine: sa.Engine, guest: GuestPolicy, now: datetime) -> int:
    """Set what an unregistered card may take; return the registry version it took."""
    with engine.begin() as conn:
        lock(conn)
        version = _take(conn, 1)
        conn.execute(
            card_registry.update()
            .where(card_registry.c.id == 1)
            .values(
                guest_mode=guest.mode,
                guest_quantity=guest.quantity,
                guest_period_days=guest.period_days,
                guest_version=version,
                updated_at=now,
            )
        )
        detail = "refuse" if guest.mode == "refuse" else f"{guest.quantity}/{guest.period_days}d"
        _log(conn, [{"version": version, "changed_at": now, "change": "guest",
                     "card": None, "detail": detail}])  # fmt: skip
    return version
