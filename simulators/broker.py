"""A private Mosquitto for demos, benchmarks and tests: own config, own free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class BrokerError(RuntimeError):
    """Mosquitto is missing or would not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(found).exists():
        raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    return found


@dataclass
class Mosquitto:
    """A Mosquitto process on loopback; can be stopped and started again on the same port."""

    workdir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    extra_config: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} {self.host}", "persistence false"]
        if "password_file" not in self.extra_config:
            lines.append("allow_anonymous true")
        if os.geteuid() == 0:
            lines.append("user root")  # keep access to files in our own (root-owned) workdir
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + self.extra_config)
        return conf

    def start(self, timeout: float = 10.0) -> None:
        conf = self.write_config()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [mosquitto_binary(), "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not port_open(self.port, self.host):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-500:]
                raise BrokerError(f"mosquitto did not start on port {self.port}: {tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class PostgresError(RuntimeError):
    """PostgreSQL is missing or would not start."""


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (Debian layout), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@dataclass
class Postgres:
    """A throw-away PostgreSQL cluster on loopback, for tests of the server's PostgreSQL path."""

    workdir: Path
    port: int = field(default_factory=free_port)
    started: bool = False
    #: Commits reach the disk (PostgreSQL's defaults), as benchmarks of durable commits need;
    #: tests run with ``fsync=off``, for speed.
    durable: bool = False

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PostgresError(f"{args[0]} failed: {(result.stderr or result.stdout)[-500:]}")

    def start(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise PostgresError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
        data = self.workdir / "data"
        self._run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1"
        if not self.durable:
            options += " -c fsync=off"
        self._run(
            str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.workdir / "log"),
            "-w", "start",
        )  # fmt: skip
        self.started = True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        bindir = postgres_bin()
        if self.started and bindir is not None:
            self._run(
                str(bindir / "pg_ctl"), "-D", str(self.workdir / "data"), "-m", "fast", "stop"
            )
        self.started = False
