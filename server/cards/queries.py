"""Read-only questions about the card registry. ``holder`` is the only one that reads
``card_holders``; nothing that ingest or the sync runs calls it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from edge_agent.wire import GuestPolicy, QuotaRule
from server.cards.registry import Holder, RegistryError
from server.store.db import utc
from server.store.schema import card_holders, card_registry, cards, quota_rules

#: The shortest pseudonym prefix accepted for a card (``cards list`` shows 12 digits).
MIN_PREFIX = 8


@dataclass(frozen=True)
class Head:
    """The registry's version, and the versions of its rules and guest policy (0: never set)."""

    version: int = 0
    rules_version: int = 0
    guest: GuestPolicy = GuestPolicy()  # noqa: RUF009 (frozen: one shared value is right)
    guest_version: int = 0


@dataclass(frozen=True)
class Card:
    pseudonym: str
    status: str
    role: str
    group: str
    version: int
    issued_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Rule:
    rule: QuotaRule
    version: int


def head(conn: sa.Connection) -> Head:
    r = card_registry
    row = conn.execute(sa.select(r).where(r.c.id == 1)).one_or_none()
    if row is None:
        return Head()
    guest = GuestPolicy(
        mode=row.guest_mode, quantity=row.guest_quantity, period_days=row.guest_period_days
    )
    return Head(int(row.version), int(row.rules_version), guest, int(row.guest_version))


def registry_head(engine: sa.Engine) -> Head:
    with engine.connect() as conn:
        return head(conn)


def list_cards(
    engine: sa.Engine, group: str | None = None, status: str | None = None
) -> list[Card]:
    """Cards by group, then pseudonym; only those of ``group`` and ``status`` when given."""
    query = sa.select(cards).order_by(cards.c.card_group, cards.c.pseudonym)
    if group is not None:
        query = query.where(cards.c.card_group == group)
    if status is not None:
        query = query.where(cards.c.status == status)
    with engine.connect() as conn:
        return [
            Card(r.pseudonym, r.status, r.role, r.card_group, int(r.version),
                 utc(r.issued_at), utc(r.updated_at))
            for r in conn.execute(query)
        ]  # fmt: skip


def find_card(engine: sa.Engine, prefix: str) -> str:
    """The pseudonym that starts with ``prefix`` (at least ``MIN_PREFIX`` hex digits)."""
    value = prefix.strip().lower()
    if not re.fullmatch(rf"[0-9a-f]{{{MIN_PREFIX},64}}", value):
        raise RegistryError("card.bad_pseudonym", digits=MIN_PREFIX)
    query = sa.select(cards.c.pseudonym).where(cards.c.pseudonym.startswith(value)).limit(2)
    with engine.connect() as conn:
        found = list(conn.execute(query).scalars())
    if not found:
        raise RegistryError("card.unknown")
    if len(found) > 1:
        raise RegistryError("card.ambiguous", prefix=value)
    return str(found[0])


def rules(conn: sa.Connection, site: str | None = None) -> list[Rule]:
    """Every quota rule; with ``site``, the county-wide ones and that site's."""
    q = quota_rules
    query = sa.select(q).order_by(q.c.card_group, q.c.product_group, q.c.site)
    if site is not None:
        query = query.where(q.c.site.in_(("", site)))
    return [
        Rule(
            QuotaRule(group=r.card_group, product_group=r.product_group, quantity=r.quantity,
                      period_days=r.period_days, site=r.site or None),
            int(r.version),
        )
        for r in conn.execute(query)
    ]  # fmt: skip


def all_rules(engine: sa.Engine) -> list[Rule]:
    with engine.connect() as conn:
        return rules(conn)


def holder(engine: sa.Engine, pseudonym: str) -> Holder | None:
    """Who holds a card, if kept: for administrators only (``card_holders``)."""
    h = card_holders
    query = sa.select(h.c.name, h.c.phone, h.c.note).where(h.c.pseudonym == pseudonym)
    with engine.connect() as conn:
        row = conn.execute(query).one_or_none()
    return None if row is None else Holder(row.name, row.phone, row.note)
