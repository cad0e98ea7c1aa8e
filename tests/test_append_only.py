"""No command alters what was recorded: every ``edge-server`` command runs against a store whose
movements, climate records and journal refuse any UPDATE or DELETE (triggers), and must succeed.
A command added later fails the census until it is run here or exempted with its reason."""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edge_agent.pseudonym import CardKey, of_uid
from server.cli import main
from server.ingest.core import Ingestor
from server.store.db import make_engine
from tests.support import BIN, wait_for
from tests.test_boxes_projection import dispense, ev, restock, slot_state
from tests.test_ingest import EPOCH
from tests.test_ledger_cli import BY, county_store
from tests.test_wire import climate_event

#: What was recorded: the journal as received, and what the projections keep of it for people.
GUARDED = ("ledger_movements", "climate_records", "messages", "journal")

#: Commands that are not run here, and why.
EXEMPT = {
    "run": "ingest itself: it appends, and re-dates a record's time when its agent's clock is "
    "corrected (test_projections)",
    "events replay": "rebuilds the projections from the journal, which it never alters "
    "(test_projections, test_ledger_end_to_end)",
    "db copy": "reads this store and fills another (test_migrations)",
    "broker make-certs": "writes certificates only, with openssl (test_tls)",
    "web": "serves the dashboard until stopped; what it changes (acknowledgements journaled, "
    "cards, people) is test_web's and test_browser's",
}

#: Followers that never end: started, read until they print, stopped.
FOLLOWERS = {"climate tail", "boxes tail"}

#: What the triggers say when a command tries.
REFUSED = "recorded-rows-guard"

HOLDER = "04C0FFEE"
#: A dashboard password, on standard input for the commands that read one.
PASSWORD = "a long password\n"

#: Recent, so that alerts are raised from what happened (older events raise none).
DAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=2, minute=0, second=0, microsecond=0)
SINCE = (DAY - timedelta(days=5)).date().isoformat()


def commands(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Every command's full name, those a group imports only when run (``LazyGroup``) too."""
    if isinstance(group, click.Group):
        context = click.Context(group)
        for name in group.list_commands(context):
            sub = group.get_command(context, name)
            assert sub is not None, name
            yield from commands(sub, (*path, name))
    else:
        yield " ".join(path)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A county's store with movements, climate records and box events, then guarded."""
    root = tmp_path_factory.mktemp("append-only")
    config = county_store(
        root,
        ("receive", "county", "no1", "condom-a", "B5", "23", "--expiry", "2030-01-31"),
        ("inspect", "county", "no1", "condom-a", "B5", "20", "--result", "qualified"),
        ("inspect", "county", "no1", "condom-a", "B5", "1", "--result", "unqualified"),
        ("transfer", "county:no1", "town:no1", "condom-a", "B5", "12"),
        ("site", "add", "village", "--name", "村", "--level", "village", "--parent", "town"),
        ("transfer", "town:no1", "village:transit", "condom-a", "B5", "5"),
    )
    (root / "county.key").write_text("11" * 32)
    (root / "county.key").chmod(0o600)
    with config.open("a") as f:
        f.write(f'[cards]\nkey_file = "{root / "county.key"}"\n')
    # Each command below works on the store as the fixture left it, in any order or alone.
    for uid, name in ((HOLDER, "李四"), ("04A1B2C3", "王五"), ("04A1B2C4", "赵六")):
        issued = CliRunner().invoke(
            main, ["--config", str(config), "cards", "issue", "--uid", uid, "--name", name]
        )
        assert issued.exit_code == 0, issued.output
    engine = make_engine(f"sqlite:///{root / 'server.db'}")
    ingest = Ingestor(engine, "fp")
    climate = [
        climate_event(n, occurred_at=(DAY + timedelta(minutes=10 * n)).isoformat())
        for n in range(1, 7)
    ]
    box = [
        ev(7, "cabinet.restock", {**restock(1, 5, "B5"), "source": "door"}),
        ev(8, "cabinet.slot", slot_state(1, "ok", "empty", 5, "B5")),
        ev(9, "cabinet.dispense", {**dispense(1, 4), "batch": "B5"}),
        ev(
            10,
            "cabinet.tamper",
            {"box": "box-1", "reason": "door_without_card", "open_s": 5.0},
            occurred_at=DAY.isoformat(),
        ),
    ]
    body = {"v": 1, "agent_id": "station-1", "epoch": EPOCH, "sent_at": DAY.isoformat(),
            "events": climate + box}  # fmt: skip
    result = ingest.handle("fp/v1/village/station-1/events", json.dumps(body).encode(), DAY)
    assert (result.stored, result.refused) == (10, ()), result
    engine.dispose()
    with closing(sqlite3.connect(root / "server.db")) as db, db:
        for table in GUARDED:
            for verb in ("UPDATE", "DELETE"):
                db.execute(
                    f"CREATE TRIGGER append_only_{table}_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{REFUSED}: {verb} {table}'); END"
                )
        held = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in GUARDED}
    assert all(held.values()), held
    added = CliRunner().invoke(
        main,
        ["--config", str(config), "users", "add", "li", "--role", "keeper", "--scope", "*",
         "--password-stdin"],
        input=PASSWORD,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    (root / "cards.csv").write_text("uid,role\n04AABBCC,villager\n", encoding="utf-8")
    (root / "secret").write_text("s3cret-password\n")
    return config


def runs(config: Path) -> dict[str, list[str]]:
    """Each command with arguments that make it do its work on the guarded store."""
    root = config.parent
    return {
        "adjust": ["adjust", "town:no1", "condom-a", "B5", "1", "--reason", "found", *BY],
        "alerts ack": ["alerts", "ack", "box.tamper:village:box-1", "--action", "关门", *BY],
        "alerts list": ["alerts", "list", "--all"],
        "alerts silence": ["alerts", "silence", "box.tamper:village:", "--for", "2h", *BY],
        "alerts told": ["alerts", "told", "1"],
        "backup": ["backup", "--to", str(root / "backups")],
        "batch add": ["batch", "add", "condom-a", "B9", "--expiry", "2031-01-01", *BY],
        "broker acl": ["broker", "acl"],
        "broker add-user": ["broker", "add-user", "ops", "--password-file", str(root / "secret")],
        "broker provision-agent": [
            "broker",
            "provision-agent",
            "--agent",
            "station-2",
            "--site",
            "village",
            "--password-file",
            str(root / "secret"),
            "--out",
            str(root / "agent.toml"),
        ],
        "cards guest quota": ["cards", "guest", "quota", "1", "30"],
        "cards guest refuse": ["cards", "guest", "refuse"],
        "cards holder": ["cards", "holder", of_uid(CardKey(bytes.fromhex("11" * 32)), HOLDER)],
        "cards import": ["cards", "import", str(root / "cards.csv")],
        "cards issue": ["cards", "issue", "--uid", "04A1B2C5"],
        "cards list": ["cards", "list"],
        "cards lost": ["cards", "lost", "--uid", "04A1B2C3"],
        "cards make-key": ["cards", "make-key", "--out", str(root / "other.key")],
        "cards revoke": ["cards", "revoke", "--uid", "04A1B2C4"],
        "cards rule list": ["cards", "rule", "list"],
        "cards rule set": ["cards", "rule", "set", "default", "condoms", "2", "30"],
        "check": ["check"],
        "climate export": [
            "climate",
            "export",
            "village",
            "--from",
            SINCE,
            "--out",
            str(root / "climate.csv"),
        ],
        "climate latest": ["climate", "latest"],
        "climate mkt": ["climate", "mkt", "village", "no1", "--from", SINCE],
        "climate sheet": ["climate", "sheet", "village", "no1", "--month", SINCE[:7]],
        "climate series": ["climate", "series", "village", "no1", "--from", SINCE],
        "command list": ["command", "list"],
        "command send": ["command", "send", "station-1", "ping"],
        "db upgrade": ["db", "upgrade"],
        "dispose": ["dispose", "county", "no1", "condom-a", "B5", "1", "--reason", "破损", *BY],
        "inspect": [
            "inspect",
            "county",
            "no1",
            "condom-a",
            "B5",
            "1",
            "--result",
            "unqualified",
            *BY,
        ],
        "link status": ["link", "status"],
        "movements": ["movements", "--out", str(root / "movements.csv")],
        "product add": [
            "product",
            "add",
            "pill-b",
            "--name-zh",
            "口服避孕药",
            "--name-en",
            "Pills",
            "--storeroom",
            "no2",
            "--group",
            "pills",
            *BY,
        ],
        "receive": ["receive", "county", "no1", "condom-a", "B5", "3", *BY],
        "restock approve": [
            "restock",
            "approve",
            "village:box-1#1",
            "B5",
            "2",
            "--from",
            "town:no1",
            *BY,
        ],
        "restock propose": ["restock", "propose", "--below", "30"],
        "return": ["return", "town:no1", "county:no1", "condom-a", "B5", "1", *BY],
        "schema": ["schema"],
        "site add": [
            "site",
            "add",
            "village-2",
            "--name",
            "二村",
            "--level",
            "village",
            "--parent",
            "town",
            *BY,
        ],
        "stock": ["stock", "--site", "city"],
        "stocktake": ["stocktake", "town:no1", "--line", "condom-a:B5:5", *BY],
        "suggest": ["suggest", "county:no1", "condom-a", "2"],
        "transfer": ["transfer", "county:no1", "town:no1", "condom-a", "B5", "1", *BY],
        "verify": ["verify"],
        "users add": [
            "users",
            "add",
            "zhao",
            "--role",
            "viewer",
            "--scope",
            "town",
            "--password-stdin",
        ],
        "users list": ["users", "list"],
        "users passwd": ["users", "passwd", "li", "--password-stdin"],
        "users disable": ["users", "disable", "li"],
        "users enable": ["users", "enable", "li"],
        "users token": ["users", "token", "li", "--label", "report"],
        "users revoke": ["users", "revoke", "li"],
        "boxes": ["boxes"],
    }


def test_every_command_is_run_here_or_exempted_with_its_reason(guarded: Path) -> None:
    known = set(commands(main)) | {"boxes"}
    covered = set(runs(guarded)) | set(EXEMPT) | FOLLOWERS
    assert known == covered, (known - covered, covered - known)


@pytest.mark.parametrize("name", sorted(runs(Path("/nonexistent/server.toml"))))
def test_a_command_leaves_what_was_recorded_alone(guarded: Path, name: str) -> None:
    args = runs(guarded)[name]
    done = CliRunner().invoke(main, ["--config", str(guarded), *args], input=PASSWORD)
    said = done.output + (done.stderr if done.stderr_bytes else "")
    assert done.exit_code == 0, said + repr(done.exception)
    assert REFUSED not in said


@pytest.mark.parametrize("name", sorted(FOLLOWERS))
def test_a_follower_leaves_what_was_recorded_alone(guarded: Path, name: str) -> None:
    err = guarded.parent / f"{name.replace(' ', '-')}.err"
    with err.open("w") as stderr:
        follower = subprocess.Popen(
            [str(BIN / "edge-server"), "--config", str(guarded), *name.split(), "--from-start",
             "--interval", "0.1"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True,
        )  # fmt: skip
    printed: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: printed.put(follower.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
    try:
        wait_for(lambda: not printed.empty(), what=f"{name} printing")
    finally:
        os.killpg(follower.pid, signal.SIGTERM)
        follower.communicate(timeout=10)
    assert printed.get().strip()
    said = err.read_text()
    assert REFUSED not in said, said
    assert "Traceback" not in said, said


def test_the_guard_catches_a_command_that_deletes(guarded: Path) -> None:
    """The rebuild deletes the movements it derives, so under the guard it must fail: proof
    that the triggers are armed and that a command run above would have failed the same way."""
    done = CliRunner().invoke(main, ["--config", str(guarded), "events", "replay"])
    assert done.exit_code != 0
    assert REFUSED in done.output + repr(done.exception)
