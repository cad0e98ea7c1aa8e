"""The journal's hash chains (pure).

Every message in ``messages`` is a link in its agent's chain: position ``n`` (1, 2, 3, … per
agent, whatever the stream), the previous link's hash, and its own hash, SHA-256 over canonical
bytes of what was received. An agent here is any writer of the journal: a device, or the
county's own stream of entries (agent ``county``); nothing assumes it is a machine.

The canonical bytes use only values that survive every way a store is moved (``db copy`` from
SQLite to PostgreSQL, a backup and its restore): the payload bytes as received, the agent id,
the stream's epoch, the position, the origin and the receipt time in UTC with microseconds,
never a driver's representation of a row. This format (version 1) is frozen: migration 0005
and every stored link were computed with it; a new format would get a new version tag and be
chosen per link, never replace this one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

FORMAT = "edge-journal/1"
#: The "previous hash" of every chain's first link.
GENESIS = "0" * 64


def canonical_time(value: datetime) -> str:
    """``2026-11-23T05:00:00.000000Z``; a naive time is taken as UTC (SQLite hands those back)."""
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Link:
    """What one message contributes to its chain."""

    agent_id: str
    epoch: str
    position: int
    received_at: datetime
    origin: str
    payload: bytes


def canonical(link: Link, prev_hash: str) -> bytes:
    """The bytes hashed: a one-line JSON header (no raw newline can occur in it), a newline,
    then the payload exactly as received."""
    header = json.dumps(
        [
            FORMAT,
            link.agent_id,
            link.epoch,
            link.position,
            canonical_time(link.received_at),
            link.origin,
            prev_hash,
        ],
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return header.encode("ascii") + b"\n" + bytes(link.payload)


def link_hash(link: Link, prev_hash: str) -> str:
    """The link's hash (64 lower-case hex digits)."""
    return hashlib.sha256(canonical(link, prev_hash)).hexdigest()
