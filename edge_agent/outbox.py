"""The agent's outbox: every event is committed here before anything else depends on it.

SQLite in WAL mode with ``synchronous=FULL``: a commit has reached the SD card before
``append`` returns, so a power cut loses nothing that was accepted. The per-agent sequence
number is read and assigned inside the transaction that stores the event, so it has no gaps,
survives restarts and stays right even if a second process (``edge-agent inject``) appends.
Acknowledged events are deleted; the counters stay in ``meta``.

Capacity: past ``max_events`` rows, climate records that were never sent are folded into
per-hour (then per-day) summaries; no other kind is ever dropped. ``max_bytes`` caps the file
(SQLite's ``max_page_count``), and a full disk or cap is retried after compaction and otherwise
reported as ``OutboxFull``. A file SQLite calls corrupt is set aside and a new outbox, with a new
epoch, is started, so a bad SD card sector does not crash-loop the agent.

``Outbox`` is synchronous and owns one connection; ``AsyncOutbox`` runs it on one worker
thread so the asyncio loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import sqlite3
import statistics
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import sqlite_utils
from pydantic import BaseModel, ValidationError

from edge_agent.clock import Stamp
from edge_agent.wire import (
    COMPACTABLE_KIND,
    EVENT_ADAPTER,
    ClimateSummary,
    CommandResult,
    EventRefused,
    SensorSummary,
    StorageAlarm,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

#: Summary windows tried in turn while the outbox is over its cap.
COMPACTION_WINDOWS_S = (3600, 86400)

Storage = Literal["ok", "cap_reached", "disk_full"]


class OutboxError(Exception):
    """The outbox cannot be opened or written; the message says why."""


class OutboxFull(OutboxError):
    """No room for the event, even after compaction (disk full or ``max_bytes`` reached)."""


class _Corrupt(OutboxError):
    pass


@dataclass(frozen=True)
class Pending:
    seq: int
    span: int
    body: str

    @property
    def last_seq(self) -> int:
        return self.seq + self.span - 1


@dataclass(frozen=True)
class OutboxStats:
    epoch: str
    last_seq: int
    acked_seq: int
    backlog: int
    oldest_unsent_at: datetime | None
    compacted_total: int
    storage: Storage


@dataclass(frozen=True)
class Reset:
    """Why the previous outbox was set aside, and where it was kept."""

    reason: str
    kept_as: Path


def _migration_1(db: sqlite_utils.Database) -> None:
    """The first outbox (spine): numbered events and two counters."""
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER)")
    db.execute("INSERT INTO meta (key, value) VALUES ('last_seq', 0), ('acked_seq', 0)")
    db.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, kind TEXT NOT NULL, "
        "occurred_at TEXT NOT NULL, body TEXT NOT NULL)"
    )


def _migration_2(db: sqlite_utils.Database) -> None:
    """Epochs, spans (compaction), the sent high-water mark and seen commands.

    ``meta`` becomes text-valued (an epoch is hex and must not be read as a number). Events
    already in the outbox keep their numbers and go out in the new epoch, which the server
    takes as the continuation of an agent it knew before epochs.
    """
    db.execute("ALTER TABLE meta RENAME TO meta_v1")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta (key, value) SELECT key, CAST(value AS TEXT) FROM meta_v1")
    db.execute("DROP TABLE meta_v1")
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?), ('compacted_total', '0'), "
        "('sent_seq', (SELECT value FROM meta WHERE key = 'last_seq'))",
        ["epoch", uuid.uuid4().hex],
    )
    db.execute("ALTER TABLE events ADD COLUMN span INTEGER NOT NULL DEFAULT 1")
    db.execute(
        "CREATE TABLE commands (id TEXT PRIMARY KEY, kind TEXT, received_at TEXT, ok INTEGER, "
        "detail TEXT)"
    )


#: Schema migrations, applied in order; ``PRAGMA user_version`` records how many ran.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migration_1, _migration_2]


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (int(code) & 0xFF == _SQLITE_FULL) if code is not None else "is full" in str(exc)


class Outbox:
    def __init__(
        self,
        path: Path,
        agent_id: str,
        *,
        max_events: int = 500_000,
        max_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.agent_id = agent_id
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.reset: Reset | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"outbox {path}: cannot create directory: {exc}") from exc
        try:
            self._open()
        except _Corrupt as exc:
            self.reset = Reset(str(exc), self._set_aside())
            log.critical(
                "outbox %s is corrupt (%s); kept as %s, starting a new outbox",
                path,
                exc,
                self.reset.kept_as,
            )
            self._open()
        self.storage: Storage = "ok"

    # --- opening ------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot open: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise _Corrupt(f"integrity check failed: {check}")
            if self.max_bytes is not None:
                page = int(conn.execute("PRAGMA page_size").fetchone()[0])
                conn.execute(f"PRAGMA max_page_count={max(16, self.max_bytes // page)}")
            self.db = sqlite_utils.Database(conn)
            self._migrate()
            self._load()
        except _Corrupt:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_corruption(exc):
                raise _Corrupt(str(exc)) from exc
            raise OutboxError(f"outbox {self.path}: cannot open: {exc}") from exc

    def _set_aside(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                src.rename(Path(str(kept) + suffix))
        return kept

    def _migrate(self) -> None:
        # Under the write lock, so that two processes opening a new file migrate it once.
        with self._transaction():
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise OutboxError(
                    f"outbox {self.path}: schema version {version} is newer than this agent "
                    f"knows ({len(MIGRATIONS)})"
                )
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(self.db)
                self.db.execute(f"PRAGMA user_version={number}")
                log.info("outbox %s: schema migrated to version %d", self.path, number)

    def _load(self) -> None:
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        self.epoch: str = meta["epoch"]
        self._acked_seq = int(meta["acked_seq"])
        self._compacted = int(meta["compacted_total"])
        self._rows = self._count()
        # Anything numbered before this start may have been published: never fold it.
        self._sent_hwm = self.last_seq

    # --- helpers ------------------------------------------------------------------------------

    class _Txn:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> None:
            self.conn.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *_: object) -> None:
            if exc_type is None:
                self.conn.execute("COMMIT")
            elif self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def _transaction(self) -> Outbox._Txn:
        return Outbox._Txn(self.db.conn)

    def _meta(self, key: str) -> str:
        return str(self.db.execute("SELECT value FROM meta WHERE key=?", [key]).fetchone()[0])

    def _set_meta(self, key: str, value: int | str) -> None:
        self.db.execute("UPDATE meta SET value=? WHERE key=?", [str(value), key])

    @property
    def last_seq(self) -> int:
        return int(self._meta("last_seq"))

    @property
    def acked_seq(self) -> int:
        return self._acked_seq

    @property
    def compacted_total(self) -> int:
        return self._compacted

    @property
    def backlog(self) -> int:
        return self._rows

    def _insert_event(
        self, kind: str, payload: BaseModel, stamp: Stamp, seq: int | None = None, span: int = 1
    ) -> int:
        """Insert inside the caller's transaction; numbers the event unless ``seq`` is given."""
        last = int(self._meta("last_seq"))
        number = last + 1 if seq is None else seq
        try:
            event = EVENT_ADAPTER.validate_python(
                {
                    "id": uuid.uuid4(),
                    "agent_id": self.agent_id,
                    "seq": number,
                    "span": span,
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
        self.db.execute(
            "INSERT INTO events (seq, span, id, kind, occurred_at, body) VALUES (?, ?, ?, ?, ?, ?)",
            [
                number,
                span,
                str(event.id),
                kind,
                event.occurred_at.isoformat(),
                event.model_dump_json(exclude_none=True, exclude_defaults=False),
            ],
        )
        if seq is None:
            self._set_meta("last_seq", number)
            self._rows += 1
        return number

    # --- writing ------------------------------------------------------------------------------

    def append(self, kind: str, payload: BaseModel, stamp: Stamp) -> int:
        """Validate, number and durably store one event; return its sequence number."""
        try:
            seq = self._append_once(kind, payload, stamp)
        except OutboxFull:
            log.warning("outbox %s full; compacting climate records and retrying", self.path)
            try:
                self.compact(0)
            except OutboxError as exc:
                log.error("%s", exc)
            seq = self._append_once(kind, payload, stamp)
        if self._rows > self.max_events:
            try:
                self._rows = self._count()  # another process may have acknowledged or appended
                if self._rows > self.max_events:
                    self._over_cap()
            except (OutboxError, sqlite3.Error) as exc:
                # The event itself is stored; only the clean-up failed and is retried next time.
                log.error("outbox %s over its cap and cannot fold: %s", self.path, exc)
        return seq

    def _append_once(self, kind: str, payload: BaseModel, stamp: Stamp) -> int:
        rows_before = self._rows
        try:
            with self._transaction():
                return self._insert_event(kind, payload, stamp)
        except sqlite3.Error as exc:
            self._rows = rows_before
            if _is_full(exc):
                raise OutboxFull(f"outbox {self.path}: no room for {kind} event: {exc}") from exc
            raise OutboxError(f"outbox {self.path}: cannot store {kind} event: {exc}") from exc

    def _over_cap(self) -> None:
        before = self._rows
        folded = self.compact(int(self.max_events * 0.8))
        log.warning(
            "outbox %s over its cap of %d events: %d climate records folded, %d -> %d rows",
            self.path,
            self.max_events,
            folded,
            before,
            self._rows,
        )
        if self.storage != "cap_reached":
            detail = f"cap of {self.max_events} events reached; {folded} climate records folded"
            self._storage_changed("cap_reached", detail, None)

    def _storage_changed(self, state: Storage, detail: str, stamp: Stamp | None) -> None:
        """Record the change as an alarm event; the state changes only once that is stored."""
        alarm = StorageAlarm(
            state="recovered" if state == "ok" else state,
            detail=detail,
            compacted_total=self._compacted,
        )
        rows_before = self._rows
        try:
            with self._transaction():
                self._insert_event("agent.storage_alarm", alarm, stamp or self._last_stamp())
        except sqlite3.Error as exc:
            self._rows = rows_before
            log.error(
                "outbox %s: storage %s, but the alarm cannot be stored: %s", self.path, state, exc
            )
            return
        self.storage = state

    def _last_stamp(self) -> Stamp:
        body = self.db.execute("SELECT body FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        event = json.loads(body[0]) if body else {}
        return Stamp(
            occurred_at=datetime.fromisoformat(event["occurred_at"])
            if event
            else datetime.now(UTC),
            clock_synced=bool(event.get("clock_synced", False)),
            boot_id=str(event.get("boot_id", "")),
            mono_s=float(event.get("mono_s", 0.0)),
        )

    def replace_refused(self, seq: int, event_id: uuid.UUID, reason: str, stamp: Stamp) -> bool:
        """Put an ``agent.event_refused`` in place of the event the server refused as malformed.

        Only if the event at ``seq`` is still here and is the one refused (same id): a refusal
        of someone else's event with this number (a clone, a forgery) changes nothing. The
        stand-in keeps the number and span, so the stream goes on instead of waiting for ever.
        """
        with self._transaction():
            row = self.db.execute("SELECT id, kind, span FROM events WHERE seq = ?", [seq])
            found = row.fetchone()
            if found is None or found[0] != str(event_id):
                return False
            self.db.execute("DELETE FROM events WHERE seq = ?", [seq])
            refused = EventRefused(refused_id=event_id, refused_kind=found[1], reason=reason[:500])
            self._insert_event("agent.event_refused", refused, stamp, seq=seq, span=found[2])
        return True

    def record_command(
        self, command_id: uuid.UUID, kind: str, ok: bool, detail: str, stamp: Stamp
    ) -> int | None:
        """Remember a command and queue its result; ``None`` if it was seen before."""
        with self._transaction():
            inserted = self.db.execute(
                "INSERT OR IGNORE INTO commands (id, kind, received_at, ok, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                [str(command_id), kind, stamp.occurred_at.isoformat(), int(ok), detail],
            ).rowcount
            if not inserted:
                return None
            result = CommandResult(command_id=command_id, command_kind=kind, ok=ok, detail=detail)
            return self._insert_event("command.result", result, stamp)

    def seen_command(self, command_id: uuid.UUID) -> bool:
        row = self.db.execute("SELECT 1 FROM commands WHERE id=?", [str(command_id)]).fetchone()
        return row is not None

    # --- reading and acknowledging ------------------------------------------------------------

    def pending(self, after_seq: int, max_events: int, max_bytes: int) -> list[Pending]:
        """Events with seq > ``after_seq``, oldest first, within both limits (at least one)."""
        rows = self.db.execute(
            "SELECT seq, span, body FROM events WHERE seq + span - 1 > ? ORDER BY seq LIMIT ?",
            [after_seq, max_events],
        ).fetchall()
        out: list[Pending] = []
        size = 0
        for seq, span, body in rows:
            size += len(body) + 2
            if out and size > max_bytes:
                break
            out.append(Pending(seq, span, body))
        if out and out[-1].last_seq > self._sent_hwm:
            self._mark_sent(out[-1].last_seq)
        return out

    def _mark_sent(self, seq: int) -> None:
        """Record, for every process on this outbox, that events up to ``seq`` may be out.

        Compaction must never fold an event the server may hold. Losing this write in a power
        cut is harmless (after a restart everything numbered counts as sent), so it is
        committed without the full sync that events get.
        """
        self._sent_hwm = seq
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction():
                self.db.execute(
                    "UPDATE meta SET value = ? "
                    "WHERE key = 'sent_seq' AND CAST(value AS INTEGER) < ?",
                    [str(seq), seq],
                )
        except sqlite3.Error as exc:
            log.warning("outbox %s: cannot record sent seq %d: %s", self.path, seq, exc)
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def ack(self, acked_seq: int) -> int:
        """Forget events the server has stored; return how many were removed."""
        if acked_seq <= self._acked_seq:
            return 0
        last = self.last_seq
        if acked_seq > last:
            log.error(
                "server acknowledges seq %d of epoch %s but this outbox only reached %d; "
                "ignoring the excess",
                acked_seq,
                self.epoch,
                last,
            )
            acked_seq = last
        try:
            with self._transaction():
                removed = self.db.execute(
                    "DELETE FROM events WHERE seq + span - 1 <= ?", [acked_seq]
                ).rowcount
                self._set_meta("acked_seq", acked_seq)
        except sqlite3.Error as exc:
            raise OutboxError(
                f"outbox {self.path}: cannot forget acknowledged events: {exc}"
            ) from exc
        self._acked_seq = acked_seq
        self._rows = self._count()
        if self.storage == "cap_reached" and self._rows < self.max_events // 2:
            self._storage_changed("ok", "backlog delivered; outbox under half its cap", None)
        return int(removed)

    def _count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM events").fetchone()[0])

    def oldest_unsent_at(self) -> datetime | None:
        row = self.db.execute("SELECT occurred_at FROM events ORDER BY seq LIMIT 1").fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def stats(self) -> OutboxStats:
        return OutboxStats(
            epoch=self.epoch,
            last_seq=self.last_seq,
            acked_seq=self._acked_seq,
            backlog=self._count(),
            oldest_unsent_at=self.oldest_unsent_at(),
            compacted_total=self._compacted,
            storage=self.storage,
        )

    # --- compaction ---------------------------------------------------------------------------

    def compact(self, target_rows: int) -> int:
        """Fold unsent climate records into summaries until at most ``target_rows`` remain."""
        folded = 0
        rows_before = self._rows
        try:
            for window in COMPACTION_WINDOWS_S:
                if self._rows <= target_rows:
                    break
                folded += self._compact_pass(window)
        except sqlite3.Error as exc:
            self._rows = rows_before if not folded else self._count()
            raise OutboxError(f"outbox {self.path}: cannot fold climate records: {exc}") from exc
        return folded

    def _runs(self, window_s: int) -> Iterator[list[tuple[int, int, str, str]]]:
        """Maximal runs of consecutive unsent climate records within one time window."""
        run: list[tuple[int, int, str, str]] = []
        run_key: int | None = None
        cursor = max(self._sent_hwm, int(self._meta("sent_seq")))
        while True:
            rows = self.db.execute(
                "SELECT seq, span, kind, occurred_at, body FROM events WHERE seq > ? "
                "ORDER BY seq LIMIT 5000",
                [cursor],
            ).fetchall()
            if not rows:
                break
            for seq, span, kind, occurred_at, body in rows:
                key = int(datetime.fromisoformat(occurred_at).timestamp()) // window_s
                contiguous = bool(run) and run[-1][0] + run[-1][1] == seq
                if kind == COMPACTABLE_KIND and contiguous and key == run_key:
                    run.append((seq, span, occurred_at, body))
                    continue
                if len(run) > 1:
                    yield run
                run, run_key = [], None
                if kind == COMPACTABLE_KIND:
                    run, run_key = [(seq, span, occurred_at, body)], key
            cursor = rows[-1][0]
        if len(run) > 1:
            yield run

    def _compact_pass(self, window_s: int) -> int:
        folded = 0
        with self._transaction():
            for run in self._runs(window_s):
                first_seq = run[0][0]
                span = run[-1][0] + run[-1][1] - first_seq
                events = [json.loads(body) for _, _, _, body in run]
                self.db.execute(
                    "DELETE FROM events WHERE seq BETWEEN ? AND ?", [first_seq, run[-1][0]]
                )
                last = events[-1]
                stamp = Stamp(
                    occurred_at=datetime.fromisoformat(last["occurred_at"]),
                    clock_synced=all(e["clock_synced"] for e in events),
                    boot_id=last["boot_id"],
                    mono_s=last["mono_s"],
                )
                self._insert_event(
                    "climate.summary", summarise(events), stamp, seq=first_seq, span=span
                )
                self._rows -= len(run) - 1
                folded += len(run)
            self._compacted += folded
            self._set_meta("compacted_total", self._compacted)
        return folded

    def close(self) -> None:
        self.db.conn.close()


def summarise(events: list[dict[str, Any]]) -> ClimateSummary:
    """min/mean/max per sensor of climate-record events (as stored JSON dicts)."""
    by_sensor: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for e in events:
        by_sensor[(e["payload"]["storeroom"], e["payload"]["sensor"])].append(e)
    sensors = []
    for (room, sensor), items in sorted(by_sensor.items()):
        temps = [i["payload"]["temperature_c"] for i in items]
        hums = [i["payload"]["humidity_pct"] for i in items]
        sensors.append(
            SensorSummary(
                storeroom=room,
                sensor=sensor,
                count=len(items),
                first_at=items[0]["occurred_at"],
                last_at=items[-1]["occurred_at"],
                temperature_min_c=min(temps),
                temperature_mean_c=round(statistics.fmean(temps), 3),
                temperature_max_c=max(temps),
                humidity_min_pct=min(hums),
                humidity_mean_pct=round(statistics.fmean(hums), 3),
                humidity_max_pct=max(hums),
            )
        )
    return ClimateSummary(
        window_start=events[0]["occurred_at"],
        window_end=events[-1]["occurred_at"],
        records=len(events),
        sensors=sensors,
    )


class AsyncOutbox:
    """The outbox for asyncio code: every call runs on the outbox's own thread.

    When the disk is full even after compaction, events are held in memory (bounded) and
    written as soon as there is room again; the status message says ``disk_full`` meanwhile.
    """

    MAX_HELD = 10_000

    def __init__(
        self,
        path: Path,
        agent_id: str,
        *,
        max_events: int = 500_000,
        max_bytes: int | None = None,
    ) -> None:
        self._make = functools.partial(
            Outbox, path, agent_id, max_events=max_events, max_bytes=max_bytes
        )
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._outbox: Outbox | None = None
        self._held: collections.deque[tuple[str, BaseModel, Stamp]] = collections.deque()
        self._hold_lock = asyncio.Lock()
        self.dropped_while_full = 0
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

    @property
    def storage(self) -> Storage:
        return "disk_full" if self._held else self.sync.storage

    async def open(self) -> Outbox:
        self._outbox = await self._run(self._make)
        return self._outbox

    async def append(self, kind: str, payload: BaseModel, stamp: Stamp) -> int | None:
        """Store an event; ``None`` when it is held in memory because the disk is full."""
        async with self._hold_lock:
            if self._held:
                self._hold(kind, payload, stamp)
                await self._flush_held()
                return None
            return await self._append_or_hold(kind, payload, stamp)

    async def _append_or_hold(self, kind: str, payload: BaseModel, stamp: Stamp) -> int | None:
        try:
            seq = await self._run(self.sync.append, kind, payload, stamp)
        except OutboxFull as exc:
            log.critical("%s; holding events in memory until there is room", exc)
            alarm = StorageAlarm(
                state="disk_full", detail=str(exc)[:500], compacted_total=self.sync.compacted_total
            )
            self._held.append(("agent.storage_alarm", alarm, stamp))
            self._hold(kind, payload, stamp)
            return None
        self.appended.set()
        return seq

    def _hold(self, kind: str, payload: BaseModel, stamp: Stamp) -> None:
        if len(self._held) >= self.MAX_HELD:
            for i, (held_kind, _, _) in enumerate(self._held):
                if held_kind == COMPACTABLE_KIND:
                    del self._held[i]
                    self.dropped_while_full += 1
                    break
            else:
                raise OutboxFull("disk full and memory hold full: event refused")
        self._held.append((kind, payload, stamp))

    async def flush_held(self) -> bool:
        """Write held events in order; True when none remain."""
        async with self._hold_lock:
            return await self._flush_held()

    async def _flush_held(self) -> bool:
        while self._held:
            kind, payload, stamp = self._held[0]
            try:
                await self._run(self.sync.append, kind, payload, stamp)
            except OutboxFull:
                return False
            self._held.popleft()
            self.appended.set()
            if not self._held:
                log.warning("outbox has room again; held events written")
                detail = "room again; held events written"
                if self.dropped_while_full:
                    detail += f"; {self.dropped_while_full} climate records dropped while full"
                alarm = StorageAlarm(
                    state="recovered", detail=detail, compacted_total=self.sync.compacted_total
                )
                await self._run(self.sync.append, "agent.storage_alarm", alarm, stamp)
        return True

    async def replace_refused(
        self, seq: int, event_id: uuid.UUID, reason: str, stamp: Stamp
    ) -> bool:
        return await self._run(self.sync.replace_refused, seq, event_id, reason, stamp)

    async def record_command(
        self, command_id: uuid.UUID, kind: str, ok: bool, detail: str, stamp: Stamp
    ) -> int | None:
        seq = await self._run(self.sync.record_command, command_id, kind, ok, detail, stamp)
        self.appended.set()
        return seq

    async def seen_command(self, command_id: uuid.UUID) -> bool:
        return await self._run(self.sync.seen_command, command_id)

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
