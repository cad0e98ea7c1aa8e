"""edge-server as a user runs it: one clear line for every bad input, never a traceback, and
read-only commands that never create or migrate a database."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from alembic import command

from server.store.db import alembic_config, make_engine
from tests.support import BIN


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "edge-server"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "data" / "server.db"}"\n')
    return path


@pytest.mark.parametrize(
    "args",
    [("climate", "latest"), ("link", "status"), ("command", "list"), ("events", "replay")],
)
def test_read_only_commands_never_create_a_database(config: Path, args: tuple[str, ...]) -> None:
    out = cli(config, *args)
    assert out.returncode == 1
    assert "does not exist" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (config.parent / "data").exists(), "not even its directory"


def test_an_old_schema_is_refused_until_db_upgrade(config: Path) -> None:
    engine = make_engine(f"sqlite:///{config.parent / 'data' / 'server.db'}")
    command.upgrade(alembic_config(engine), "0002")
    out = cli(config, "link", "status")
    assert out.returncode == 1
    assert "edge-server db upgrade" in out.stderr
    up = cli(config, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert cli(config, "link", "status").stdout.strip() == "no agents yet"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("command", "send", "station-1", "ping", "--data", "[1,2]"), "must be a JSON object"),
        (("command", "send", "station-1", "ping", "--data", "{nope"), "not JSON"),
        (("command", "send", "station-1", "no.such"), "invalid no.such command"),
        (("command", "send", "nobody", "ping"), "unknown agent"),
        (("climate", "tail", "--interval", "-1"), "--interval"),
        (("events", "replay", "--projection", "nope"), "unknown projection"),
    ],
)
def test_bad_input_gets_one_clear_line(config: Path, args: tuple[str, ...], message: str) -> None:
    assert cli(config, "db", "upgrade").returncode == 0
    out = cli(config, *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:", "database.url: must be sqlite:////absolute"),
        ("sqlite:///", "database.url: names no database file"),
        ("mysql://x", "database.url: must be"),
    ],
)
def test_bad_database_urls_are_config_errors(tmp_path: Path, url: str, message: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f'[database]\nurl = "{url}"\n[mqtt]\nport = 99999\n')
    out = cli(path, "check")
    assert out.returncode == 2
    assert message in out.stderr
    assert "mqtt.port" in out.stderr, "every problem of the file at once"
    assert "Traceback" not in out.stderr
