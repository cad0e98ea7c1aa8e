"""``deploy/README.md`` followed as written: every command of its sections before "Moving a
county to PostgreSQL" is run, in order, by bash, as root, on a fresh directory tree.

What is not real, and how little is changed:

- Paths: ``/etc/``, ``/var/lib/``, ``/var/log/``, ``/run/`` and ``/usr/local/bin/`` are moved
  under a temporary root, ``/opt/edge/venv`` is this checkout's virtualenv, and the broker's
  port 8883 (and the dashboard's 8080) is a free one; in the commands, in the files of
  ``deploy/`` and in Debian's own ``mosquitto.conf`` and ``mosquitto.service`` (read from this
  machine). The agent's config skeleton names the Pi's real paths and is moved the same way
  before the Pi's steps.
- ``county-server.local`` is ``localhost`` (both sides run here).
- What ``apt-get install``, ``python3 -m venv``, ``useradd`` and ``journalctl`` would do is
  not done: Mosquitto and the package are installed already; the users ``edge-server`` and
  ``edge-agent`` are not created (files the guide gives them belong to root here, and the
  server and agent run as root).
- ``systemctl`` is played by the test from the unit files: ``ExecStartPre``, ``ExecStart``,
  ``StateDirectory``; ``reload`` is the SIGHUP of Debian's ``ExecReload``.

Mosquitto is started as root from Debian's ``mosquitto.conf``, which includes ``conf.d/``, and
drops its privileges to the user ``mosquitto`` as on a real server, so the ownership and modes
the guide gives its files are put to the test.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.broker import acl_text
from tests.support import BIN, free_port, port_open, wait_for

REPO = Path(__file__).parent.parent
GUIDE = REPO / "deploy" / "README.md"
VENV = BIN.parent
#: The sections walked, in the guide's order; everything before the PostgreSQL move.
SECTIONS = ["The server machine", "The Pi", "Renewing the broker's certificate"]
#: Commands whose work is done already on this machine, or cannot be done in a test.
NOT_RUN = ("apt-get install ", "python3 -m venv ", "useradd ", "journalctl ")
#: Moved under the temporary root.
SYSTEM_DIRS = ("/etc/", "/var/lib/", "/var/log/", "/run/", "/usr/local/bin/")

#: Debian 12's /etc/mosquitto/mosquitto.conf and mosquitto.service, for a machine where they
#: are not installed in the usual place.
DEBIAN_CONF = """pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
"""
DEBIAN_UNIT = """[Service]
Type=notify
ExecStart=/usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf
ExecReload=/bin/kill -HUP $MAINPID
ExecStartPre=/bin/mkdir -m 740 -p /var/log/mosquitto
ExecStartPre=/bin/chown mosquitto /var/log/mosquitto
ExecStartPre=/bin/mkdir -m 740 -p /run/mosquitto
ExecStartPre=/bin/chown mosquitto /run/mosquitto
"""


def guide_commands() -> list[tuple[str, str]]:
    """(section, command) for each command of the guide up to the PostgreSQL move: the lines
    of its indented code blocks, continuation lines joined."""
    commands: list[tuple[str, str]] = []
    section, pending = "", ""
    for raw in GUIDE.read_text(encoding="utf-8").splitlines():
        if raw.startswith("## "):
            section = raw[3:].strip()
            if section.startswith("Moving a county"):
                break
            continue
        if not raw.startswith("    ") or not raw.strip():
            continue
        line = f"{pending} {raw.strip()}" if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        pending = ""
        commands.append((section, line))
    return commands


def exists(name: str, lookup: str) -> bool:
    try:
        (pwd.getpwnam if lookup == "user" else grp.getgrnam)(name)
    except KeyError:
        return False
    return True


@dataclass
class Machine:
    """The temporary root, what Debian's mosquitto package put there, and systemctl."""

    root: Path
    port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def checkout(self) -> Path:
        return self.root / "checkout"

    @property
    def logs(self) -> Path:
        return self.root / "test-logs"

    def move(self, text: str) -> str:
        text = text.replace("/opt/edge/venv", str(VENV))
        for real in SYSTEM_DIRS:
            text = re.sub(rf"(?<![\w.-]){re.escape(real)}", f"{self.root}{real}", text)
        text = text.replace("county-server.local", "localhost").replace("8883", str(self.port))
        return text.replace("port = 8080", f"port = {self.web_port}")

    def install_package(self) -> None:
        """What apt-get install mosquitto leaves, and the checkout with its deploy/ files."""
        self.root.chmod(0o755)  # Mosquitto, once it has dropped privileges, must get through
        for d in ("etc/mosquitto/conf.d", "etc/systemd/system", "var/lib", "var/log", "run"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "usr/local/bin").mkdir(parents=True)
        stock = Path("/etc/mosquitto/mosquitto.conf")
        conf = stock.read_text() if stock.exists() else DEBIAN_CONF
        (self.root / "etc/mosquitto/mosquitto.conf").write_text(self.move(conf))
        persistence = self.root / "var/lib/mosquitto"
        persistence.mkdir()
        shutil.chown(persistence, "mosquitto")
        for source in (REPO / "deploy").rglob("*"):
            target = self.checkout / source.relative_to(REPO)
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(self.move(source.read_text(encoding="utf-8")), encoding="utf-8")
        self.logs.mkdir()

    def command(self, line: str) -> str:
        """The guide's command as run here: paths moved, and owners that this machine does
        not have (the guide's ``useradd`` was not run) replaced by root."""
        line = self.move(line)
        if line.startswith("install "):

            def owner(m: re.Match[str]) -> str:
                known = exists(m[2], "user" if m[1] == "-o" else "group")
                return m[0] if known else f"{m[1]} root"

            line = re.sub(r"(-[og]) (\S+)", owner, line)
        return line

    def bash(self, lines: list[str]) -> None:
        """Consecutive commands run as one script (so a variable set by one serves the next)."""
        if not lines:
            return
        path = [p for p in os.environ["PATH"].split(":") if Path(p) != BIN]
        env = {**os.environ, "PATH": ":".join([str(self.root / "usr/local/bin"), *path])}
        script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=self.checkout,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{script}failed:\n{result.stdout}{result.stderr}"

    # --- systemctl ------------------------------------------------------------------------------

    def unit(self, name: str) -> dict[str, list[str]]:
        local = self.root / "etc/systemd/system" / f"{name}.service"
        debian = Path("/lib/systemd/system/mosquitto.service")
        if local.exists():
            text = local.read_text()
        elif name == "mosquitto":
            text = self.move(debian.read_text() if debian.exists() else DEBIAN_UNIT)
        else:
            raise AssertionError(f"systemctl: no unit {name}.service")
        unit: dict[str, list[str]] = {}
        for line in text.splitlines():
            key, eq, value = line.partition("=")
            if eq and not line.startswith("#"):
                unit.setdefault(key.strip(), []).append(value.strip())
        return unit

    def systemctl(self, line: str) -> None:
        args = shlex.split(line)[1:]
        match args:
            case ["daemon-reload"]:
                pass
            case ["restart", name]:
                self.stop(name)
                self.start(name)
            case ["enable", "--now", name]:
                self.start(name)
            case ["reload", name]:
                self.procs[name].send_signal(signal.SIGHUP)
            case _:
                raise AssertionError(f"the test does not know how to {line!r}")

    def start(self, name: str) -> None:
        unit = self.unit(name)
        for directory in unit.get("StateDirectory", []):
            state = self.root / "var/lib" / directory
            state.mkdir(exist_ok=True)
            state.chmod(int(unit.get("StateDirectoryMode", ["0755"])[0], 8))
        for pre in unit.get("ExecStartPre", []):
            subprocess.run(shlex.split(pre), check=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                shlex.split(unit["ExecStart"][0]),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if name == "mosquitto":
            proc = self.procs[name]
            wait_for(
                lambda: port_open(self.port) or proc.poll() is not None,
                20,
                what="Mosquitto listening",
            )
            assert proc.poll() is None, f"Mosquitto did not start:\n{self.broker_log()}"

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    # --- what to look at ------------------------------------------------------------------------

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def broker_log(self) -> str:
        path = self.root / "var/log/mosquitto/mosquitto.log"
        return self.log("mosquitto") + (path.read_text(errors="replace") if path.exists() else "")

    def stored_kinds(self, agent: str) -> list[str]:
        db = self.root / "var/lib/edge-server/server.db"
        if not db.exists():
            return []
        with closing(sqlite3.connect(db, timeout=10)) as conn:
            try:
                rows = conn.execute(
                    "SELECT j.kind FROM journal j JOIN streams s ON s.id = j.stream_id "
                    "WHERE s.agent_id = ?",
                    (agent,),
                ).fetchall()
            except sqlite3.OperationalError:
                return []
        return [str(kind) for (kind,) in rows]

    def diagnosis(self) -> str:
        return (
            "\n".join(
                f"--- {name}\n{self.log(name)[-3000:]}" for name in ("edge-server", "edge-agent")
            )
            + f"\n--- mosquitto\n{self.broker_log()[-3000:]}"
        )


@pytest.fixture
def machine() -> Iterator[Machine]:
    if os.geteuid() != 0:
        pytest.skip("the deploy guide's commands are run as root")
    if not exists("mosquitto", "user") or not shutil.which("openssl"):
        if os.environ.get("CI"):
            raise AssertionError("Debian's mosquitto package and openssl are needed")
        pytest.skip("Debian's mosquitto package (user mosquitto) and openssl are needed")
    # Not under pytest's temp dir (mode 0700): Mosquitto reads it as user mosquitto.
    m = Machine(Path(tempfile.mkdtemp(prefix="edge-guide-")))
    m.install_package()
    yield m
    m.stop_all()
    shutil.rmtree(m.root, ignore_errors=True)


def walk(machine: Machine, section: str) -> list[str]:
    """Run one section's commands; return those not run (see ``NOT_RUN``)."""
    skipped: list[str] = []
    script: list[str] = []
    for where, line in guide_commands():
        if where != section:
            continue
        if line.startswith(NOT_RUN):
            skipped.append(line)
        elif line.startswith("systemctl "):
            machine.bash(script)
            script = []
            machine.systemctl(line)
        else:
            script.append(machine.command(line))
    machine.bash(script)
    return skipped


def test_guide_sections_are_all_walked() -> None:
    sections = list(dict.fromkeys(section for section, _ in guide_commands()))
    assert sections == SECTIONS


def test_shipped_acl_is_what_broker_acl_writes_for_the_default_prefix() -> None:
    shipped = (REPO / "deploy" / "mosquitto" / "acl").read_text(encoding="utf-8")
    assert shipped == acl_text("fp", "edge-server")
    other = acl_text("county7", "ingest")
    assert "fp/" not in other
    assert "pattern write county7/v1/+/%u/events" in other
    assert "user ingest\n" in other


def test_deploy_guide_gives_a_running_broker_server_and_agent(machine: Machine) -> None:
    skipped = walk(machine, "The server machine")
    assert [s.split()[0] for s in skipped] == ["apt-get", "python3", "useradd"]
    gid = grp.getgrnam("mosquitto").gr_gid
    edge = machine.root / "etc/mosquitto/edge"
    for path, mode in [
        (edge / "passwd", 0o640),
        (edge / "acl", 0o640),
        (edge / "tls/broker.key", 0o640),
        (edge / "tls/broker.crt", 0o644),
        (edge / "tls/ca.key", 0o600),
        (machine.root / "etc/edge-server/server.toml", 0o640),  # kept through sed -i
    ]:
        st = path.stat()
        group_ok = st.st_gid == gid or path.name in ("ca.key", "server.toml")
        assert (st.st_uid, group_ok, stat.S_IMODE(st.st_mode)) == (0, True, mode), path
    # Mosquitto runs as user mosquitto: it read everything above after dropping privileges.
    status = Path(f"/proc/{machine.procs['mosquitto'].pid}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid) == pwd.getpwnam("mosquitto").pw_uid

    # The agent's skeleton names the Pi's real paths; here they are under the same root.
    skeleton = machine.checkout / "township-03.toml"
    skeleton.write_text(machine.move(skeleton.read_text()))
    skipped = walk(machine, "The Pi")
    assert [s.split()[0] for s in skipped] == ["apt-get", "python3", "useradd", "journalctl"]
    try:
        wait_for(
            lambda: "agent.started" in machine.stored_kinds("township-03"),
            60,
            interval=0.2,
            what="the agent's agent.started stored by the server",
        )
    except AssertionError:
        raise AssertionError(machine.diagnosis()) from None

    connected = machine.log("edge-agent").count("connected to broker")
    walk(machine, "Renewing the broker's certificate")
    try:
        wait_for(
            lambda: machine.log("edge-agent").count("connected to broker") > connected,
            60,
            interval=0.2,
            what="the agent reconnected to the restarted broker with its renewed certificate",
        )
    except AssertionError:
        raise AssertionError(machine.diagnosis()) from None
    for name in ("edge-server", "edge-agent"):
        assert "Traceback" not in machine.log(name)
