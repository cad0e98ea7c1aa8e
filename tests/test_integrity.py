"""Tamper evidence and backups: the journal's hash chains, ``edge-server verify`` naming the
first altered, missing or inserted record, and a backup taken while ingest writes that restores
to a store that verifies. On SQLite and PostgreSQL through the real ingest; no mocks."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command

from edge_agent.configfile import ConfigError
from server.climate.projection import ClimateProjection
from server.config import load_config
from server.ingest.core import Ingestor
from server.ingest.timefix import BootRef
from server.integrity.backup import (
    BackupError,
    BackupSchedule,
    backup,
    backup_time,
    newest_backup,
    next_run,
)
from server.integrity.chain import GENESIS, Link, canonical, canonical_time, link_hash
from server.integrity.verify import Problem, UnknownAgent, verify
from server.projections import Run
from server.store.copy import copy_store
from server.store.db import alembic_config, make_engine, migrate
from server.store.schema import agents, climate_records, journal, messages, streams
from simulators.broker import Postgres, postgres_bin
from tests.support import BIN, wait_for
from tests.test_ingest import NOW, batch
from tests.test_migrations import fill_0002

SHANGHAI = ZoneInfo("Asia/Shanghai")


def topic_of(agent: str) -> str:
    return f"fp/v1/county/{agent}/events"


def send(ingest: Ingestor, agent: str, *seqs: int, when: datetime = NOW) -> None:
    result = ingest.handle(topic_of(agent), batch(*seqs, agent=agent, agent_id=agent), when)
    assert result.stored == len(seqs), result


def fill(engine: sa.Engine, names: list[str], rounds: int = 5) -> Ingestor:
    """``rounds`` messages of two events per agent, the agents' messages interleaved."""
    ingest = Ingestor(engine, "fp")
    for r in range(rounds):
        when = NOW + timedelta(seconds=r, microseconds=123_457 * r % 1_000_000)
        group = [(topic_of(a), batch(2 * r + 1, 2 * r + 2, agent=a, agent_id=a)) for a in names]
        assert all(x.stored == 2 for x in ingest.handle_many(group, when))
    return ingest


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "edge-server"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(path: Path, db: Path, extra: str = "") -> Path:
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n{extra}')
    return path


# --- the chain (pure) --------------------------------------------------------------------------

LINK = Link("station-1", "e0e0e0e0", 1, datetime(2026, 11, 23, 5, 0, 0, 7, UTC), "mqtt", b"{}")


def test_the_format_is_pinned() -> None:
    """Stored links were computed with this format: it must never change."""
    expected = (
        b'["edge-journal/1","station-1","e0e0e0e0",1,"2026-11-23T05:00:00.000007Z","mqtt",'
        b'"' + b"0" * 64 + b'"]\n{}'
    )
    assert canonical(LINK, GENESIS) == expected
    assert link_hash(LINK, GENESIS) == hashlib.sha256(expected).hexdigest()
    assert link_hash(LINK, GENESIS).startswith("2ff9af70955d0dd5")


def test_every_field_is_sealed() -> None:
    base = link_hash(LINK, GENESIS)
    changed: list[Link] = []
    fields = vars(LINK)
    others = {
        "agent_id": "station-2",
        "epoch": "e1e1e1e1",
        "position": 2,
        "received_at": LINK.received_at + timedelta(microseconds=1),
        "origin": "migrated",
        "payload": b"{} ",
    }
    for name, value in others.items():
        changed.append(Link(**{**fields, name: value}))
    assert len({base, *(link_hash(c, GENESIS) for c in changed)}) == len(others) + 1
    assert link_hash(LINK, "1" * 64) != base, "the previous hash is sealed too"


def test_times_are_canonical_whatever_the_driver_hands_back() -> None:
    aware = datetime(2026, 11, 23, 5, 0, 0, 120, UTC)
    naive = aware.replace(tzinfo=None)  # SQLite
    local = aware.astimezone(timezone(timedelta(hours=8)))  # a PostgreSQL session's zone
    assert {canonical_time(t) for t in (aware, naive, local)} == {"2026-11-23T05:00:00.000120Z"}


def test_next_run_is_the_next_local_time_of_day() -> None:
    at = time(2, 30)
    before = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)  # 02:00 in Shanghai
    assert next_run(before, at, SHANGHAI) == datetime(2026, 11, 24, 2, 30, tzinfo=SHANGHAI)
    after = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)  # 03:00
    assert next_run(after, at, SHANGHAI) == datetime(2026, 11, 25, 2, 30, tzinfo=SHANGHAI)
    exactly = datetime(2026, 11, 24, 2, 30, tzinfo=SHANGHAI)
    assert next_run(exactly, at, SHANGHAI) == exactly + timedelta(days=1)


def test_only_backup_names_have_a_time() -> None:
    assert backup_time("server-20261123-023000.db", SHANGHAI) == datetime(
        2026, 11, 23, 2, 30, tzinfo=SHANGHAI
    )
    assert backup_time(".server-20261123-023000.db.partial", SHANGHAI) is not None
    for other in ("server.db", "server-20261323-023000.db", "notes-20261123-023000.db"):
        assert backup_time(other, SHANGHAI) is None


# --- verify through the real ingest --------------------------------------------------------------


def message(conn: sa.Connection, agent: str, position: int) -> sa.Row[tuple[object, ...]]:
    return conn.execute(
        sa.select(messages).where(messages.c.agent_id == agent, messages.c.chain_pos == position)
    ).one()


def forge(conn: sa.Connection, agent: str, position: int, prev: str | None) -> str:
    """Insert a message at ``position`` as someone who knows the format would: its hash right,
    linked to ``prev`` (the real last hash when None)."""
    last = message(conn, agent, position - 1)
    payload = batch(99, agent=agent, agent_id=agent)
    link = Link(agent, "e0e0e0e0", position, NOW, "mqtt", payload)
    prev = prev or last.chain_hash
    digest = link_hash(link, prev)
    conn.execute(
        sa.text(
            "INSERT INTO messages (stream_id, received_at, origin, payload, agent_id, chain_pos, "
            "chain_prev, chain_hash) VALUES (:s, :t, 'mqtt', :p, :a, :n, :prev, :h)"
        ),
        {"s": last.stream_id, "t": NOW, "p": payload, "a": agent, "n": position, "prev": prev,
         "h": digest},
    )  # fmt: skip
    return digest


def edit_payload(conn: sa.Connection) -> None:
    row = message(conn, "a-payload", 3)
    conn.execute(
        sa.text("UPDATE messages SET payload = :p WHERE id = :id"),
        {"p": bytes(row.payload).replace(b"21.5", b"20.5"), "id": row.id},
    )


def edit_time(conn: sa.Connection) -> None:
    row = message(conn, "a-time", 3)
    conn.execute(
        sa.text("UPDATE messages SET received_at = :t WHERE id = :id"),
        {"t": NOW - timedelta(hours=1), "id": row.id},
    )


def edit_epoch(conn: sa.Connection) -> None:
    conn.execute(sa.text("UPDATE streams SET epoch = 'e1e1e1e1' WHERE agent_id = 'a-epoch'"))


def move_to_another_stream(conn: sa.Connection) -> None:
    other = conn.execute(sa.select(streams.c.id).where(streams.c.agent_id == "intact")).scalar_one()
    conn.execute(
        sa.text("UPDATE messages SET stream_id = :s WHERE id = :id"),
        {"s": other, "id": message(conn, "a-moved", 2).id},
    )


def rehash(conn: sa.Connection) -> None:
    """Alter a record and recompute its hash: the next record no longer links to it."""
    row = message(conn, "a-rehashed", 3)
    payload = bytes(row.payload).replace(b"21.5", b"20.5")
    link = Link("a-rehashed", "e0e0e0e0", 3, row.received_at, "mqtt", payload)
    conn.execute(
        sa.text("UPDATE messages SET payload = :p, chain_hash = :h WHERE id = :id"),
        {"p": payload, "h": link_hash(link, row.chain_prev), "id": row.id},
    )


def delete_middle(conn: sa.Connection) -> None:
    conn.execute(
        sa.text("DELETE FROM messages WHERE id = :id"), {"id": message(conn, "a-gap", 3).id}
    )


def delete_end(conn: sa.Connection) -> None:
    conn.execute(
        sa.text("DELETE FROM messages WHERE id = :id"), {"id": message(conn, "a-end", 5).id}
    )


def insert_at_end(conn: sa.Connection) -> None:
    forge(conn, "a-extra", 6, None)  # linked and hashed right; the agent's row not moved on


def insert_unlinked(conn: sa.Connection) -> None:
    digest = forge(conn, "a-forged", 6, "f" * 64)
    conn.execute(
        sa.text("UPDATE agents SET chain_pos = 6, chain_head = :h WHERE agent_id = 'a-forged'"),
        {"h": digest},
    )


def edit_head(conn: sa.Connection) -> None:
    conn.execute(
        sa.text("UPDATE agents SET chain_head = :h WHERE agent_id = 'a-head'"), {"h": "a" * 64}
    )


def delete_agent_row(conn: sa.Connection) -> None:
    conn.execute(sa.text("DELETE FROM agents WHERE agent_id = 'a-no-row'"))


def repoint_journal(conn: sa.Connection) -> None:
    stream = conn.execute(
        sa.select(streams.c.id).where(streams.c.agent_id == "a-journal")
    ).scalar_one()
    conn.execute(
        sa.text("UPDATE journal SET message_id = 999999 WHERE stream_id = :s AND seq = 7"),
        {"s": stream},
    )


#: agent -> (what is done to it, what verify must say: kind, reason, position).
TAMPERING: dict[str, tuple[Callable[[sa.Connection], None], tuple[str, str, int | None]]] = {
    "a-payload": (edit_payload, ("altered", "hash", 3)),
    "a-time": (edit_time, ("altered", "hash", 3)),
    "a-epoch": (edit_epoch, ("altered", "hash", 1)),
    "a-moved": (move_to_another_stream, ("altered", "stream", 2)),
    "a-rehashed": (rehash, ("inserted", "link", 4)),
    "a-gap": (delete_middle, ("missing", "gap", 3)),
    "a-end": (delete_end, ("missing", "end", 5)),
    "a-extra": (insert_at_end, ("inserted", "beyond_head", 6)),
    "a-forged": (insert_unlinked, ("inserted", "link", 6)),
    "a-head": (edit_head, ("head", "hash", 5)),
    "a-no-row": (delete_agent_row, ("head", "no_agent", 5)),
    "a-journal": (repoint_journal, ("journal", "event", None)),
}


def test_verify_names_each_chains_first_broken_record(engine: sa.Engine) -> None:
    names = ["intact", *TAMPERING]
    fill(engine, names)
    clean = verify(engine)
    assert clean.ok
    assert {c.agent_id: c.messages for c in clean.chains} == {n: 5 for n in names}
    with engine.connect() as conn:
        positions = conn.execute(
            sa.select(messages.c.chain_pos)
            .where(messages.c.agent_id == "intact")
            .order_by(messages.c.id)
        ).scalars()
        assert list(positions) == [1, 2, 3, 4, 5], "one chain per agent, in the order stored"
    for damage, _ in TAMPERING.values():
        with engine.begin() as conn:
            damage(conn)
    found = {c.agent_id: c.problem for c in verify(engine).chains}
    assert found.pop("intact") is None, "the other chains are not affected"
    said = {a: (p.kind, p.reason, p.position) for a, p in found.items() if p is not None}
    assert said == {a: expected for a, (_, expected) in TAMPERING.items()}
    gap = found["a-gap"]
    assert isinstance(gap, Problem)
    with engine.connect() as conn:
        assert gap.message_id == message(conn, "a-gap", 4).id, "named by the record after it"
    assert verify(engine, "a-payload").chains[0].problem == found["a-payload"]
    with pytest.raises(UnknownAgent):
        verify(engine, "nobody")


def test_concurrent_ingest_keeps_one_chain_per_agent(engine: sa.Engine) -> None:
    """Several writers store one agent's messages at once: each takes the next position under
    the agent's lock, so the chain has no fork and no hole."""
    ingest = Ingestor(engine, "fp")
    send(ingest, "station-1", 1)

    def writer(first: int) -> None:
        mine = Ingestor(engine, "fp")
        for seq in range(first, first + 20, 2):
            send(mine, "station-1", seq, seq + 1)

    threads = [threading.Thread(target=writer, args=(2 + 20 * k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    report = verify(engine)
    assert report.ok, report
    assert report.chains[0].messages == 41
    with engine.connect() as conn:
        assert conn.execute(sa.select(streams.c.acked_seq)).scalar_one() == 81


def test_migration_chains_the_messages_already_stored(blank_engine: sa.Engine) -> None:
    """A store of schema 0002 (carried into the journal by 0003) and one at 0004 with several
    agents: 0005 chains what they hold, in id order per agent, and ingest carries on."""
    command.upgrade(alembic_config(blank_engine), "0002")
    fill_0002(blank_engine)
    command.upgrade(alembic_config(blank_engine), "0004")
    with blank_engine.begin() as conn:
        for agent in ("station-2", "station-3"):
            conn.execute(
                sa.text(
                    "INSERT INTO agents (agent_id, site_id, first_seen_at, last_heard_at) "
                    "VALUES (:a, 'county', :t, :t)"
                ),
                {"a": agent, "t": NOW},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO streams (agent_id, epoch, state, acked_seq, highest_seq, "
                    "first_received_at, last_received_at) "
                    "VALUES (:a, 'e0e0e0e0', 'primary', 0, 0, :t, :t)"
                ),
                {"a": agent, "t": NOW},
            )
        ids: dict[str, int] = dict(conn.execute(sa.text("SELECT agent_id, id FROM streams")).all())
        for i in range(6):
            agent = ("station-2", "station-3")[i % 2]
            conn.execute(
                sa.text(
                    "INSERT INTO messages (stream_id, received_at, origin, payload) "
                    "VALUES (:s, :t, 'mqtt', :p)"
                ),
                {"s": ids[agent], "t": NOW + timedelta(microseconds=i), "p": b'{"n": %d}' % i},
            )
    migrate(blank_engine)
    report = verify(blank_engine)
    assert report.ok, report
    assert {c.agent_id: c.messages for c in report.chains} == {
        "station-1": 1, "station-2": 3, "station-3": 3,
    }  # fmt: skip
    with blank_engine.connect() as conn:
        heads = dict(conn.execute(sa.select(agents.c.agent_id, agents.c.chain_pos)).all())
    assert heads == {"station-1": 1, "station-2": 3, "station-3": 3}
    send(Ingestor(blank_engine, "fp"), "station-2", 1)
    assert verify(blank_engine).ok
    command.downgrade(alembic_config(blank_engine), "0004")
    migrate(blank_engine)
    assert verify(blank_engine).ok, "a downgrade and upgrade chain the same way"


def test_db_copy_keeps_every_chain(tmp_path: Path, blank_engine: sa.Engine) -> None:
    """The hash is of canonical bytes, not of a driver's values: SQLite to PostgreSQL (or
    another SQLite file) changes nothing."""
    from tests.test_server_cli import fill_store

    source = fill_store(f"sqlite:///{tmp_path / 'source.db'}")
    before = verify(source)
    assert before.ok
    assert len(before.chains) == 2
    copy_store(source, blank_engine)
    assert verify(blank_engine) == before
    with blank_engine.connect() as conn:
        heads = conn.execute(sa.select(agents.c.agent_id, agents.c.chain_head)).all()
    with source.connect() as conn:
        assert sorted(heads) == sorted(
            conn.execute(sa.select(agents.c.agent_id, agents.c.chain_head)).all()
        )


# --- backups -----------------------------------------------------------------------------------


class Gate:
    """A projection that holds its ingest transaction open until released: a backup taken then
    is taken in the middle of an ingest commit."""

    name = "gate"
    kinds = frozenset({"climate.record"})
    rebuilt = True

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()

    def apply(self, conn: sa.Connection, run: Run) -> None:
        self.inside.set()
        assert self.release.wait(30)

    def redate(self, conn: sa.Connection, agent_id: str, boot_id: str, ref: BootRef) -> int:
        return 0

    def reset(self, conn: sa.Connection, agent_id: str, epoch: str) -> None:
        pass


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


class Feeder:
    """station-1 sending batches all along, from a thread, until the ``with`` block ends."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed)

    def _feed(self) -> None:
        ingest = Ingestor(self.engine, "fp")
        while not self._stop.is_set():
            send(ingest, "station-1", 2 * self.sent + 1, 2 * self.sent + 2)
            self.sent += 1

    def __enter__(self) -> Feeder:
        self._thread.start()
        wait_for(lambda: self.sent >= 5, what="ingest to be running")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def goes_on(self) -> None:
        now = self.sent
        wait_for(lambda: self.sent > now + 3, what="ingest to go on")


def assert_consistent(store: sa.Engine) -> None:
    """A copy of one moment: every acknowledged number journaled and applied, every chain's
    head on its agent's row."""
    with store.connect() as conn:
        acked = conn.execute(sa.select(sa.func.sum(streams.c.acked_seq))).scalar_one()
        heads = conn.execute(sa.select(sa.func.sum(agents.c.chain_pos))).scalar_one()
    assert acked == count(store, journal) == count(store, climate_records)
    assert heads == count(store, messages)


def test_a_backup_taken_during_ingest_restores_to_a_store_that_verifies(tmp_path: Path) -> None:
    live = tmp_path / "live" / "server.db"
    engine = make_engine(f"sqlite:///{live}")
    migrate(engine)
    gate = Gate()
    gated = threading.Thread(
        target=send,
        args=(Ingestor(engine, "fp", projections=[ClimateProjection(), gate]), "station-2", 1, 2),
    )
    with Feeder(engine) as feeder:
        try:
            gated.start()
            assert gate.inside.wait(30), "station-2's message is stored, not yet committed"
            made = backup(f"sqlite:///{live}", tmp_path / "backups", 30, SHANGHAI)
        finally:
            gate.release.set()
            gated.join(30)
        feeder.goes_on()
    assert made.report.ok, made.report
    assert made.path.name.startswith("server-")
    assert made.path.suffix == ".db"
    assert [p.name for p in made.path.parent.iterdir()] == [made.path.name], "no partial left"

    restored = tmp_path / "restored" / "server.db"
    restored.parent.mkdir()
    shutil.copy(made.path, restored)
    out = cli(write_config(tmp_path / "restored.toml", restored), "verify", "--lang", "en")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "station-1: intact" in out.stdout
    copy = make_engine(f"sqlite:///{restored}", create=False)
    chained = {c.agent_id: c.messages for c in made.report.chains}
    assert "station-2" not in chained, "the commit in flight is not in the copy"
    assert count(copy, messages) == chained["station-1"] < count(engine, messages)
    assert_consistent(copy)
    assert verify(engine).ok, "the live store is intact too"


def test_a_pg_dump_taken_during_ingest_restores_to_a_store_that_verifies(
    postgres: Postgres, tmp_path: Path
) -> None:
    """What deploy/README.md says for PostgreSQL: pg_dump while ingest runs, pg_restore into a
    new database, verify."""
    bindir = postgres_bin()
    assert bindir is not None
    live, restored = (f"t_{uuid.uuid4().hex[:12]}" for _ in range(2))
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in (live, restored):
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine, copy = make_engine(postgres.url(live)), make_engine(postgres.url(restored))
    client = ["-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres"]
    dump = tmp_path / "edge.dump"
    try:
        migrate(engine)
        with Feeder(engine) as feeder:
            subprocess.run(
                [str(bindir / "pg_dump"), *client, "-Fc", "-f", str(dump), live], check=True
            )
            feeder.goes_on()
        subprocess.run(
            [str(bindir / "pg_restore"), *client, "--no-owner", "-d", restored, str(dump)],
            check=True,
        )
        report = verify(copy)
        assert report.ok, report
        assert 5 <= report.chains[0].messages < count(engine, messages)
        assert_consistent(copy)
    finally:
        engine.dispose()
        copy.dispose()
        with admin.connect() as conn:
            for name in (live, restored):
                conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def test_backup_command_checks_the_copy_and_keeps_the_retention(tmp_path: Path) -> None:
    db = tmp_path / "data" / "server.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    fill(engine, ["station-1", "station-2"], rounds=2)
    folder = tmp_path / "backups"
    folder.mkdir()
    now = datetime.now(SHANGHAI)
    old = folder / f"server-{(now - timedelta(days=8)):%Y%m%d-%H%M%S}.db"
    recent = folder / f"server-{(now - timedelta(days=6)):%Y%m%d-%H%M%S}.db"
    crashed = folder / f".server-{(now - timedelta(days=2)):%Y%m%d-%H%M%S}.db.partial"
    notes = folder / "notes-20200101-000000.db"
    for path in (old, recent, crashed, notes):
        path.write_bytes(b"x")
    extra = f'[backup]\ndirectory = "{folder}"\nretention_days = 7\n'
    out = cli(write_config(tmp_path / "server.toml", db, extra), "backup")
    assert out.returncode == 0, out.stderr
    assert "备份完成" in out.stdout
    assert "4 条记录校验无误" in out.stdout
    assert "已删除 2 份超过 7 天的旧备份" in out.stdout
    left = sorted(p.name for p in folder.iterdir())
    assert len(left) == 3
    assert {recent.name, notes.name} < set(left)
    [made] = [n for n in left if n not in (recent.name, notes.name)]
    copy = make_engine(f"sqlite:///{folder / made}", create=False)
    assert verify(copy) == verify(engine)


def test_a_backup_whose_chains_are_broken_is_kept_and_deletes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    fill(engine, ["station-1"], rounds=2)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM messages WHERE chain_pos = 1"))
    folder = tmp_path / "backups"
    folder.mkdir()
    older = folder / "server-20000101-000000.db"
    older.write_bytes(b"evidence")
    made = backup(f"sqlite:///{db}", folder, 1, SHANGHAI)
    assert not made.report.ok
    assert made.removed == ()
    assert older.exists()
    assert made.path.exists()
    config = write_config(tmp_path / "server.toml", db, f'[backup]\ndirectory = "{folder}"\n')
    out = cli(config, "backup", "--lang", "en", "--to", str(tmp_path / "other"))
    assert out.returncode == 1
    assert "station-1: record 1 is missing" in out.stdout
    assert "every older backup is kept" in out.stderr


def test_backup_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    migrate(make_engine(f"sqlite:///{db}"))
    config = write_config(tmp_path / "server.toml", db)
    afile = tmp_path / "afile"
    afile.write_text("")
    pg = tmp_path / "pg.toml"
    pg.write_text('[database]\nurl = "postgresql+psycopg://edge@127.0.0.1:1/edge"\n')
    for path, args, code, said in [
        (pg, (), 2, "pg_dump"),
        (config, (), 2, "--to"),
        (config, ("--to", str(afile / "sub")), 2, "无法写入备份目录"),
    ]:
        out = cli(path, "backup", *args)
        assert out.returncode == code, out.stderr
        assert said in out.stderr
        assert "Traceback" not in out.stderr
    with pytest.raises(BackupError) as refused:
        backup(f"sqlite:///{tmp_path / 'none.db'}", tmp_path, 1, SHANGHAI)
    assert refused.value.reason == "no_database"


def test_verify_command_exit_codes_and_languages(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    fill(engine, ["station-1", "station-2"], rounds=3)
    zh = write_config(tmp_path / "zh.toml", db)
    en = write_config(tmp_path / "en.toml", db, '[server]\nlanguage = "en"\n')
    out = cli(zh, "verify")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "station-1：完好，共 3 条记录",
        "station-2：完好，共 3 条记录",
        "全部 2 个终端的记录链完整。",
    ]
    with engine.begin() as conn:
        edit = "UPDATE messages SET payload = :p WHERE agent_id = 'station-2' AND chain_pos = 2"
        conn.execute(sa.text(edit), {"p": b"{}"})
    out = cli(en, "verify")
    assert out.returncode == 1
    assert "station-2: record 2 (message " in out.stdout
    assert "was altered" in out.stdout
    assert "1 of 2 agents' record chains are broken" in out.stdout
    assert cli(en, "verify", "--agent", "station-1").returncode == 0
    out = cli(zh, "verify", "--agent", "nobody")
    assert out.returncode == 2
    assert out.stderr.strip() == "没有终端 nobody"


def test_the_daily_backup_runs_at_once_when_a_day_was_missed(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    fill(engine, ["station-1"], rounds=1)
    folder = tmp_path / "backups"
    schedule = BackupSchedule(f"sqlite:///{db}", folder, time(2, 30), 30, SHANGHAI)
    schedule.start()
    try:
        wait_for(lambda: newest_backup(folder, SHANGHAI), what="the missed backup")
    finally:
        schedule.stop()
    [made] = list(folder.iterdir())
    assert verify(make_engine(f"sqlite:///{made}", create=False)).ok


@pytest.mark.parametrize(
    ("section", "said"),
    [
        ('time = "25:00"', "backup.time: must be a time of day HH:MM"),
        ('directory = "backups"', "backup.directory: must be an absolute path"),
        ("retention_days = 0", "backup.retention_days: must be 1..3650"),
        ("keep = 3", "backup.keep"),
    ],
)
def test_backup_section_is_validated(tmp_path: Path, section: str, said: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f"[backup]\n{section}\n")
    with pytest.raises(ConfigError) as bad:
        load_config(path)
    assert said in str(bad.value)


def test_backup_section_defaults(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f'[backup]\ndirectory = "{tmp_path}"\ntime = "23:05"\n')
    section = load_config(path).backup
    assert (section.directory, section.hour_minute, section.retention_days) == (
        tmp_path, (23, 5), 30,
    )  # fmt: skip
