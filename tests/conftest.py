"""Shared fixtures: a real Mosquitto per test, pseudo-terminal pairs, real processes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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
