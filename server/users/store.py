"""People, passwords, sessions, tokens and the audit record, in the server's database so that
every web process (there may be several behind one address) sees the same logins and limits."""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from server.store.db import utc
from server.store.schema import api_tokens, audit_log, login_failures, user_sessions, users
from server.users.roles import EVERYWHERE, Role

NAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 10
#: Failed logins that lock a name, and an address, out for ``LOCKOUT``.
FAILURES_PER_NAME = 5
FAILURES_PER_ADDRESS = 20
LOCKOUT = timedelta(minutes=15)
#: A browser's session ends after this long unused, and after ``SESSION_LONGEST`` in any case.
SESSION_IDLE = timedelta(hours=8)
SESSION_LONGEST = timedelta(days=7)
#: API tokens start with this, so that a leaked one is recognisable (and greppable) as ours.
TOKEN_PREFIX = "fpt_"

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Compared against when the name is unknown, so that a wrong name takes as long as a wrong
    password and does not tell which names exist. Made at the first login, not at import: every
    command would pay for it."""
    return _hasher.hash(secrets.token_hex(16))


class UserError(Exception):
    """A refused operation on people; ``key`` names its text in ``server.web.text``."""

    def __init__(self, key: str, **fields: object) -> None:
        super().__init__(f"{key}: {fields}")
        self.key = key
        self.fields = fields


class LoginRefused(UserError):
    """Wrong name or password, or a disabled account: the same answer for all three."""


class TooManyAttempts(UserError):
    """Too many failed logins for this name or from this address lately."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    display: str
    role: Role
    scope: str
    disabled: bool = False


def _user(row: sa.Row[tuple[object, ...]] | sa.RowMapping) -> User:
    m = row._mapping if isinstance(row, sa.Row) else row
    return User(
        int(m["id"]), str(m["name"]), str(m["display"]), Role(m["role"]), str(m["scope"]),
        bool(m["disabled"]),
    )  # fmt: skip


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise UserError("user.bad_name", name=name[:64])
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError("user.short_password", n=MIN_PASSWORD)
    return password


def check_scope(conn: sa.Connection, scope: str) -> str:
    from server.store.schema import ledger_sites

    if scope == EVERYWHERE:
        return scope
    known = conn.execute(sa.select(ledger_sites.c.site).where(ledger_sites.c.site == scope))
    if known.first() is None:
        raise UserError("user.unknown_scope", scope=scope[:64])
    return scope


def record(conn: sa.Connection, by: str, action: str, subject: str, detail: str | None,
           now: datetime) -> None:  # fmt: skip
    conn.execute(
        sa.insert(audit_log).values(
            at=now, by=by, action=action, subject=subject[:200],
            detail=None if detail is None else detail[:400],
        )
    )  # fmt: skip


def add(conn: sa.Connection, name: str, role: Role | str, scope: str, password: str, by: str,
        now: datetime, display: str | None = None) -> User:  # fmt: skip
    """A new person; ``UserError`` for a bad or taken name, a short password, an unknown role
    or place."""
    check_name(name)
    check_password(password)
    try:
        role = Role(role)
    except ValueError:
        raise UserError("user.bad_role", role=str(role)[:32]) from None
    check_scope(conn, scope)
    if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first() is not None:
        raise UserError("user.exists", name=name)
    shown = (display or name).strip()[:64] or name
    inserted = conn.execute(
        sa.insert(users).values(
            name=name, display=shown, role=str(role), scope=scope,
            password_hash=_hasher.hash(password), disabled=False, created_at=now, created_by=by,
        )
    ).inserted_primary_key  # fmt: skip
    record(conn, by, "user.add", name, f"{role} {scope}", now)
    assert inserted is not None
    return User(int(inserted[0]), name, shown, role, scope)


def find(conn: sa.Connection, name: str) -> User:
    row = conn.execute(sa.select(users).where(users.c.name == name)).first()
    if row is None:
        raise UserError("user.unknown", name=name[:64])
    return _user(row)


def listed(conn: sa.Connection) -> list[User]:
    return [_user(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]


def set_password(conn: sa.Connection, name: str, password: str, by: str, now: datetime) -> None:
    check_password(password)
    user = find(conn, name)
    conn.execute(
        sa.update(users).where(users.c.id == user.id).values(password_hash=_hasher.hash(password))
    )
    conn.execute(sa.delete(user_sessions).where(user_sessions.c.user_id == user.id))
    record(conn, by, "user.password", name, None, now)


def set_disabled(conn: sa.Connection, name: str, disabled: bool, by: str, now: datetime) -> None:
    """Disable (or enable again) a person: their sessions end and their tokens stop working."""
    user = find(conn, name)
    conn.execute(sa.update(users).where(users.c.id == user.id).values(disabled=disabled))
    if disabled:
        conn.execute(sa.delete(user_sessions).where(user_sessions.c.user_id == user.id))
    record(conn, by, "user.disable" if disabled else "user.enable", name, None, now)


def _failures(conn: sa.Connection, column: sa.Column[str], value: str, now: datetime) -> int:
    f = login_failures
    query = sa.select(sa.func.count()).where(column == value, f.c.at > now - LOCKOUT)
    return int(conn.execute(query).scalar_one())


def authenticate(engine: sa.Engine, name: str, password: str, address: str,
                 now: datetime) -> User:  # fmt: skip
    """The person with this name and password. ``TooManyAttempts`` before even checking when the
    name or the address failed too often lately; ``LoginRefused`` otherwise, the same for an
    unknown name, a wrong password and a disabled account."""
    name = name.strip().lower()[:64]
    address = address[:64]
    with engine.connect() as conn:
        if (
            _failures(conn, login_failures.c.name, name, now) >= FAILURES_PER_NAME
            or _failures(conn, login_failures.c.address, address, now) >= FAILURES_PER_ADDRESS
        ):
            raise TooManyAttempts("login.locked", minutes=int(LOCKOUT.total_seconds() // 60))
        row = conn.execute(sa.select(users).where(users.c.name == name)).first()
    stored = row._mapping["password_hash"] if row is not None else _dummy_hash()
    try:
        _hasher.verify(stored, password)
        good = row is not None and not row._mapping["disabled"]
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        good = False
    if not good or row is None:
        with engine.begin() as conn:
            forget_failures(conn, now)  # those past the lockout count no more: kept small
            conn.execute(sa.insert(login_failures).values(name=name, address=address, at=now))
        raise LoginRefused("login.refused")
    with engine.begin() as conn:
        conn.execute(
            sa.delete(login_failures).where(
                login_failures.c.name == name, login_failures.c.at <= now
            )
        )
        if _hasher.check_needs_rehash(stored):
            conn.execute(
                sa.update(users)
                .where(users.c.id == row._mapping["id"])
                .values(password_hash=_hasher.hash(password))
            )
    return _user(row)


def forget_failures(conn: sa.Connection, now: datetime) -> int:
    """Drop failures older than the lockout: they no longer count."""
    old = login_failures.c.at < now - LOCKOUT
    return int(conn.execute(sa.delete(login_failures).where(old)).rowcount)


# --- browser sessions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str


def open_session(conn: sa.Connection, user: User, now: datetime) -> tuple[str, Session]:
    """A new session for ``user``: the cookie's token (shown once) and its CSRF token. Ended
    sessions are dropped here, so the table holds only live ones without a timer."""
    forget_sessions(conn, now)
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    conn.execute(
        sa.insert(user_sessions).values(
            token_hash=digest(token), user_id=user.id, csrf=csrf, created_at=now, seen_at=now,
            expires_at=now + SESSION_LONGEST,
        )
    )  # fmt: skip
    return token, Session(user, csrf)


def session_of(engine: sa.Engine, token: str, now: datetime) -> Session | None:
    """The live session behind a cookie's token, its idle time renewed; None when unknown,
    expired, idle too long, or its person disabled."""
    s, u = user_sessions, users
    query = (
        sa.select(s.c.token_hash, s.c.csrf, s.c.seen_at, s.c.expires_at, u)
        .join(u, u.c.id == s.c.user_id)
        .where(s.c.token_hash == digest(token))
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    m = row._mapping
    if m["disabled"] or utc(m["expires_at"]) <= now or utc(m["seen_at"]) + SESSION_IDLE <= now:
        return None
    if now - utc(m["seen_at"]) > timedelta(minutes=1):
        with engine.begin() as conn:
            conn.execute(sa.update(s).where(s.c.token_hash == m["token_hash"]).values(seen_at=now))
    return Session(_user(m), str(m["csrf"]))


def close_session(conn: sa.Connection, token: str) -> None:
    conn.execute(sa.delete(user_sessions).where(user_sessions.c.token_hash == digest(token)))


def forget_sessions(conn: sa.Connection, now: datetime) -> int:
    s = user_sessions
    ended = sa.or_(s.c.expires_at <= now, s.c.seen_at <= now - SESSION_IDLE)
    return int(conn.execute(sa.delete(s).where(ended)).rowcount)


# --- API tokens --------------------------------------------------------------------------------


def make_token(conn: sa.Connection, name: str, label: str, by: str, now: datetime) -> str:
    """A new API token for the person ``name``; the token itself is returned once, only its
    hash is kept."""
    user = find(conn, name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        sa.insert(api_tokens).values(
            user_id=user.id, label=label.strip()[:64] or "-", token_hash=digest(token),
            created_at=now,
        )
    )  # fmt: skip
    record(conn, by, "token.make", name, label[:64], now)
    return token


def token_user(engine: sa.Engine, token: str, now: datetime) -> User | None:
    t, u = api_tokens, users
    query = (
        sa.select(t.c.id.label("token_id"), t.c.last_used_at, u)
        .join(u, u.c.id == t.c.user_id)
        .where(t.c.token_hash == digest(token), t.c.revoked_at.is_(None))
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None or row._mapping["disabled"]:
        return None
    used = row._mapping["last_used_at"]
    if used is None or now - utc(used) > timedelta(minutes=1):
        with engine.begin() as conn:
            conn.execute(
                sa.update(t).where(t.c.id == row._mapping["token_id"]).values(last_used_at=now)
            )
    return _user(row._mapping)


def revoke_tokens(conn: sa.Connection, name: str, label: str | None, by: str,
                  now: datetime) -> int:  # fmt: skip
    """Revoke the person's tokens (those with ``label``, or all); how many were live."""
    user = find(conn, name)
    t = api_tokens
    query = sa.update(t).where(t.c.user_id == user.id, t.c.revoked_at.is_(None))
    if label is not None:
        query = query.where(t.c.label == label)
    revoked = int(conn.execute(query.values(revoked_at=now)).rowcount)
    record(conn, by, "token.revoke", name, label, now)
    return revoked
