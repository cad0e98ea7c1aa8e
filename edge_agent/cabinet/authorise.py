"""What a swiped card may do at a box now: the registry entry, the rules in force and the card's
usage, read in one transaction of the outbox file and judged by the pure quota rules."""

from __future__ import annotations

from datetime import datetime, timedelta

from edge_agent.cabinet import store
from edge_agent.cabinet.config import BoxConfig, CabinetSection
from edge_agent.cabinet.quota import Policy, Rule, Use, admit, allowance, rule_for
from edge_agent.cabinet.transaction import Offer
from edge_agent.drivers.card_reader import Swipe
from edge_agent.outbox import Unit
from edge_agent.wire import QuotaRule


def policy(cabinet: CabinetSection, site: str, registry: store.Registry) -> Policy:
    """The registry's rules and guest policy once it has sent them; the site's configured
    defaults until then (and for any group the registry has no rule for)."""
    defaults = [
        QuotaRule(
            group=q.group,
            product_group=q.product_group,
            quantity=q.quantity,
            period_days=q.period_days,
        )
        for q in cabinet.quota
    ]
    guest: Rule | None
    if registry.guest is not None:
        g = registry.guest
        guest = Rule(g.quantity, g.period_days) if g.mode == "quota" else None
    elif cabinet.unregistered == "guest":
        guest = Rule(cabinet.guest_quantity, cabinet.guest_period_days)
    else:
        guest = None
    return Policy(
        site=site,
        rules=registry.rules or [],
        defaults=defaults,
        guest=guest,
        id_card_group=cabinet.id_card_group,
        min_age=cabinet.min_age,
        max_age=cabinet.max_age,
    )


def offer(
    unit: Unit, box: BoxConfig, cabinet: CabinetSection, site: str, swipe: Swipe, now: datetime
) -> Offer:
    card = store.card(unit, swipe.card)
    if card is not None and card.role == "technician" and card.status == "active":
        return Offer(swipe.card, technician=True)
    rules = policy(cabinet, site, store.registry(unit))
    counted, refusal = admit(card, swipe.kind, swipe.age, rules)
    if refusal is not None:
        return Offer(swipe.card, refusal=refusal)
    allowances = {}
    after = {}
    for product in box.products:
        group = cabinet.product(product).group
        rule = rule_for(counted, group, rules)
        since = now - timedelta(days=rule.period_days) if rule else now
        uses = store.uses(unit, swipe.card, group, since) if rule else []
        allowances[product] = allowance(uses, rule, now)
        after[product] = allowance([*uses, Use(now, 1)], rule, now)
    return Offer(swipe.card, allowances=allowances, after_take=after)
