"""Rendering a page: the template with what every page needs (the person, the language, the
texts, times in the site's zone)."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from server.alerts.text import values_text
from server.i18n import Language
from server.web.app import language
from server.web.auth import Who, state
from server.web.text import text

ROOM_KEYS = {"no1", "no2", "no3"}
#: What a page may say was done (``?done=KEY&field=...`` after a change), with the fields each
#: takes: a fixed sentence, so that a link cannot make a page say anything it likes.
FLASHES: dict[str, tuple[str, ...]] = {
    "alerts.acked": ("id",),
    "cards.issued": ("card", "change"),
    "cards.status_set": ("card", "status"),
    "restock.approved": ("box", "batch", "quantity"),
}
#: Fields that are themselves keys of a text (``change=issued`` → 已登记).
NAMED = ("change", "status")


def flash(request: Request, lang: Language) -> str | None:
    key = request.query_params.get("done", "")
    if key not in FLASHES:
        return None
    fields = {f: request.query_params.get(f, "")[:64] for f in FLASHES[key]}
    for name in NAMED:
        if name in fields:
            fields[name] = say(lang, f"{name}.{fields[name]}")
    return say(lang, key, **fields)


def say(lang: Language, key: str, /, **fields: object) -> str:
    return text(lang, key, **fields)


def render(request: Request, who: Who | None, name: str, status: int = 200,
           **context: Any) -> HTMLResponse:  # fmt: skip
    web = state(request)
    lang = language(request)
    zone = web.config.server.zone

    def local(at: datetime | None) -> str:
        return "" if at is None else at.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    def room_name(room: str) -> str:
        return say(lang, f"room.{room}") if room in ROOM_KEYS else room

    def lasted(seconds: float) -> str:
        hours, rest = divmod(int(seconds), 3600)
        return f"{hours}h{rest // 60:02d}m"

    base = {
        "who": who, "lang": lang, "t": partial(say, lang), "local": local, "lasted": lasted,
        "room_name": room_name, "values": values_text, "zone": web.config.server.timezone,
        "here": request.url.path, "flash": flash(request, lang), "problem": None,
    }  # fmt: skip
    return web.templates.TemplateResponse(request, name, base | context, status_code=status)
