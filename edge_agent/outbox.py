"""The agent's outbox: every event is committed here before anything else depends on it.

SQLite in WAL mode with ``synchronous=FULL``: a commit has reached the SD card before
``append`` returns, so a power cut loses nothing that was accepted. The per-agent sequence
number is assigned inside the same transaction as the event, so it survives restarts and has no
gaps. Acknowledged events are deleted; ``last_seq`` and ``acked_seq`` are kept in ``meta``.

``Outbox`` is synchronous and owns one connection; ``AsyncOutbox`` runs it on one worker
thread so the asyncio loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import sqlite_utils
from pydantic import BaseModel, ValidationError

from edge_agent.clock import Stamp
from edge_agent.wire import EVENT_ADAPTER

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class OutboxError(Exception):
    """The outbox cannot be opened or written; the message says why."""


@dataclass(frozen=True)
class Pending:
    seq: int
    body: str


@dataclass(frozen=True)
class OutboxStats:
    last_seq: int
    acked_seq: int
    backlog: int
    oldest_unsent_at: datetime | None


def _migration_1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": int}, pk="key")  # type: ignore[union-attr]
    db["meta"].insert_all(  # type: ignore[union-attr]
        [{"key": "last_seq", "value": 0}, {"key": "acked_seq", "value": 0}]
    )
    db["events"].create(  # type: ignore[union-attr]
        {"seq": int, "id": str, "kind": str, "occurred_at": str, "body": str},
        pk="seq",
        not_null={"id", "kind", "occurred_at", "body"},
    )


#: Schema migrations, applied in order; ``PRAGMA user_version`` records how many ran.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migration_1]


class Outbox:
    def __init__(self, path: Path, agent_id: str) -> None:
        self.path = path
        self.agent_id = agent_id
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self.db = sqlite_utils.Database(conn)
            self._migrate()
            self._last_seq = self._meta("last_seq")
            self._acked_seq = self._meta("acked_seq")
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"outbox {path}: cannot open: {exc}") from exc

    def _migrate(self) -> None:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise OutboxError(
                f"outbox {self.path}: schema version {version} is newer than this agent "
                f"knows ({len(MIGRATIONS)})"
            )
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.db.conn:
                self.db.execute("BEGIN")
                migration(self.db)
                self.db.execute(f"PRAGMA user_version={number}")
            log.info("outbox %s: schema migrated to version %d", self.path, number)

    def _meta(self, key: str) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key=?", [key]).fetchone()[0])

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def acked_seq(self) -> int:
        return self._acked_seq

    def append(self, kind: str, payload: BaseModel, stamp: Stamp) -> int:
        """Validate, number and durably store one event; return its sequence number."""
        seq = self._last_seq + 1
        try:
            event = EVENT_ADAPTER.validate_python(
                {
                    "id": uuid.uuid4(),
                    "agent_id": self.agent_id,
                    "seq": seq,
                    "kind": kind,
                    "occurred_at": stamp.occurred_at,
                    "clock_synced": stamp.clock_synced,
                    "boot_id": stamp.boot_id,
                    "mono_s": stamp.mono_s,
                    "payload": payload,
                }
            )
        except ValidationError as exc:
            raise OutboxError(f"refusing invalid {kind} event: {exc}") from exc
        body = event.model_dump_json(exclude_none=True)
        try:
            with self.db.conn:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute(
                    "INSERT INTO events (seq, id, kind, occurred_at, body) VALUES (?, ?, ?, ?, ?)",
                    [seq, str(event.id), kind, event.occurred_at.isoformat(), body],
                )
                self.db.execute("UPDATE meta SET value=? WHERE key='last_seq'", [seq])
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot store {kind} event: {exc}") from exc
        self._last_seq = seq
        return seq

    def pending(self, after_seq: int, max_events: int, max_bytes: int) -> list[Pending]:
        """Events with seq > ``after_seq``, oldest first, within both limits (at least one)."""
        rows = self.db.execute(
            "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            [after_seq, max_events],
        ).fetchall()
        out: list[Pending] = []
        size = 0
        for seq, body in rows:
            size += len(body) + 2
            if out and size > max_bytes:
                break
            out.append(Pending(seq, body))
        return out

    def ack(self, acked_seq: int) -> int:
        """Forget events the server has stored; return how many were removed."""
        if acked_seq <= self._acked_seq:
            return 0
        if acked_seq > self._last_seq:
            log.error(
                "server acknowledges seq %d but this outbox only reached %d; "
                "continuing numbering after the server's",
                acked_seq,
                self._last_seq,
            )
        with self.db.conn:
            self.db.execute("BEGIN IMMEDIATE")
            removed = self.db.execute("DELETE FROM events WHERE seq <= ?", [acked_seq]).rowcount
            self.db.execute("UPDATE meta SET value=? WHERE key='acked_seq'", [acked_seq])
            if acked_seq > self._last_seq:
                self.db.execute("UPDATE meta SET value=? WHERE key='last_seq'", [acked_seq])
                self._last_seq = acked_seq
        self._acked_seq = acked_seq
        return int(removed)

    def stats(self) -> OutboxStats:
        count, oldest = self.db.execute("SELECT count(*), min(occurred_at) FROM events").fetchone()
        return OutboxStats(
            last_seq=self._last_seq,
            acked_seq=self._acked_seq,
            backlog=int(count),
            oldest_unsent_at=datetime.fromisoformat(oldest) if oldest else None,
        )

    def close(self) -> None:
        self.db.conn.close()


class AsyncOutbox:
    """The outbox for asyncio code: every call runs on the outbox's own thread."""

    def __init__(self, path: Path, agent_id: str) -> None:
        self._path = path
        self._agent_id = agent_id
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._outbox: Outbox | None = None
        #: Set whenever an event is appended, so the link wakes up without polling.
        self.appended = asyncio.Event()

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    @property
    def sync(self) -> Outbox:
        if self._outbox is None:
            raise OutboxError("outbox is not open")
        return self._outbox

    async def open(self) -> None:
        self._outbox = await self._run(Outbox, self._path, self._agent_id)

    async def append(self, kind: str, payload: BaseModel, stamp: Stamp) -> int:
        seq = await self._run(self.sync.append, kind, payload, stamp)
        self.appended.set()
        return seq

    async def pending(self, after_seq: int, max_events: int, max_bytes: int) -> list[Pending]:
        return await self._run(self.sync.pending, after_seq, max_events, max_bytes)

    async def ack(self, acked_seq: int) -> int:
        return await self._run(self.sync.ack, acked_seq)

    async def stats(self) -> OutboxStats:
        return await self._run(self.sync.stats)

    async def close(self) -> None:
        if self._outbox is not None:
            await self._run(self._outbox.close)
        self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"AsyncOutbox({self._path!s})"
