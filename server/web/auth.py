"""Who is asking, and may they: a browser's session cookie (with its CSRF token for anything
that changes something) or an API token, the person's role, and the sites their scope reaches."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import Request

from server.ledger.queries import within
from server.users import store
from server.users.roles import EVERYWHERE, Permission, can
from server.users.store import User

if TYPE_CHECKING:
    from server.web.app import WebState

SESSION_COOKIE = "fp_session"
LANG_COOKIE = "fp_lang"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class WebError(Exception):
    """A request refused: the HTTP status and the key of the text people read."""

    def __init__(self, status: int, key: str, **fields: object) -> None:
        super().__init__(f"{status} {key}: {fields}")
        self.status = status
        self.key = key
        self.fields = fields


@dataclass(frozen=True)
class Who:
    user: User
    #: The session's CSRF token; None for an API token (which a browser never sends by itself).
    csrf: str | None
    #: The sites the person's scope reaches; None: every site.
    sites: frozenset[str] | None

    def sees(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def can(self, permission: Permission) -> bool:
        return can(self.user.role, permission)

    @property
    def name(self) -> str:
        return self.user.name


def state(request: Request) -> WebState:
    return request.app.state.web  # type: ignore[no-any-return]


def client_address(request: Request) -> str:
    """The caller's address; a trusted proxy's ``X-Forwarded-For`` (its last hop) believed."""
    peer = request.client.host if request.client else "-"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and peer in state(request).config.web.trusted_proxies:
        hop = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            return peer
    return peer


def _scope_sites(web: WebState, user: User) -> frozenset[str] | None:
    if user.scope == EVERYWHERE:
        return None
    with web.engine.connect() as conn:
        return frozenset(within(conn, user.scope))


def identify(request: Request) -> Who | None:
    """The person behind the request, or None; cached on the request."""
    if hasattr(request.state, "who"):
        return request.state.who  # type: ignore[no-any-return]
    web = state(request)
    now = web.now()
    found: Who | None = None
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = store.token_user(web.engine, header[7:].strip(), now)
        if user is not None:
            found = Who(user, None, _scope_sites(web, user))
    elif cookie := request.cookies.get(SESSION_COOKIE):
        session = store.session_of(web.engine, cookie, now)
        if session is not None:
            found = Who(session.user, session.csrf, _scope_sites(web, session.user))
    request.state.who = found
    return found


async def check_csrf(request: Request, who: Who) -> None:
    """A browser's request that changes something carries its session's CSRF token (a header
    from htmx, a field from a form) and comes from this origin."""
    if request.method in SAFE_METHODS or who.csrf is None:
        return
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    # Host only: behind a TLS proxy the browser's scheme (https) is not the one served here.
    if origin is not None and urlsplit(origin).netloc != host:
        raise WebError(403, "csrf.origin")
    given = request.headers.get(CSRF_HEADER)
    if given is None and "form" in request.headers.get("content-type", ""):
        form = await request.form()
        field = form.get(CSRF_FIELD)
        given = field if isinstance(field, str) else None
    if given is None or not hmac.compare_digest(given, who.csrf):
        raise WebError(403, "csrf.missing")


def signed_in(request: Request) -> Who:
    """A dependency: the person, or 401."""
    who = identify(request)
    if who is None:
        raise WebError(401, "auth.required")
    return who


def allowed(permission: Permission):  # type: ignore[no-untyped-def]
    """A dependency: the person, who may do ``permission`` (403 otherwise), with a browser's
    CSRF token checked for a change."""

    async def check(request: Request) -> Who:
        who = signed_in(request)
        if not who.can(permission):
            raise WebError(403, "auth.forbidden")
        await check_csrf(request, who)
        return who

    return check


def in_scope(who: Who, site: str) -> None:
    """404 (not 403: a site outside one's scope is nobody's business) when ``who`` does not see
    ``site``."""
    if not who.sees(site):
        raise WebError(404, "site.unknown", site=site)
