"""A dispensing box as people read it (``edge-server boxes``, ``boxes tail``), in their
language: codes become texts chosen by them, never an agent's or a library's text, and never a
card."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from server.cabinet.queries import Box, BoxEvent, Fault, Latest
from server.i18n import Language, pad, t, t_or, table


def describe_box(box: Box, lang: Language, zone: ZoneInfo, days: int) -> str:
    def when(at: datetime) -> str:
        return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    lines = [t("box.title", lang).format(site=box.site_id, agent=box.agent_id, box=box.box)]
    colon = t("colon", lang)
    state = [
        t("box.board", lang) + colon + _latest(box.board, "board", lang, when),
        t("box.door", lang) + colon + _latest(box.door, "door", lang, when),
    ]
    if box.tamper is not None:
        reason = t_or(f"why.{box.tamper.value}", box.tamper.value, lang)
        state.append(t("box.tamper", lang) + colon + f"{reason} ({when(box.tamper.at)})")
    lines.append("  " + t("semicolon", lang).join(state))
    if box.slots:
        keys = ("slot", "product", "count", "state", "batch", "expiry", "changed")
        header = [t(f"col.{k}", lang) for k in keys]
        rows = [
            [str(s.slot), s.product, "?" if s.count is None else str(s.count),
             t_or(f"slot.{s.state}", s.state or "?", lang), s.batch or "-",
             s.expiry.isoformat() if s.expiry else "-", when(s.changed_at)]
            for s in box.slots
        ]  # fmt: skip
        lines += ["  " + line for line in table(header, rows).splitlines()]
    if box.faults:
        lines.append("  " + t("box.faults", lang))
        lines += [f"    {when(f.occurred_at)}  {fault_text(f, lang)}" for f in box.faults]
    else:
        lines.append("  " + t("box.no_faults", lang))
    if box.days:
        lines.append("  " + t("box.days", lang).format(n=days))
        lines += [
            "    " + t("box.day", lang).format(day=d.day.isoformat(), dispensed=d.dispensed,
                                               refused=d.refused, failed=d.failed)
            for d in box.days
        ]  # fmt: skip
    return "\n".join(lines)


def _latest(
    latest: Latest | None, kind: str, lang: Language, when: Callable[[datetime], str]
) -> str:
    if latest is None:
        return t("box.unknown", lang)
    text = t_or(f"{kind}.{latest.value}", latest.value, lang)
    if kind == "door" and latest.detail == "technician":
        text += f" ({t('door.by_technician', lang)})"
    return f"{text} ({when(latest.at)})"


def fault_text(fault: Fault, lang: Language) -> str:
    reason = t_or(f"why.{fault.reason}", fault.reason, lang)
    return t_or(f"fault.{fault.kind}", fault.kind, lang).format(slot=fault.slot, reason=reason)


#: Columns the box's name takes in a ``boxes tail`` line, so that what happened lines up.
BOX_COLUMNS = 24


def tail_line(event: BoxEvent, lang: Language, zone: ZoneInfo) -> str:
    """One line of ``boxes tail``: when, site, box, what happened."""
    when = event.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    box = pad(t("tail.box", lang).format(box=event.box), BOX_COLUMNS)
    unsynced = "" if event.clock_synced else f"  ({t('clock_unsynced', lang)})"
    return f"{when}  {event.site_id}  {box} {describe_event(event, lang)}{unsynced}"


def describe_event(e: BoxEvent, lang: Language) -> str:
    """What happened at the box, in the reader's words."""
    fields: dict[str, object] = {
        "slot": e.slot, "product": e.product or "?",
        "quantity": "?" if e.quantity is None else e.quantity,
        "count": "?" if e.count is None else e.count,
        "batch": e.batch or "-", "expiry": e.expiry.isoformat() if e.expiry else "-",
        "state": t_or(f"slot.{e.state}", e.state or "?", lang),
        "reason": t_or(f"why.{e.value}", e.value or "?", lang),
    }  # fmt: skip
    note = t("tail.state_note", lang).format(**fields) if e.state_changed else ""
    if e.kind in ("dispense", "restock", "remove", "count", "vend_failed", "vend_unknown"):
        return t(f"tail.{e.kind}", lang).format(**fields) + (
            note if e.kind in ("dispense", "restock", "remove", "count") else ""
        )
    if e.kind == "slot":
        return t("tail.slot", lang).format(**fields)
    if e.kind == "not_ready":
        return t("tail.not_ready", lang).format(slot=e.detail or "?", reason=fields["reason"])
    if e.kind == "refused":
        reason = t_or(f"refusal.{e.value}", e.value or "?", lang)
        if e.product_group:
            return t("tail.refused_group", lang).format(group=e.product_group, reason=reason)
        return t("tail.refused", lang).format(reason=reason)
    colon = t("colon", lang)
    if e.kind == "door":
        text = t("box.door", lang) + colon + t_or(f"door.{e.value}", e.value or "?", lang)
        if e.detail == "technician":
            text += t("tail.by_technician", lang)
        return text
    if e.kind == "tamper":
        return "⚠ " + t("fault.tamper", lang).format(reason=fields["reason"])
    if e.kind == "board":
        return t("box.board", lang) + colon + t_or(f"board.{e.value}", e.value or "?", lang)
    return e.kind
