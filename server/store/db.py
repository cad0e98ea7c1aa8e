"""Engine set-up and schema migration.

SQLite is the default (one county, one machine); PostgreSQL serves a city or province with
several ingest processes. Nothing here assumes one process: migrations run under Alembic's
version table, and SQLite gets WAL, a busy timeout and ``synchronous=FULL`` so an
acknowledged event has reached the disk.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The database cannot be opened or migrated."""


def make_engine(url: str, create: bool = True) -> sa.Engine:
    """An engine for ``url``; with ``create`` false, a SQLite file must exist already."""
    if url.startswith("sqlite:"):
        db_path = sa.engine.make_url(url).database
        if not db_path or db_path == ":memory:":
            raise StoreError(f"{url!r} names no database file (sqlite:////path/to/server.db)")
        if create:
            try:
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the directory of {db_path}: {exc}") from exc
        elif not Path(db_path).is_file():
            raise StoreError(
                f"database {db_path} does not exist (edge-server run or db upgrade creates it)"
            )
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def alembic_config(engine: sa.Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("server.store") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest version; safe to run at every start."""
    try:
        before = current_revision(engine)
        command.upgrade(alembic_config(engine), "head")
        after = current_revision(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate database {engine.url!r}: {exc}") from exc
    if before != after:
        log.info("database %s migrated from %s to %s", engine.url, before or "empty", after)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(
        alembic_config(sa.create_engine("sqlite://"))
    ).get_current_head()
    assert head is not None
    return head


def open_store(url: str) -> sa.Engine:
    """Open and migrate: for ``edge-server run`` and ``db upgrade`` only."""
    engine = make_engine(url)
    migrate(engine)
    return engine


def open_current(url: str) -> sa.Engine:
    """Open a database that exists and has the newest schema; never create or migrate it."""
    engine = make_engine(url, create=False)
    try:
        found = current_revision(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot open database {engine.url!r}: {exc.__class__.__name__}") from exc
    head = head_revision()
    if found != head:
        raise StoreError(
            f"database schema is at {found or 'nothing'}, this version needs {head}: "
            "run `edge-server db upgrade` (or start `edge-server run`, which migrates)"
        )
    return engine


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_time(value: datetime) -> str:
    # The layout SQLAlchemy's SQLite DateTime writes and reads: naive UTC with microseconds.
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _same_time(value: datetime) -> datetime:
    return value


def db_time(bind: sa.Engine | sa.Connection) -> Callable[[datetime], object]:
    """How a time goes into ``bulk_insert`` rows for this engine or connection."""
    return _sqlite_time if bind.dialect.name == "sqlite" else _same_time


def bulk_insert(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: list[tuple[object, ...]],
) -> None:
    """Insert many rows (tuples in ``columns`` order, times made by ``db_time``).

    On SQLite the rows go straight to the driver: this is ingest's hot path, and SQLAlchemy's
    per-value processing would cost more than the insert itself.
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in rows])
        return
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    conn.exec_driver_sql(sql, rows)


@contextlib.contextmanager
def statements(engine: sa.Engine, about: str | None = None) -> Iterator[list[tuple[str, Any]]]:
    """The SQL run on ``engine`` meanwhile (from any thread), with its parameters; only the
    statements that mention ``about``, when given: what the benchmarks explain and the tests
    check the plans of."""
    seen: list[tuple[str, Any]] = []

    def keep(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if about is None or about in statement:
            seen.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", keep)
