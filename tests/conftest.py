"""Shared fixtures: a real Mosquitto per test, pseudo-terminal pairs, real processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.store.db import make_engine, migrate
from simulators.broker import Postgres, PostgresError
from tests.support import Broker, Processes, PtyPair, open_pty_pair


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real, anonymous Mosquitto on a free loopback port."""
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def pty_pair() -> Iterator[PtyPair]:
    pair = open_pty_pair()
    yield pair
    pair.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start the project's console scripts as real processes; all are stopped afterwards."""
    procs = Processes(tmp_path / "logs")
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A private PostgreSQL for the whole run. Where it cannot start, its tests are skipped on
    a developer's machine and fail in CI (``./dev test`` installs PostgreSQL)."""
    # Not under pytest's own temp dir: the postgres user must be able to reach it.
    workdir = Path(tempfile.mkdtemp(prefix="edge-pg-"))
    pg = Postgres(workdir)
    try:
        pg.start()
    except PostgresError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    yield pg
    pg.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def engine(blank_engine: sa.Engine) -> sa.Engine:
    """Every ingest test runs on SQLite and on PostgreSQL (a fresh database each)."""
    migrate(blank_engine)
    return blank_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty database, not migrated, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield make_engine(f"sqlite:///{tmp_path / 'server.db'}")
        return
    with fresh_database(request.getfixturevalue("postgres")) as engine:
        yield engine


@contextlib.contextmanager
def fresh_database(pg: Postgres) -> Iterator[sa.Engine]:
    """A new, empty database in ``pg``, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine = make_engine(pg.url(name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()
