"""Daily backups of a SQLite store (``edge-server backup``, and the timer in ``edge-server run``).

A backup is taken with SQLite's online backup API in one step: one read transaction, so the
copy is the store as one commit left it, while ingest goes on writing (in WAL mode a reader
never blocks the writer, and the writer never restarts a one-step copy). The copy is written
under a temporary name, switched to the rollback journal (one self-contained file), checked
(``PRAGMA integrity_check``, then every hash chain: ``verify``), flushed to disk and only then
renamed to ``server-YYYYMMDD-HHMMSS.db`` (local time). Backups older than the retention are
deleted after a backup whose check passed, never after one whose chains did not verify: the
older copies are then the evidence of what the records were.

A PostgreSQL store is refused: pg_dump (a consistent logical dump while ingest runs) or
pg_basebackup are its tools; deploy/README.md says how, and how to verify a restored copy.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from server.integrity.verify import Report, verify

if TYPE_CHECKING:
    from server.config import ServerConfig

log = logging.getLogger(__name__)

NAME = re.compile(r"^server-(\d{8}-\d{6})\.db$")
PARTIAL = re.compile(r"^\.server-(\d{8}-\d{6})\.db\.partial$")
STAMP = "%Y%m%d-%H%M%S"


class BackupError(Exception):
    """No backup was made. ``reason`` picks the text people read (``backup.<reason>``), with
    ``path``; ``detail`` (a library's words) is for the log only."""

    def __init__(self, reason: str, path: Path | None = None, detail: str = "") -> None:
        super().__init__(f"{reason}: {path or ''} {detail}".strip())
        self.reason = reason
        self.path = path
        self.detail = detail


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    #: The hash chains of the copy, checked.
    report: Report
    #: Older backups deleted (none when the copy's chains did not verify).
    removed: tuple[Path, ...]


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for any other database."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def backup(
    url: str,
    directory: Path,
    retention_days: int,
    zone: ZoneInfo,
    now: datetime | None = None,
) -> BackupResult:
    """Copy the SQLite store at ``url`` into ``directory``, check it, apply the retention."""
    source = sqlite_file(url)
    if source is None:
        raise BackupError("postgresql")
    if not source.is_file():
        raise BackupError("no_database", source)
    directory = directory.absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        raise BackupError("unwritable", directory, str(exc)) from exc
    stamp = (now or datetime.now(UTC)).astimezone(zone)
    final = directory / f"server-{stamp.strftime(STAMP)}.db"
    partial = directory / f".{final.name}.partial"
    if final.exists():
        raise BackupError("exists", final)
    try:
        _copy(source, partial)
        problem = _integrity(partial)
        if problem != "ok":
            raise BackupError("corrupt", final, problem)
        report = _verify_copy(partial)
        _sync(partial)
        partial.rename(final)
        _sync(directory)
    except (OSError, sqlite3.Error, sa.exc.SQLAlchemyError) as exc:
        raise BackupError("failed", final, str(exc)) from exc
    finally:
        partial.unlink(missing_ok=True)
    removed = _expire(directory, stamp, retention_days, zone) if report.ok else ()
    return BackupResult(final, final.stat().st_size, report, removed)


def _copy(source: Path, partial: Path) -> None:
    """The online backup in one step (``pages=-1``): one consistent snapshot."""
    with (
        closing(sqlite3.connect(source, timeout=30)) as src,
        closing(sqlite3.connect(partial)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one file, nothing beside it


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30, check_same_thread=False
    )


def _integrity(path: Path) -> str:
    with closing(_read_only(path)) as conn:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(r[0]) for r in rows[:5])


def _verify_copy(path: Path) -> Report:
    engine = sa.create_engine("sqlite://", creator=lambda: _read_only(path), poolclass=NullPool)
    try:
        return verify(engine)
    finally:
        engine.dispose()


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_time(name: str, zone: ZoneInfo) -> datetime | None:
    """When a file named like a backup (or a partial one) was taken; None for other files."""
    found = NAME.match(name) or PARTIAL.match(name)
    if found is None:
        return None
    try:
        return datetime.strptime(found[1], STAMP).replace(tzinfo=zone)
    except ValueError:
        return None


def _expire(directory: Path, now: datetime, days: int, zone: ZoneInfo) -> tuple[Path, ...]:
    """Delete backups taken more than ``days`` before ``now`` (and partial copies a crash left
    more than a day ago); other files are never touched."""
    removed = []
    for path in sorted(directory.iterdir()):
        when = backup_time(path.name, zone)
        if when is None:
            continue
        limit = timedelta(days=days) if NAME.match(path.name) else timedelta(days=1)
        if when < now - limit:
            path.unlink(missing_ok=True)
            removed.append(path)
    return tuple(removed)


def newest_backup(directory: Path, zone: ZoneInfo) -> datetime | None:
    try:
        names = [p.name for p in directory.iterdir() if NAME.match(p.name)]
    except OSError:
        return None
    times = [t for t in (backup_time(n, zone) for n in names) if t is not None]
    return max(times, default=None)


def next_run(now: datetime, at: day_time, zone: ZoneInfo) -> datetime:
    """The next ``at`` (local time in ``zone``) strictly after ``now``."""
    local = now.astimezone(zone)
    today = datetime.combine(local.date(), at, tzinfo=zone)
    return today if today > local else datetime.combine(local.date() + timedelta(1), at, zone)


class BackupSchedule:
    """A thread that backs the store up every day at ``at`` (and at once when the newest backup
    in the directory is more than a day old: a day missed while the server was down)."""

    #: The longest sleep: the wall clock is looked at again after this, so a clock set while
    #: waiting does not move the backup by the same amount.
    NAP_S = 60.0

    def __init__(
        self, url: str, directory: Path, at: day_time, retention_days: int, zone: ZoneInfo
    ) -> None:
        self.url = url
        self.directory = directory
        self.at = at
        self.retention_days = retention_days
        self.zone = zone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="backup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        now = datetime.now(UTC)
        newest = newest_backup(self.directory, self.zone)
        due = now if newest is None or now - newest > timedelta(days=1) else None
        due = due or next_run(now, self.at, self.zone)
        log.info("daily backup to %s at %s (%s)", self.directory, self.at, self.zone.key)
        while not self._stop.is_set():
            now = datetime.now(UTC)
            if now >= due:
                self.run_once()
                due = next_run(datetime.now(UTC), self.at, self.zone)
                continue
            self._stop.wait(min(self.NAP_S, (due - now).total_seconds()))

    def run_once(self) -> BackupResult | None:
        """One backup, its outcome logged (an error when it failed or did not verify)."""
        try:
            result = backup(self.url, self.directory, self.retention_days, self.zone)
        except BackupError as exc:
            log.error("backup failed: %s", exc)
            return None
        except Exception:  # the timer must outlive any surprise; the next day tries again
            log.exception("backup failed")
            return None
        messages = sum(c.messages for c in result.report.chains)
        if not result.report.ok:
            log.error(
                "backup %s made, but %d hash chains in it are broken (run edge-server verify); "
                "older backups kept",
                result.path,
                len(result.report.broken),
            )
        else:
            log.info(
                "backup %s made (%d bytes, %d messages verified), %d old backups removed",
                result.path,
                result.size,
                messages,
                len(result.removed),
            )
        return result


def start_schedule(config: ServerConfig) -> BackupSchedule | None:
    """Start the daily backup ``[backup]`` asks for; None when none is asked (or the store is
    PostgreSQL, which is backed up with its own tools: logged as an error)."""
    section = config.backup
    if section.directory is None:
        return None
    if sqlite_file(config.database.url) is None:
        log.error(
            "[backup] directory is set, but the store is PostgreSQL: back it up with pg_dump "
            "(deploy/README.md, Backups and restore); no daily backup is taken here"
        )
        return None
    schedule = BackupSchedule(
        config.database.url,
        section.directory,
        day_time(*section.hour_minute),
        section.retention_days,
        config.server.zone,
    )
    schedule.start()
    return schedule
