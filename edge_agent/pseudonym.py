"""Card pseudonyms: the keyed hash that stands for a card everywhere beyond the reader.

A leaf module (imports nothing of the project), shared by the agent, which hashes a card the
moment its reader reports it, and by the server, which registers cards from a desk reader or a
typed number. ``docs/protocol.md`` ("Card pseudonyms") defines it so that a vendor's box
computes the same value: HMAC-SHA-256 keyed with the county's card key over
``fp-card-v1|KIND|VALUE``, as 64 lower-case hex digits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

PREFIX = "fp-card-v1"
KEY_BYTES = 32
PSEUDONYM_PATTERN = r"^[0-9a-f]{64}$"

CardKind = Literal["ic", "id"]

_UID_LENGTHS = (4, 7, 8, 10)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_KEY_FILE_MAX = 256


class PseudonymError(ValueError):
    """An identifier or a key that cannot be used (the message never contains the identifier)."""


@dataclass(frozen=True)
class CardKey:
    """The county's card key. ``key_id`` names it in logs and status without revealing it."""

    secret: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes):
            raise PseudonymError("a card key is bytes")
        if len(self.secret) != KEY_BYTES:
            raise PseudonymError(f"a card key has {KEY_BYTES} bytes, not {len(self.secret)}")

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"fp-card-key-id|" + self.secret).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"CardKey(key_id={self.key_id!r})"


def load_key(path: Path) -> CardKey:
    """Read a key file: 64 hex digits (whitespace around them ignored). Reads at most a few
    hundred bytes, so a wrong path (a device, a huge file) fails instead of hanging."""
    try:
        with path.open("rb") as f:
            raw = f.read(_KEY_FILE_MAX + 1)
        text = raw.decode("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise PseudonymError(
            f"cannot read card key file {path}: {exc.__class__.__name__}"
        ) from None
    if len(raw) > _KEY_FILE_MAX or not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise PseudonymError(f"card key file {path} must hold exactly 64 hex digits")
    return CardKey(bytes.fromhex(text))


def normalise_uid(uid: bytes | str) -> str:
    """A card UID as upper-case hex without separators; refuses lengths no card has."""
    if isinstance(uid, str):
        digits = re.sub(r"[\s:.-]", "", uid)
        if not re.fullmatch(r"[0-9a-fA-F]*", digits) or len(digits) % 2:
            raise PseudonymError("a card UID is written as pairs of hex digits")
        uid = bytes.fromhex(digits)
    if len(uid) not in _UID_LENGTHS:
        raise PseudonymError(f"a card UID has 4, 7, 8 or 10 bytes, not {len(uid)}")
    return uid.hex().upper()


def normalise_id_number(number: str) -> str:
    """An 18-character resident ID number with its check character verified (ISO 7064 MOD 11-2)."""
    value = number.strip().upper()
    if not re.fullmatch(r"[0-9]{17}[0-9X]", value):
        raise PseudonymError("an ID number has 17 digits and a check digit or X")
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != value[17]:
        raise PseudonymError("the ID number's check character is wrong (a misread?)")
    return value


def pseudonym(key: CardKey, kind: CardKind, value: str) -> str:
    """The card's pseudonym; ``value`` must already be normalised (see the two functions above)."""
    message = f"{PREFIX}|{kind}|{value}".encode("ascii")
    return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


def of_uid(key: CardKey, uid: bytes | str) -> str:
    return pseudonym(key, "ic", normalise_uid(uid))


def of_id_number(key: CardKey, number: str) -> str:
    return pseudonym(key, "id", normalise_id_number(number))


def birth_date(number: str) -> date:
    """The birth date an ID number holds (characters 7 to 14). Refuses a number that is not a
    valid ID number, or whose date does not exist (a misread that passed the check character)."""
    value = normalise_id_number(number)
    try:
        return date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise PseudonymError("the ID number holds no valid birth date") from None


def age_on(number: str, today: date) -> int:
    """Completed years of the holder of an ID number on ``today``. Used at read time for an age
    policy; only the verdict is kept. Someone born on 29 February completes a year on 1 March
    in a common year. A birth date after ``today`` is refused: a misread or a wrong clock, and
    no age may be guessed from either."""
    born = birth_date(number)
    if born > today:
        raise PseudonymError("the ID number's birth date is after today (a wrong clock?)")
    years = today.year - born.year
    if (today.month, today.day) < (born.month, born.day):
        years -= 1
    return years
