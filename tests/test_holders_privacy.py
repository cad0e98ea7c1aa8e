"""On PostgreSQL, ``deploy/postgres/holders.sql`` closes card holders' names and phones to the
service's role: the server still runs its registry, and only the administrators' role reads or
writes who holds a card."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from edge_agent.pseudonym import load_key, of_uid
from simulators.broker import Postgres, postgres_bin
from tests.test_server_cli import cli

SCRIPT = Path(__file__).parent.parent / "deploy" / "postgres" / "holders.sql"
UID = "04A1B2C3D4E5F6"
SERVER, ADMINS = "edge-server", "edge-admin"


@pytest.fixture
def split(postgres: Postgres, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A database owned by the service's role, migrated by it, then closed by the script:
    a ``server.toml`` that logs in as the service and an ``admin.toml`` as the administrators."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for role in (SERVER, ADMINS):
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        for role in (SERVER, ADMINS):
            conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(sa.text(f'CREATE DATABASE {name} OWNER "{SERVER}"'))
    (tmp_path / "keys").mkdir()
    key = tmp_path / "keys" / "card.key"
    configs = []
    for role in (SERVER, ADMINS):
        config = tmp_path / f"{role}.toml"
        config.write_text(
            f'[database]\nurl = "postgresql+psycopg://{role}@127.0.0.1:{postgres.port}/{name}"\n'
            f'[cards]\nkey_file = "{key}"\n'
        )
        configs.append(config)
    server, admins = configs
    try:
        assert cli(server, "db", "upgrade").returncode == 0
        assert cli(server, "cards", "make-key", "--out", str(key)).returncode == 0
        bindir = postgres_bin()
        assert bindir is not None
        closed = subprocess.run(
            [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres",
             "-v", f"server={SERVER}", "-v", f"admins={ADMINS}", "-f", str(SCRIPT), name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert closed.returncode == 0, closed.stderr
        yield server, admins
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(sa.text(f'DROP OWNED BY "{ADMINS}"'))
            for role in (ADMINS, SERVER):
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_only_the_administrators_role_knows_who_holds_a_card(split: tuple[Path, Path]) -> None:
    server, admins = split
    card = of_uid(load_key(server.parent / "keys" / "card.key"), UID)[:12]
    # The service keeps the registry as before, and cannot name a holder, nor be made to.
    issued = cli(server, "cards", "issue", "--uid", UID)
    assert issued.returncode == 0, issued.stderr
    named = cli(server, "cards", "issue", "--uid", UID, "--name", "张三")
    assert named.returncode == 1
    assert "张三" not in named.stderr + named.stdout
    denied = cli(server, "cards", "holder", card)
    assert denied.returncode == 1
    assert "无权读取持卡人信息" in denied.stderr  # a sentence, not the database's text
    assert "无权读取持卡人信息" in named.stderr
    # The administrators do what the service does, and keep and read holders.
    kept = cli(admins, "cards", "issue", "--uid", UID, "--name", "张三", "--phone", "13800000000")
    assert kept.returncode == 0, kept.stderr
    shown = cli(admins, "cards", "holder", card)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[:2] == ["持卡人：张三", "电话：13800000000"]
