"""The boundary where card numbers become pseudonyms: the county key, typed numbers, CSV files.

A card's UID or ID number is hashed here the moment it is read and never goes further: not to
the database, not to a log, not into an error (errors name a people's text and, for a file, the
line, never the number).
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

from pydantic import TypeAdapter, ValidationError

from edge_agent.pseudonym import (
    KEY_BYTES,
    CardKey,
    PseudonymError,
    load_key,
    of_id_number,
    of_uid,
)
from edge_agent.wire import Ident
from server.cards.registry import Holder, Issue, RegistryError, Role

ROLES: tuple[Role, ...] = get_args(Role)
COLUMNS = ("uid", "id_number", "role", "group", "name", "phone", "note")
MAX_PHONE = 32
_IDENT: TypeAdapter[str] = TypeAdapter(Ident)


def card_key(path: Path | None) -> CardKey:
    """The county card key from ``[cards] key_file``."""
    if path is None:
        raise RegistryError("key.not_configured")
    try:
        with path.open("rb"):
            pass
    except OSError:
        raise RegistryError("key.unreadable", path=path) from None
    try:
        return load_key(path)
    except PseudonymError:
        raise RegistryError("key.invalid", path=path) from None


def make_key(path: Path) -> CardKey:
    """Write a new random key to ``path`` (which must not exist), readable by its owner only."""
    secret = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise RegistryError("key.exists", path=path) from None
    except OSError:
        raise RegistryError("key.unwritable", path=path) from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secret.hex() + "\n")
    return CardKey(secret)


def of_typed_uid(key: CardKey, value: str) -> str:
    try:
        return of_uid(key, value)
    except PseudonymError:
        raise RegistryError("uid.bad") from None


def of_typed_id(key: CardKey, value: str) -> str:
    if not re.fullmatch(r"[0-9]{17}[0-9Xx]", value.strip()):
        raise RegistryError("id.bad")
    try:
        return of_id_number(key, value)
    except PseudonymError:
        raise RegistryError("id.check") from None


def valid_ident(value: str) -> bool:
    try:
        _IDENT.validate_python(value)
    except ValidationError:
        return False
    return True


@dataclass(frozen=True)
class BadLine:
    line: int
    key: str
    fields: dict[str, object] = field(default_factory=dict)


@dataclass
class CsvCards:
    cards: list[Issue] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


def read_csv(path: Path, key: CardKey) -> CsvCards:
    """Cards of a CSV file (UTF-8, or GB18030 as Excel saves it in China), hashed line by line.

    The first line names the columns: ``uid`` or ``id_number`` (a line has one of them),
    ``role`` and ``group`` (when empty: the card's own, or villager and default for a new
    card), optional ``name``,
    ``phone`` and ``note``. Every bad line is reported, by its number only.
    """
    try:
        raw = path.read_bytes()
    except OSError:
        raise RegistryError("import.unreadable", path=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030", errors="replace")
    rows = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(rows, [])]
    if not ({"uid", "id_number"} & set(header)) or not set(header) <= set(COLUMNS):
        raise RegistryError("import.header")
    out = CsvCards()
    seen: dict[str, int] = {}
    for values in rows:
        line = rows.line_num
        if not any(v.strip() for v in values):
            continue
        row = {
            name: (values[i].strip() if i < len(values) else "") for i, name in enumerate(header)
        }
        try:
            issue = _one(row, key)
        except RegistryError as exc:
            out.bad.append(BadLine(line, exc.key, exc.fields))
            continue
        if issue.pseudonym in seen:
            out.bad.append(BadLine(line, "import.same_card", {"other": seen[issue.pseudonym]}))
            continue
        seen[issue.pseudonym] = line
        out.cards.append(issue)
    return out


def _one(row: dict[str, str], key: CardKey) -> Issue:
    uid, number = row.get("uid", ""), row.get("id_number", "")
    if uid and number:
        raise RegistryError("import.both")
    if not uid and not number:
        raise RegistryError("import.no_card")
    role = row.get("role") or None
    if role is not None and role not in ROLES:
        raise RegistryError("import.role")
    group = row.get("group") or None
    if group is not None and not valid_ident(group):
        raise RegistryError("bad.ident", what="group")
    pseudonym = of_typed_uid(key, uid) if uid else of_typed_id(key, number)
    return Issue(
        pseudonym,
        role,
        group,
        holder_of(row.get("name") or None, row.get("phone") or None, row.get("note") or None),
    )


def holder_of(name: str | None, phone: str | None, note: str | None) -> Holder | None:
    """A holder to keep, if any detail is given; a phone number is at most 32 characters."""
    if phone is not None and len(phone) > MAX_PHONE:
        raise RegistryError("bad.phone", most=MAX_PHONE)
    return Holder(name, phone, note) if (name or phone or note) else None
