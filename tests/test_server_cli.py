"""edge-server as a user runs it: one clear line for every bad input, never a traceback, and
read-only commands that never create or migrate a database."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command

from server.alerts.config import AlertsSection
from server.alerts.notify import Notifier, silence
from server.alerts.projection import AlertsProjection
from server.ingest.core import Ingestor
from server.projections import default_projections
from server.store.copy import COPIED_TABLES, REBUILT_TABLES
from server.store.db import alembic_config, make_engine, migrate, utc
from server.store.schema import (
    agents,
    alert_channels,
    alert_notices,
    alert_silences,
    alerts,
    api_tokens,
    audit_log,
    boot_refs,
    cabinet_box_log,
    cabinet_faults,
    cabinet_slot_log,
    cabinet_slots,
    cabinet_usage,
    card_changes,
    card_holders,
    card_registry,
    card_sync_agents,
    card_sync_clock,
    cards,
    climate_notices,
    climate_records,
    climate_summaries,
    commands,
    dead_letters,
    journal,
    journal_conflicts,
    login_failures,
    lost_ranges,
    messages,
    metadata,
    projection_checkpoints,
    quota_rules,
    streams,
    user_sessions,
    users,
)
from tests.support import BIN
from tests.test_ingest import EPOCH, NOW, TOPIC, batch, new_epoch_batch
from tests.test_projections import varied_stream


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
        ("sqlite:///relative.db", "database.url: needs an absolute path"),
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


@pytest.mark.parametrize(
    ("args", "table", "logger", "said"),
    [
        (("stock",), "ledger_stock", "server.ledger.cli: ledger", "数据库出错，详情见日志"),
        (("users", "list"), "users", "server.users.cli: users",
         "数据库出错，操作未完成（详见服务器日志）"),
        (("cards", "list"), "cards", "server.cards.cli: cards", "数据库出错，未完成（详情见日志）"),
        (("climate", "mkt", "county", "no1"), "climate_records", "server.climate.cli: climate",
         "数据库出错，未完成（详情见日志）"),
        (("verify", "--lang", "en"), "messages", "server.integrity.cli: verify",
         "database error; nothing done (details in the log)"),
    ],
)  # fmt: skip
def test_a_database_error_is_one_line_for_people_and_its_detail_in_the_log(
    config: Path, args: tuple[str, ...], table: str, logger: str, said: str
) -> None:
    assert cli(config, "db", "upgrade").returncode == 0
    engine = make_engine(f"sqlite:///{config.parent / 'data' / 'server.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")
    engine.dispose()
    out = cli(config, *args)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.strip().splitlines()[-1] == said
    assert f"ERROR {logger}: database error: (sqlite3.OperationalError) no such table" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_broker_file_that_cannot_be_written_is_one_line(config: Path, tmp_path: Path) -> None:
    out = cli(config, "broker", "acl", "--out", str(tmp_path / "missing" / "acl"))
    assert out.returncode == 1
    assert out.stderr.startswith("broker: [Errno 2] No such file or directory:"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


# --- db copy ----------------------------------------------------------------------------------

#: What ``db copy`` carries over as it is; the climate tables are rebuilt by its replay.
COPIED = (
    agents,
    streams,
    messages,
    journal,
    journal_conflicts,
    lost_ranges,
    boot_refs,
    commands,
    dead_letters,
    card_registry,
    cards,
    card_holders,
    quota_rules,
    card_changes,
    card_sync_clock,
    card_sync_agents,
    alerts,
    alert_notices,
    alert_silences,
    alert_channels,
    users,
    user_sessions,
    api_tokens,
    login_failures,
    audit_log,
)
DERIVED = (
    climate_records,
    climate_summaries,
    climate_notices,
    cabinet_slot_log,
    cabinet_slots,
    cabinet_box_log,
    cabinet_faults,
    cabinet_usage,
)


def rows_of(engine: sa.Engine, table: sa.Table, without: tuple[str, ...] = ()) -> list[Any]:
    """A table's rows, times in UTC (SQLite hands back naive ones), in a stable order."""
    columns = [c for c in table.c if c.name not in without]
    with engine.connect() as conn:
        found = conn.execute(sa.select(*columns)).all()
    out = [tuple(utc(v) if isinstance(v, datetime) else v for v in r) for r in found]
    return sorted(out, key=repr)


def store_contents(engine: sa.Engine) -> dict[str, list[Any]]:
    """Copied tables whole (ids kept); projections by (agent, epoch, seq) and values."""
    out = {t.name: rows_of(engine, t) for t in COPIED}
    # A usage row's sync round is the sync's stamp, given again after a rebuild.
    out.update({t.name: rows_of(engine, t, without=("id", "sync_round")) for t in DERIVED})
    out["projection_checkpoints"] = rows_of(engine, projection_checkpoints)
    return out


def fill_store(url: str) -> sa.Engine:
    """A store with everything a county's may hold, through the real ingest."""
    engine = make_engine(url)
    migrate(engine)
    # Alerts, live state the copy carries, are raised as of the events' day.
    projections = [
        AlertsProjection(now=lambda: NOW) if p.name == "alerts" else p
        for p in default_projections()
    ]
    ingest = Ingestor(engine, "fp", projections=projections)
    varied_stream(ingest, engine)  # records, summary, notice, command result, late gap, re-dating
    ingest.handle(TOPIC, batch(*range(11, 41)), NOW)  # held back behind the gap at 10
    ingest.handle(TOPIC, batch(10), NOW)
    clone = json.loads(batch(40))
    clone["events"][0]["payload"]["temperature_c"] = 29.0
    ingest.handle(TOPIC, json.dumps(clone).encode(), NOW)  # a kept conflict
    ingest.handle(TOPIC, new_epoch_batch(1, 2), NOW)  # a second epoch, not applied
    malformed = json.loads(batch(41))
    malformed["events"][0]["payload"]["humidity_pct"] = 250
    ingest.handle(TOPIC, json.dumps(malformed).encode(), NOW)  # dead-lettered
    other = "fp/v1/county/station-2/events"
    ingest.handle(other, batch(1, 2, agent="station-2", agent_id="station-2"), NOW)
    newer = json.loads(batch(3, agent="station-2", agent_id="station-2"))
    newer["events"][0]["payload"]["unknown_field"] = 1
    ingest.handle(other, json.dumps(newer).encode(), NOW)  # journaled, not understood
    fill_cards_and_boxes(engine, ingest)
    with engine.begin() as conn:
        conn.execute(
            commands.insert().values(
                id=str(uuid.uuid4()), agent_id="station-2", site_id="county", kind="ping",
                message="{}", created_at=NOW,
            )
        )  # fmt: skip
        conn.execute(
            lost_ranges.insert().values(
                agent_id="station-2", epoch=EPOCH, from_seq=90, to_seq=99, reason="test",
                recorded_at=NOW,
            )
        )  # fmt: skip
    # Who was told of the alerts, and a silence: live state the copy carries as it is.
    notifier = Notifier(engine, AlertsSection(), ZoneInfo("Asia/Shanghai"), now=lambda: NOW)
    with engine.begin() as conn:
        assert notifier.plan(conn, NOW) > 0
        silence(conn, "box.tamper:", NOW + timedelta(hours=1), "王", "检修", NOW)
        conn.execute(alert_channels.insert().values(channel="sms", failures=2, last_failed_at=NOW))
    notifier.close()
    fill_users(engine)
    return engine


def fill_users(engine: sa.Engine) -> None:
    """A keeper signed in once with a token, after a failed login (the audit log records both)."""
    from server.users import store as people

    with engine.begin() as conn:
        keeper = people.add(conn, "wang", "keeper", "*", "a long password", "root", NOW)
        people.open_session(conn, keeper, NOW)
        people.make_token(conn, "wang", "script", "root", NOW)
    with pytest.raises(people.LoginRefused):
        people.authenticate(engine, "wang", "wrong password", "10.0.0.9", NOW)


def fill_cards_and_boxes(engine: sa.Engine, ingest: Ingestor) -> None:
    """A registry, a box with a take and a fault at station-2, and a sync that sent them."""
    from datetime import timedelta

    from edge_agent.wire import AgentStatus, GuestPolicy, QuotaRule, encode
    from server.cards import registry
    from server.cards.sync import CardSync
    from tests.test_boxes_projection import box_day, send

    holder = registry.Holder(name="张三")
    registry.issue(engine, [registry.Issue("ab" * 32, holder=holder)], NOW)
    rule = QuotaRule(group="default", product_group="condoms", quantity=1, period_days=30)
    registry.set_rule(engine, rule, NOW)
    registry.set_guest(engine, GuestPolicy(mode="quota"), NOW)
    day = [dict(e, seq=e["seq"] + 3) for e in box_day(agent="station-2")]
    send(ingest, day, agent="station-2")
    status = AgentStatus(agent_id="station-2", online=True, cards_version=0)
    ingest.handle("fp/v1/county/station-2/status", encode(status), NOW)
    CardSync(engine, "fp", timedelta(minutes=5)).run(NOW)


def test_db_copy_moves_the_journal_and_rebuilds_the_projections(
    config: Path, blank_engine: sa.Engine
) -> None:
    source = fill_store(f"sqlite:///{config.parent / 'data' / 'server.db'}")
    before = store_contents(source)
    assert all(before[name] for name in before), "every table has something to copy"
    assert len(before["climate_records"]) == 36
    target_url = blank_engine.url.render_as_string(hide_password=False)
    out = cli(config, "db", "copy", "--to", target_url, "--chunk", "7")
    assert out.returncode == 0, out.stderr
    assert f"messages: {len(before['messages'])} rows copied" in out.stdout
    assert f"journal: {len(before['journal'])} rows copied" in out.stdout
    assert "climate_records 36 rows" in out.stdout.splitlines()[-1]
    assert store_contents(blank_engine) == before
    assert store_contents(source) == before, "the source is only read"
    # Ingest goes on in the copy: new ids come after the copied ones.
    result = Ingestor(blank_engine, "fp").handle(TOPIC, batch(41, 42), NOW)
    assert (result.stored, result.acked_seq) == (2, 42)
    with blank_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.max(messages.c.id))).scalar_one() > max(
            r[0] for r in before["messages"]
        )


def test_db_copy_knows_every_table() -> None:
    """A table added later must be placed: copied (a source) or rebuilt (a projection)."""
    placed = {*COPIED_TABLES, *REBUILT_TABLES, "projection_checkpoints"}
    assert set(metadata.tables) == placed
    assert {t.name for t in COPIED} == set(COPIED_TABLES)


def test_db_copy_never_merges_into_a_store_that_holds_data(
    config: Path, blank_engine: sa.Engine
) -> None:
    fill_store(f"sqlite:///{config.parent / 'data' / 'server.db'}")
    migrate(blank_engine)
    Ingestor(blank_engine, "fp").handle(TOPIC, batch(1), NOW)
    held = store_contents(blank_engine)
    out = cli(config, "db", "copy", "--to", blank_engine.url.render_as_string(False))
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "is not empty (agents has rows)" in out.stderr
    assert store_contents(blank_engine) == held, "nothing changed"


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("postgresql+psycopg://nobody@127.0.0.1:1/x", 1, "127.0.0.1"),
        ("mysql://x@localhost/y", 2, "--to must be sqlite:////absolute"),
        ("sqlite:///", 2, "--to names no database file"),
        ("postgresql+nosuchdriver://x@localhost/y", 1, "nosuchdriver"),
        ("postgresql://x@localhost:port/y", 2, "--to is not a database URL"),
    ],
)
def test_db_copy_bad_targets_get_one_line(config: Path, url: str, code: int, message: str) -> None:
    assert cli(config, "db", "upgrade").returncode == 0
    out = cli(config, "db", "copy", "--to", url)
    assert out.returncode == code, out.stderr
    assert out.stderr.startswith("db copy: ")
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert message in out.stderr


def test_db_copy_refuses_a_source_on_an_old_schema(config: Path, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{config.parent / 'data' / 'server.db'}")
    command.upgrade(alembic_config(engine), "0002")
    out = cli(config, "db", "copy", "--to", f"sqlite:///{tmp_path / 'copy.db'}")
    assert out.returncode == 1
    assert "edge-server db upgrade" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "copy.db").exists()
