"""Who may take, and how much: card status, role, age and the rolling quota, pure.

A quota is a number of units of a product group per rolling period (one box of 10 condoms per
30 days by default): a take is allowed while the units taken in the last ``period_days`` (on any
box whose usage has synced here) stay under it. The time it allows again is when enough of the
oldest takes leave the window. A product group without any rule is not limited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from edge_agent.wire import QuotaRule

Refusal = Literal["unregistered", "lost", "revoked", "not_allowed", "age"]


@dataclass(frozen=True)
class Card:
    status: Literal["active", "lost", "revoked"]
    role: Literal["villager", "technician"]
    group: str


@dataclass(frozen=True)
class Rule:
    quantity: int
    period_days: int


@dataclass(frozen=True)
class Use:
    at: datetime
    quantity: int


@dataclass(frozen=True)
class Allowance:
    """How many units may be taken now, and when one may be taken again if none may."""

    remaining: int | None
    next_at: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.remaining is None or self.remaining > 0


UNLIMITED = Allowance(None)


@dataclass(frozen=True)
class Policy:
    """The rules in force: the registry's (site-specific ones first), then the site's
    configured defaults; and what a card the registry does not know may do."""

    site: str
    rules: Sequence[QuotaRule]
    defaults: Sequence[QuotaRule]
    guest: Rule | None
    #: An ID card the registry does not know counts as a card of this group (None: unregistered).
    id_card_group: str | None
    min_age: int | None = None
    max_age: int | None = None

    def rule(self, group: str, product_group: str) -> Rule | None:
        for candidates in (
            (r for r in self.rules if r.site == self.site),
            (r for r in self.rules if r.site is None),
            iter(self.defaults),
        ):
            for r in candidates:
                if r.group == group and r.product_group == product_group:
                    return Rule(r.quantity, r.period_days)
        return None


def admit(
    card: Card | None, kind: Literal["ic", "id"], age: int | None, policy: Policy
) -> tuple[Card | None, Refusal | None]:
    """The card as it counts (an unknown ID card may count as a group's card), or why it may
    not take at all. ``None, None`` is an unregistered card let in as a guest."""
    if card is None and kind == "id" and policy.id_card_group is not None:
        card = Card("active", "villager", policy.id_card_group)
    if card is None:
        return (None, None) if policy.guest is not None else (None, "unregistered")
    if card.status != "active":
        return card, card.status
    limited = policy.min_age is not None or policy.max_age is not None
    if kind == "id" and limited:
        # No age known with a limit in force is refused: the policy never fails open.
        too_young = policy.min_age is not None and (age is None or age < policy.min_age)
        too_old = policy.max_age is not None and (age is None or age > policy.max_age)
        if too_young or too_old:
            return card, "age"
    return card, None


def rule_for(card: Card | None, product_group: str, policy: Policy) -> Rule | None:
    if card is None:
        return policy.guest
    return policy.rule(card.group, product_group)


def allowance(uses: Iterable[Use], rule: Rule | None, now: datetime) -> Allowance:
    """What ``rule`` leaves of the period ending ``now``, given the card's takes."""
    if rule is None:
        return UNLIMITED
    period = timedelta(days=rule.period_days)
    recent = sorted((u for u in uses if u.at > now - period), key=lambda u: u.at)
    used = sum(u.quantity for u in recent)
    remaining = max(0, rule.quantity - used)
    if remaining > 0:
        return Allowance(remaining)
    if rule.quantity == 0:
        return Allowance(0)
    # Allowed again once what remains in the window is at most quantity - 1.
    excess = used - (rule.quantity - 1)
    for use in recent:
        excess -= use.quantity
        if excess <= 0:
            return Allowance(0, use.at + period)
    raise AssertionError("unreachable: the takes in the window sum to more than the excess")


def open_box_allows(
    vends: Sequence[datetime], now: datetime, pause_s: float, max_per_hour: int
) -> Literal["pause", "hourly_cap"] | None:
    """An open box (no card): a pause after each vend and a cap per rolling hour, so that one
    person cannot empty it. ``vends`` are the box's recent vend times."""
    if vends and (now - max(vends)).total_seconds() < pause_s:
        return "pause"
    if sum(1 for v in vends if now - v < timedelta(hours=1)) >= max_per_hour:
        return "hourly_cap"
    return None
