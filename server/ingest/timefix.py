"""Time without a real-time clock: re-dating events recorded before an agent's clock was set.

For each boot of an agent the first event with a synchronised clock becomes the boot's
reference: one moment known in both the trusted wall clock and the agent's monotonic seconds.
An unsynchronised event of that boot is dated ``ref_wall + (mono_s - ref_mono)``; the agent's
own time is kept beside it. Events that arrived before their boot's reference are re-dated by
each projection when it arrives (``Projection.redate``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from edge_agent.wire import Event
from server.store.db import utc
from server.store.schema import boot_refs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootRef:
    wall: datetime
    mono: float

    def date(self, mono_s: float) -> datetime | None:
        """The wall time of monotonic ``mono_s`` in this boot; None if it cannot be one."""
        try:
            return self.wall + timedelta(seconds=mono_s - self.mono)
        except OverflowError:
            return None


@dataclass
class BootRefs:
    """The references known for one agent's boots, and those this batch is adding."""

    agent_id: str
    known: dict[str, BootRef] = field(default_factory=dict)
    new: dict[str, BootRef] = field(default_factory=dict)

    def corrected(self, event: Event) -> datetime | None:
        """The event's re-dated time, or None when it needs none (or none is known yet)."""
        if event.clock_synced:
            return None
        ref = self.known.get(event.boot_id) or self.new.get(event.boot_id)
        return ref.date(event.mono_s) if ref else None

    def load(self, conn: sa.Connection, boots: Iterable[str]) -> None:
        wanted = set(boots) - set(self.known) - set(self.new)
        if not wanted:
            return
        query = sa.select(boot_refs.c.boot_id, boot_refs.c.wall_at, boot_refs.c.mono_s).where(
            boot_refs.c.agent_id == self.agent_id, boot_refs.c.boot_id.in_(wanted)
        )
        for boot, wall, mono in conn.execute(query):
            self.known[boot] = BootRef(utc(wall), float(mono))

    def learn(self, conn: sa.Connection, events: Iterable[Event]) -> None:
        """Take the first synchronised event of each boot not known yet as its reference."""
        events = list(events)
        self.load(conn, {e.boot_id for e in events})
        for e in events:
            if e.clock_synced and e.boot_id not in self.known and e.boot_id not in self.new:
                self.new[e.boot_id] = BootRef(e.occurred_at, e.mono_s)
        if self.new:
            conn.execute(
                boot_refs.insert(),
                [
                    {"agent_id": self.agent_id, "boot_id": b, "wall_at": r.wall, "mono_s": r.mono}
                    for b, r in self.new.items()
                ],
            )

    def settle(self) -> dict[str, BootRef]:
        """The references this batch added (to re-date what came before them); now known."""
        added, self.new = self.new, {}
        self.known.update(added)
        return added
