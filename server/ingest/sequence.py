"""Sequence and epoch rules, pure: values in, decisions out, no storage and no clock.

A stream is one outbox life (epoch) of one agent. ``acked`` is the number up to which every
event is settled (journaled, or declared lost); events above it wait for the gap below them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal


class StreamState(StrEnum):
    #: The agent's current outbox: its events are applied to the projections.
    PRIMARY = "primary"
    #: A new epoch not yet proven to be the agent's successor outbox: kept and acked, not applied.
    CANDIDATE = "candidate"
    #: A former primary, superseded by an adopted candidate.
    CLOSED = "closed"
    #: A second live epoch of one agent id: kept and acked on its own, never applied.
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class Claim:
    """What an incoming event claims: its number and how many numbers it stands for."""

    seq: int
    span: int

    @property
    def last(self) -> int:
        return self.seq + self.span - 1


@dataclass(frozen=True)
class Stored:
    seq: int
    span: int


@dataclass
class Plan:
    """Where each incoming event goes, by its position in the batch."""

    fresh: list[int] = field(default_factory=list)
    #: Positions claiming a number already stored (duplicate or conflict: content decides).
    seen: list[int] = field(default_factory=list)
    #: Positions claiming a number inside another event's span, or twice within the batch.
    covered: list[int] = field(default_factory=list)
    #: Positions too far beyond what the agent can have sent: refused, and no gap is opened.
    too_far: list[int] = field(default_factory=list)


def plan(
    claims: list[Claim],
    acked: int,
    stored_above: Mapping[int, Stored],
    stored_below: Iterable[int],
    max_ahead: int,
) -> Plan:
    """Sort a batch's claims against the stream.

    ``stored_above``: events already journaled above ``acked`` (held back), by seq.
    ``stored_below``: the numbers at or below ``acked`` that start a journaled event among
    those this batch claims.
    """
    out = Plan()
    starts_below = set(stored_below)
    taken = _Intervals()  # what is stored or fresh above ``acked``
    for s in sorted(stored_above.values(), key=lambda x: x.seq):
        taken.add(s.seq, s.seq + s.span - 1)
    limit = acked + max_ahead
    for pos, claim in enumerate(claims):
        if claim.seq <= acked:
            (out.seen if claim.seq in starts_below else out.covered).append(pos)
            continue
        if claim.last > limit:
            out.too_far.append(pos)
            continue
        if claim.seq in stored_above:
            out.seen.append(pos)
            continue
        if taken.overlaps(claim.seq, claim.last):
            out.covered.append(pos)
            continue
        taken.add(claim.seq, claim.last)
        out.fresh.append(pos)
    return out


class _Intervals:
    """Disjoint closed intervals, kept sorted; appending past the end (the usual case) is O(1)."""

    def __init__(self) -> None:
        self.firsts: list[int] = []
        self.lasts: list[int] = []

    def overlaps(self, first: int, last: int) -> bool:
        i = bisect.bisect_right(self.firsts, last)  # intervals starting at or before ``last``
        return i > 0 and self.lasts[i - 1] >= first

    def add(self, first: int, last: int) -> None:
        i = bisect.bisect_right(self.firsts, first)
        self.firsts.insert(i, first)
        self.lasts.insert(i, last)


def advance(acked: int, waiting: Mapping[int, int]) -> tuple[int, list[int]]:
    """Move ``acked`` over every waiting event (seq -> span) that now continues the sequence.

    Returns the new ``acked`` and the numbers of the events it passed, in order.
    """
    passed = []
    while (span := waiting.get(acked + 1)) is not None:
        passed.append(acked + 1)
        acked += span
    return acked, passed


@dataclass(frozen=True)
class EpochView:
    """What the epoch rule needs to know of a stream."""

    epoch: str
    first_received_at: datetime
    last_received_at: datetime


Verdict = Literal["adopt", "wait", "quarantine"]


def judge_candidate(
    primary: EpochView | None,
    candidate: EpochView,
    announced: bool,
    now: datetime,
    proof: timedelta,
    grace: timedelta,
) -> Verdict:
    """Whether a new epoch is the agent's successor outbox, a second live identity, or unclear.

    An epoch is never taken on the word of one batch. A new epoch is adopted only when

    - it was announced: its seq 1 is the ``agent.outbox_reset`` or ``agent.started`` that every
      new outbox begins with, and
    - the old epoch has been silent (no events, no status naming it) since ``grace`` after the
      new one was first heard, for ``proof``.

    If the old epoch speaks after that grace, two outboxes are alive under one agent id (a
    cloned SD card, a leaked account): the new one is quarantined.
    """
    if primary is None or primary.epoch == "":
        return "adopt"  # first contact, or an agent from before epochs: nothing to supersede
    if primary.last_received_at > candidate.first_received_at + grace:
        return "quarantine"
    if announced and now - candidate.first_received_at >= proof:
        return "adopt"
    return "wait"


def lost_holes(acked: int, stored: Iterable[Stored]) -> tuple[list[tuple[int, int]], int]:
    """For an epoch being closed: the holes below its stored events, and its final ``acked``.

    The holes are declared lost (the old outbox is gone); the events after them are settled.
    """
    holes = []
    for s in sorted(stored, key=lambda x: x.seq):
        if s.seq <= acked:
            acked = max(acked, s.seq + s.span - 1)
            continue
        if s.seq > acked + 1:
            holes.append((acked + 1, s.seq - 1))
        acked = s.seq + s.span - 1
    return holes, acked
