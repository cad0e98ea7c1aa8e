"""Test helpers that drive real components: Mosquitto, pseudo-terminals, processes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import sqlite3
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from simulators.broker import Mosquitto as Broker
from simulators.broker import free_port, port_open

__all__ = [
    "BIN",
    "Broker",
    "Processes",
    "PtyPair",
    "free_port",
    "open_pty_pair",
    "port_open",
    "wait_for",
]

T = TypeVar("T")

BIN = Path(sys.executable).parent


def wait_for(
    check: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(interval)


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    within_s: float = 20.0,
    interval: float = 0.05,
    what: str = "",
) -> None:
    """The asyncio twin of ``wait_for``: poll ``check`` (plain or a coroutine function) until it
    holds; fail the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what or check}")
        await asyncio.sleep(interval)


@dataclass
class PtyPair:
    """Two ends of a pseudo-terminal: ``device`` is what a serial client opens."""

    controller_fd: int
    device: str
    device_fd: int

    def close(self) -> None:
        for fd in (self.controller_fd, self.device_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def open_pty_pair() -> PtyPair:
    """A raw pseudo-terminal pair, as a USB-RS485 adapter looks to a program."""
    controller, device_fd = os.openpty()
    tty.setraw(device_fd)
    attrs = termios.tcgetattr(controller)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(controller, termios.TCSANOW, attrs)
    return PtyPair(controller, os.ttyname(device_fd), device_fd)


@dataclass
class Processes:
    """The project's console scripts run as real child processes, with logs kept per process."""

    logdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.logdir.mkdir(parents=True, exist_ok=True)
        with (self.logdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


ACL = Path(__file__).parent.parent / "deploy" / "mosquitto" / "acl"


def secure_broker(workdir: Path, users: list[str]) -> tuple[Broker, dict[str, str]]:
    """A Mosquitto with the shipped ACL and a password per user, as deployed."""
    from server.broker import add_user

    workdir.mkdir(parents=True, exist_ok=True)
    passwd = workdir / "passwd"
    passwords = {user: add_user(passwd, user) for user in users}
    acl = workdir / "acl"
    acl.write_text(ACL.read_text())
    broker = Broker(
        workdir,
        extra_config=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n",
    )
    return broker, passwords


def query_sqlite(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Rows from a server's SQLite store while it runs; none while it does not exist yet or its
    tables are not created yet."""
    if not db.exists():
        return []
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []


def plan_lines(engine: sa.Engine, statement: str, params: Any, table: str) -> list[str]:
    """SQLite's plan of ``statement``: its lines about ``table`` (``SCAN table`` reads it
    whole; ``SEARCH table USING INDEX`` seeks)."""
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params).all()
    return [str(row[-1]) for row in plan if table in str(row[-1])]
