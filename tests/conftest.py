"""Shared fixtures: a real Mosquitto per test, pseudo-terminal pairs, real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
