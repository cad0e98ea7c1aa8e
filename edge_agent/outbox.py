"""The agent's outbox: every event is committed here before anything else depends on it.

It is a transport: it numbers, stores, sends and forgets events and knows nothing of what they
mean. A domain that must commit its own state together with its events (a slot's count and the
dispense that lowered it; a command and its result) brings its tables as a ``DomainSchema`` and
writes them in ``transact``; a domain whose events may be folded when the outbox is over its cap
brings a ``Compaction``.

SQLite in WAL mode with ``synchronous=FULL``: a commit has reached the SD card before
``append`` returns, so a power cut loses nothing that was accepted. The per-agent sequence
number is read and assigned inside the transaction that stores the event, so it has no gaps,
survives restarts and stays right even if a second process appends. Acknowledged events are
deleted by an indexed range; the counters (last and acknowledged number, rows) stay in ``meta``
and change in the same transactions, so nothing counts the whole table.

Each event is stored with a CRC of its body and checked before it is sent: one that cannot be
read back (a rotten byte on the SD card) is set aside in ``unreadable``, an
``agent.event_unreadable`` stands in for it with its number, and the stream goes on. The epoch
and numbers are also kept in a small state file beside the outbox, so a vanished or emptied
outbox is reported (``Reset``) with the count of events lost, instead of a silent new epoch.

Capacity: past ``max_events`` rows, unsent events of a compactable kind are folded into
per-hour (then per-day) summaries; no other kind is ever dropped. ``max_bytes`` caps the file
(SQLite's ``max_page_count``), and a full disk or cap is retried after compaction and otherwise
reported as ``OutboxFull``; a compaction that found nothing to fold is not tried again for
``FOLD_RETRY_S``. A file SQLite calls corrupt is set aside and a new outbox, with a new epoch,
is started, so a bad SD card sector does not crash-loop the agent. The full integrity check
does not delay start-up: ``verify`` runs it later and marks the file for setting aside at the
next start.

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
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from pydantic import BaseModel, ValidationError

from edge_agent.clock import Stamp
from edge_agent.files import write_atomically
from edge_agent.wire import EVENT_ADAPTER, EventRefused, EventUnreadable, StorageAlarm

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

#: Summary windows tried in turn while the outbox is over its cap.
COMPACTION_WINDOWS_S = (3600, 86400)
#: After a compaction that folded nothing, appends do not try again for this long.
FOLD_RETRY_S = 60.0
#: The state file beside the outbox is rewritten at most this often while events are appended.
STATE_SAVE_S = 30.0
#: Unreadable events kept for inspection; the oldest are dropped beyond this.
MAX_UNREADABLE = 10_000

Storage = Literal["ok", "cap_reached", "disk_full"]
ResetCause = Literal["corrupt", "emptied", "missing"]


class OutboxError(Exception):
    """The outbox cannot be opened or written; the message says why."""


class OutboxFull(OutboxError):
    """No room for the event, even after compaction (disk full or ``max_bytes`` reached)."""


class OutboxCorrupt(OutboxError):
    """SQLite found the file damaged; it is set aside at the next start."""


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
    unreadable: int = 0


@dataclass(frozen=True)
class Reset:
    """Why the previous outbox is gone, what was lost, and where it was kept (if it was)."""

    reason: str
    kept_as: Path | None
    cause: ResetCause = "corrupt"
    previous_epoch: str | None = None
    previous_last_seq: int | None = None
    lost_events: int | None = None


@dataclass(frozen=True)
class DomainSchema:
    """A domain's own tables in the outbox file, so its state commits with its events.

    ``migrations`` run in order, each once; the count that ran is kept per domain.
    """

    name: str
    migrations: Sequence[Callable[[sqlite3.Connection], None]]


@dataclass(frozen=True)
class Compaction:
    """How a domain lets its unsent events of ``kind`` be folded when the outbox is over its cap:
    ``fold`` turns a run of them (stored JSON, oldest first) into one ``summary_kind`` payload."""

    kind: str
    summary_kind: str
    fold: Callable[[list[dict[str, Any]]], BaseModel]


@dataclass(frozen=True)
class _State:
    """What is kept apart from the outbox to notice that it vanished."""

    agent_id: str
    epoch: str
    last_seq: int
    acked_seq: int


def _migration_1(db: sqlite3.Connection) -> None:
    """The first outbox (spine): numbered events and two counters."""
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER)")
    db.execute("INSERT INTO meta (key, value) VALUES ('last_seq', 0), ('acked_seq', 0)")
    db.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, kind TEXT NOT NULL, "
        "occurred_at TEXT NOT NULL, body TEXT NOT NULL)"
    )


def _migration_2(db: sqlite3.Connection) -> None:
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


def _migration_3(db: sqlite3.Connection) -> None:
    """Transport only: a CRC per event, a kept row count, set-aside events, domains' versions.

    The ``commands`` table stays; it now belongs to the commands domain.
    """
    db.execute("ALTER TABLE events ADD COLUMN crc INTEGER")
    db.execute("INSERT INTO meta (key, value) SELECT 'rows', CAST(count(*) AS TEXT) FROM events")
    db.execute(
        "CREATE TABLE unreadable (seq INTEGER PRIMARY KEY, span INTEGER NOT NULL, "
        "kind TEXT, body BLOB, reason TEXT NOT NULL, found_at TEXT NOT NULL)"
    )
    db.execute("CREATE TABLE domains (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")


#: Schema migrations, applied in order; ``PRAGMA user_version`` records how many ran.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migration_1, _migration_2, _migration_3]


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (int(code) & 0xFF == _SQLITE_FULL) if code is not None else "is full" in str(exc)


def crc(body: bytes) -> int:
    return zlib.crc32(body)


class Unit:
    """One transaction on the outbox: a domain's own writes and its events commit together."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._outbox.db.execute(sql, params)

    def append(self, kind: str, payload: BaseModel, stamp: Stamp) -> int:
        return self._outbox._insert_event(kind, payload, stamp)


class Outbox:
    def __init__(
        self,
        path: Path,
        agent_id: str,
        *,
        max_events: int = 500_000,
        max_bytes: int | None = None,
        schemas: Sequence[DomainSchema] = (),
        compaction: Sequence[Compaction] = (),
        state_path: Path | None = None,
    ) -> None:
        self.path = path
        self.agent_id = agent_id
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.schemas = tuple(schemas)
        self.compaction = {c.kind: c for c in compaction}
        self.state_path = state_path or path.with_name(path.stem + ".state")
        self.suspect_path = path.with_name(path.name + ".suspect")
        self.reset: Reset | None = None
        self.storage: Storage = "ok"
        self._fold_retry_at = 0.0
        self._state_saved_at = 0.0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"outbox {path}: cannot create directory: {exc}") from exc
        previous = self._read_state()
        existed = path.exists()
        try:
            self._open(full_check=self.suspect_path.exists())
        except _Corrupt as exc:
            kept = self._set_aside()
            self.reset = self._reset(previous, "corrupt", f"corrupt: {exc}", kept)
            log.critical(
                "outbox %s is corrupt (%s); kept as %s, starting a new outbox",
                path,
                exc,
                kept,
            )
            self._open(full_check=False)
        self.suspect_path.unlink(missing_ok=True)
        if self.reset is None and previous is not None and previous.epoch != self.epoch:
            if self._created:
                cause: ResetCause = "emptied" if existed else "missing"
                self.reset = self._reset(
                    previous, cause, f"outbox file {cause} (epoch {previous.epoch})", None
                )
                log.critical(
                    "outbox %s was %s; at least %d events of epoch %s were never acknowledged "
                    "and are lost; starting epoch %s",
                    path,
                    cause,
                    self.reset.lost_events or 0,
                    previous.epoch,
                    self.epoch,
                )
            else:
                log.warning(
                    "outbox %s holds epoch %s, but epoch %s was last recorded beside it "
                    "(a copied or restored file?)",
                    path,
                    self.epoch,
                    previous.epoch,
                )
        self._save_state()

    # --- opening ------------------------------------------------------------------------------

    def _open(self, *, full_check: bool) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot open: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if full_check:
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise _Corrupt(f"integrity check failed: {check}")
            if self.max_bytes is not None:
                page = int(conn.execute("PRAGMA page_size").fetchone()[0])
                conn.execute(f"PRAGMA max_page_count={max(16, self.max_bytes // page)}")
            self.db = conn
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

    def _reset(
        self, previous: _State | None, cause: ResetCause, reason: str, kept: Path | None
    ) -> Reset:
        if previous is None:
            return Reset(reason, kept, cause)
        return Reset(
            reason,
            kept,
            cause,
            previous_epoch=previous.epoch,
            previous_last_seq=previous.last_seq,
            lost_events=max(0, previous.last_seq - previous.acked_seq),
        )

    def _migrate(self) -> None:
        # Under the write lock, so that two processes opening a new file migrate it once.
        with self._transaction():
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            self._created = version == 0
            if version > len(MIGRATIONS):
                raise OutboxError(
                    f"outbox {self.path}: schema version {version} is newer than this agent "
                    f"knows ({len(MIGRATIONS)})"
                )
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(self.db)
                self.db.execute(f"PRAGMA user_version={number}")
                log.info("outbox %s: schema migrated to version %d", self.path, number)
            for schema in self.schemas:
                self._migrate_domain(schema)

    def _migrate_domain(self, schema: DomainSchema) -> None:
        row = self.db.execute("SELECT version FROM domains WHERE name = ?", [schema.name])
        found = row.fetchone()
        version = int(found[0]) if found else 0
        if version > len(schema.migrations):
            raise OutboxError(
                f"outbox {self.path}: {schema.name} tables are at version {version}, newer than "
                f"this agent knows ({len(schema.migrations)})"
            )
        for number, migration in enumerate(schema.migrations[version:], start=version + 1):
            migration(self.db)
            self.db.execute(
                "INSERT INTO domains (name, version) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                [schema.name, number],
            )
            log.info("outbox %s: %s tables migrated to version %d", self.path, schema.name, number)

    def _load(self) -> None:
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        self.epoch: str = meta["epoch"]
        self._acked_seq = int(meta["acked_seq"])
        self._compacted = int(meta["compacted_total"])
        self._rows = int(meta["rows"])
        # Anything numbered before this start may have been published: never fold it.
        self._sent_hwm = int(meta["last_seq"])

    # --- the state kept apart -----------------------------------------------------------------

    def _read_state(self) -> _State | None:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            state = _State(
                str(data["agent_id"]),
                str(data["epoch"]),
                int(data["last_seq"]),
                int(data["acked_seq"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("outbox state %s unreadable (%s); ignored", self.state_path, exc)
            return None
        return state if state.agent_id == self.agent_id else None

    def _save_state(self) -> None:
        """Record epoch and numbers beside the outbox. Advisory: a stale copy only makes the
        count of lost events a lower bound, so a failure is logged and not raised."""
        self._state_saved_at = time.monotonic()
        state = {
            "agent_id": self.agent_id,
            "epoch": self.epoch,
            "last_seq": self.last_seq,
            "acked_seq": self._acked_seq,
        }
        try:
            write_atomically(self.state_path, json.dumps(state))
        except OSError as exc:
            log.warning("outbox state %s not saved: %s", self.state_path, exc)

    def _save_state_soon(self) -> None:
        if time.monotonic() - self._state_saved_at >= STATE_SAVE_S:
            self._save_state()

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
        return Outbox._Txn(self.db)

    def _meta(self, key: str) -> str:
        return str(self.db.execute("SELECT value FROM meta WHERE key=?", [key]).fetchone()[0])

    def _set_meta(self, key: str, value: int | str) -> None:
        self.db.execute("UPDATE meta SET value=? WHERE key=?", [str(value), key])

    def _add_rows(self, delta: int) -> None:
        if delta:
            self.db.execute(
                "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT) "
                "WHERE key = 'rows'",
                [delta],
            )

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
        """Insert inside the caller's transaction; numbers the event unless ``seq`` is given
        (a stand-in or a summary taking the place of events already counted)."""
        number = int(self._meta("last_seq")) + 1 if seq is None else seq
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
        body = event.model_dump_json(exclude_none=True, exclude_defaults=False)
        self.db.execute(
            "INSERT INTO events (seq, span, id, kind, occurred_at, body, crc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                number,
                span,
                str(event.id),
                kind,
                event.occurred_at.isoformat(),
                body,
                crc(body.encode()),
            ],
        )
        if seq is None:
            self._set_meta("last_seq", number)
            self._add_rows(1)
        return number

    def _refresh_rows(self) -> None:
        self._rows = int(self._meta("rows"))

    # --- writing ------------------------------------------------------------------------------

    def append(self, kind: str, payload: BaseModel, stamp: Stamp) -> int:
        """Validate, number and durably store one event; return its sequence number."""
        return self.transact(lambda unit: unit.append(kind, payload, stamp), what=kind)

    def transact(self, work: Callable[[Unit], T], *, what: str = "domain") -> T:
        """Run ``work`` in one transaction: its own writes and the events it appends commit
        together or not at all. A full disk is retried once after compaction."""
        try:
            result = self._transact_once(work, what)
        except OutboxFull:
            if not self._may_fold():
                raise
            log.warning("outbox %s full; compacting and retrying", self.path)
            try:
                self.compact(0)
            except OutboxError as exc:
                log.error("%s", exc)
            result = self._transact_once(work, what)
        if self._rows > self.max_events and self._may_fold():
            try:
                self._over_cap()
            except (OutboxError, sqlite3.Error) as exc:
                # The event itself is stored; only the clean-up failed and is retried later.
                log.error("outbox %s over its cap and cannot fold: %s", self.path, exc)
        self._save_state_soon()
        return result

    def _may_fold(self) -> bool:
        return bool(self.compaction) and time.monotonic() >= self._fold_retry_at

    def _transact_once(self, work: Callable[[Unit], T], what: str) -> T:
        try:
            with self._transaction():
                result = work(Unit(self))
                self._refresh_rows()
                return result
        except sqlite3.Error as exc:
            self._refresh_rows_quietly()
            if _is_full(exc):
                raise OutboxFull(f"outbox {self.path}: no room for {what}: {exc}") from exc
            if isinstance(exc, sqlite3.DatabaseError) and _is_corruption(exc):
                self._suspect(exc)
            raise OutboxError(f"outbox {self.path}: cannot store {what}: {exc}") from exc

    def _refresh_rows_quietly(self) -> None:
        try:
            self._refresh_rows()
        except sqlite3.Error as exc:
            log.debug("outbox %s: row count not refreshed: %s", self.path, exc)

    def _suspect(self, exc: Exception) -> None:
        """Mark the file for a full check (and setting aside) at the next start."""
        log.critical(
            "outbox %s reports damage: %s; it is checked at the next start", self.path, exc
        )
        try:
            self.suspect_path.write_text(str(exc)[:500], encoding="utf-8")
        except OSError as err:
            log.error("outbox %s: cannot mark as suspect: %s", self.path, err)

    def _over_cap(self) -> None:
        before = self._rows
        folded = self.compact(int(self.max_events * 0.8))
        log.warning(
            "outbox %s over its cap of %d events: %d events folded, %d -> %d rows",
            self.path,
            self.max_events,
            folded,
            before,
            self._rows,
        )
        if self.storage != "cap_reached":
            detail = f"cap of {self.max_events} events reached; {folded} events folded"
            self._storage_changed("cap_reached", detail, None)

    def _storage_changed(self, state: Storage, detail: str, stamp: Stamp | None) -> None:
        """Record the change as an alarm event; the state changes only once that is stored."""
        alarm = StorageAlarm(
            state="recovered" if state == "ok" else state,
            detail=detail,
            compacted_total=self._compacted,
        )
        try:
            with self._transaction():
                self._insert_event("agent.storage_alarm", alarm, stamp or self._last_stamp())
                self._refresh_rows()
        except sqlite3.Error as exc:
            self._refresh_rows_quietly()
            log.error(
                "outbox %s: storage %s, but the alarm cannot be stored: %s", self.path, state, exc
            )
            return
        self.storage = state

    def _last_stamp(self) -> Stamp:
        row = self.db.execute(
            "SELECT CAST(body AS BLOB) FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        try:
            event = json.loads(row[0]) if row else {}
            return Stamp(
                occurred_at=datetime.fromisoformat(event["occurred_at"]),
                clock_synced=bool(event.get("clock_synced", False)),
                boot_id=str(event.get("boot_id", "")),
                mono_s=float(event.get("mono_s", 0.0)),
            )
        except (ValueError, KeyError, TypeError):
            return Stamp(datetime.now(UTC), False, "", 0.0)

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

    # --- reading and acknowledging ------------------------------------------------------------

    def _rows_after(
        self, after_seq: int, limit: int
    ) -> list[tuple[int, int, str, int | None, bytes]]:
        """Events holding numbers beyond ``after_seq``, oldest first, by the primary key."""
        return self.db.execute(
            "SELECT seq, span, kind, crc, CAST(body AS BLOB) FROM events "
            "WHERE seq >= coalesce((SELECT seq FROM events WHERE seq <= ? "
            "ORDER BY seq DESC LIMIT 1), 0) AND seq + span - 1 > ? ORDER BY seq LIMIT ?",
            [after_seq, after_seq, limit],
        ).fetchall()

    def pending(self, after_seq: int, max_events: int, max_bytes: int) -> list[Pending]:
        """Events with seq > ``after_seq``, oldest first, within both limits (at least one).

        Each is checked first; one that cannot be read back is set aside and replaced."""
        out: list[Pending] = []
        size = 0
        cursor = after_seq
        while len(out) < max_events:
            rows = self._rows_after(cursor, max_events - len(out))
            if not rows:
                break
            for seq, span, kind, check, raw in rows:
                body = self._readable(seq, span, kind, check, raw)
                size += len(body) + 2
                if out and size > max_bytes:
                    break
                out.append(Pending(seq, span, body))
            else:
                cursor = rows[-1][0] + rows[-1][1] - 1
                continue
            break
        if out and out[-1].last_seq > self._sent_hwm:
            self._mark_sent(out[-1].last_seq)
        return out

    def _readable(self, seq: int, span: int, kind: str, check: int | None, raw: bytes) -> str:
        """The event's body if it reads back as stored; else its stand-in's (set aside)."""
        problem = None
        if check is not None and crc(raw) != check:
            problem = "stored body does not match its checksum"
        else:
            try:
                body = raw.decode("utf-8")
                if check is None:
                    event = json.loads(body)
                    if event.get("seq") != seq or event.get("agent_id") != self.agent_id:
                        problem = "stored body belongs to another number or agent"
            except (UnicodeDecodeError, ValueError, AttributeError) as exc:
                problem = f"stored body unreadable: {exc}"[:200]
            else:
                if problem is None:
                    return body
        return self._set_aside_event(seq, span, kind, raw, problem)

    def _set_aside_event(self, seq: int, span: int, kind: str, raw: bytes, problem: str) -> str:
        log.error(
            "outbox %s: event seq %d (%s) cannot be read back (%s); set aside in table "
            "'unreadable', sending agent.event_unreadable in its place",
            self.path,
            seq,
            kind,
            problem,
        )
        stand_in = EventUnreadable(reason=problem, stored_kind=kind[:64] or None)
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO unreadable (seq, span, kind, body, reason, found_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [seq, span, kind, raw, problem, datetime.now(UTC).isoformat()],
            )
            self.db.execute(
                "DELETE FROM unreadable WHERE seq NOT IN "
                "(SELECT seq FROM unreadable ORDER BY seq DESC LIMIT ?)",
                [MAX_UNREADABLE],
            )
            self.db.execute("DELETE FROM events WHERE seq = ?", [seq])
            self._insert_event(
                "agent.event_unreadable", stand_in, self._last_stamp(), seq=seq, span=span
            )
        row = self.db.execute("SELECT body FROM events WHERE seq = ?", [seq]).fetchone()
        return str(row[0])

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
                    "DELETE FROM events WHERE seq <= ? AND seq + span - 1 <= ?",
                    [acked_seq, acked_seq],
                ).rowcount
                self._add_rows(-removed)
                self._set_meta("acked_seq", acked_seq)
                self._refresh_rows()
        except sqlite3.Error as exc:
            self._refresh_rows_quietly()
            raise OutboxError(
                f"outbox {self.path}: cannot forget acknowledged events: {exc}"
            ) from exc
        self._acked_seq = acked_seq
        self._fold_retry_at = 0.0  # room was made: folding may help again
        if self.storage == "cap_reached" and self._rows < self.max_events // 2:
            self._storage_changed("ok", "backlog delivered; outbox under half its cap", None)
        self._save_state_soon()
        return int(removed)

    def oldest_unsent_at(self) -> datetime | None:
        row = self.db.execute("SELECT occurred_at FROM events ORDER BY seq LIMIT 1").fetchone()
        try:
            return datetime.fromisoformat(row[0]) if row else None
        except ValueError:
            return None

    def stats(self) -> OutboxStats:
        self._refresh_rows()
        unreadable = self.db.execute("SELECT count(*) FROM unreadable").fetchone()[0]
        return OutboxStats(
            epoch=self.epoch,
            last_seq=self.last_seq,
            acked_seq=self._acked_seq,
            backlog=self._rows,
            oldest_unsent_at=self.oldest_unsent_at(),
            compacted_total=self._compacted,
            storage=self.storage,
            unreadable=int(unreadable),
        )

    def verify(self) -> None:
        """SQLite's full check, run after start so it never delays READY; a damaged file is
        marked and set aside at the next start."""
        try:
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            check = str(exc)
        if check != "ok":
            self._suspect(OutboxCorrupt(str(check)))
            raise OutboxCorrupt(f"outbox {self.path}: integrity check failed: {check}")

    # --- compaction ---------------------------------------------------------------------------

    def compact(self, target_rows: int) -> int:
        """Fold unsent compactable events into summaries until at most ``target_rows`` remain."""
        folded = 0
        try:
            for window in COMPACTION_WINDOWS_S:
                if self._rows <= target_rows:
                    break
                folded += self._compact_pass(window)
        except sqlite3.Error as exc:
            self._refresh_rows_quietly()
            self._fold_retry_at = time.monotonic() + FOLD_RETRY_S
            raise OutboxError(f"outbox {self.path}: cannot fold events: {exc}") from exc
        if not folded:
            self._fold_retry_at = time.monotonic() + FOLD_RETRY_S
        return folded

    def _runs(self, window_s: int) -> Iterator[list[tuple[int, int, str, bytes]]]:
        """Maximal runs of consecutive unsent events of one compactable kind and time window."""
        run: list[tuple[int, int, str, bytes]] = []
        run_key: tuple[str, int] | None = None
        cursor = max(self._sent_hwm, int(self._meta("sent_seq")))
        while True:
            rows = self.db.execute(
                "SELECT seq, span, kind, occurred_at, crc, CAST(body AS BLOB) FROM events "
                "WHERE seq > ? ORDER BY seq LIMIT 5000",
                [cursor],
            ).fetchall()
            if not rows:
                break
            for seq, span, kind, occurred_at, check, raw in rows:
                key = None
                if kind in self.compaction and (check is None or crc(raw) == check):
                    try:
                        key = (
                            kind,
                            int(datetime.fromisoformat(occurred_at).timestamp()) // window_s,
                        )
                    except ValueError:
                        key = None
                contiguous = bool(run) and run[-1][0] + run[-1][1] == seq
                if key is not None and contiguous and key == run_key:
                    run.append((seq, span, kind, raw))
                    continue
                if len(run) > 1:
                    yield run
                run, run_key = ([(seq, span, kind, raw)], key) if key is not None else ([], None)
            cursor = rows[-1][0]
        if len(run) > 1:
            yield run

    def _compact_pass(self, window_s: int) -> int:
        folded = 0
        removed = 0
        with self._transaction():
            for run in self._runs(window_s):
                try:
                    events = [json.loads(raw) for _, _, _, raw in run]
                    policy = self.compaction[run[0][2]]
                    summary = policy.fold(events)
                    last = events[-1]
                    stamp = Stamp(
                        occurred_at=datetime.fromisoformat(last["occurred_at"]),
                        clock_synced=all(e["clock_synced"] for e in events),
                        boot_id=last["boot_id"],
                        mono_s=last["mono_s"],
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning(
                        "outbox %s: run at seq %d not folded: %s", self.path, run[0][0], exc
                    )
                    continue
                first_seq = run[0][0]
                span = run[-1][0] + run[-1][1] - first_seq
                self.db.execute(
                    "DELETE FROM events WHERE seq BETWEEN ? AND ?", [first_seq, run[-1][0]]
                )
                self._insert_event(policy.summary_kind, summary, stamp, seq=first_seq, span=span)
                removed += len(run) - 1
                folded += len(run)
            self._add_rows(-removed)
            self._set_meta("compacted_total", self._compacted + folded)
        # Only once committed: a pass that failed (full disk) folded nothing.
        self._compacted += folded
        self._refresh_rows()
        return folded

    def close(self) -> None:
        try:
            self._save_state()
        finally:
            self.db.close()


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
        schemas: Sequence[DomainSchema] = (),
        compaction: Sequence[Compaction] = (),
    ) -> None:
        self._make = functools.partial(
            Outbox,
            path,
            agent_id,
            max_events=max_events,
            max_bytes=max_bytes,
            schemas=schemas,
            compaction=compaction,
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
                if held_kind in self.sync.compaction:
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
                    detail += f"; {self.dropped_while_full} foldable events dropped while full"
                alarm = StorageAlarm(
                    state="recovered", detail=detail, compacted_total=self.sync.compacted_total
                )
                await self._run(self.sync.append, "agent.storage_alarm", alarm, stamp)
        return True

    async def replace_refused(
        self, seq: int, event_id: uuid.UUID, reason: str, stamp: Stamp
    ) -> bool:
        return await self._run(self.sync.replace_refused, seq, event_id, reason, stamp)

    async def transact(self, work: Callable[[Unit], T], *, what: str = "domain") -> T:
        """A domain's writes and events in one transaction (see ``Outbox.transact``).

        Not held in memory when the disk is full: the caller's state did not change either, and
        it hears ``OutboxFull``."""
        result = await self._run(self.sync.transact, work, what=what)
        self.appended.set()
        return result

    async def verify(self) -> None:
        await self._run(self.sync.verify)

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
