"""Commands on the agent: applied once, one at a time, always answered."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.clock import Clock
from edge_agent.commands import INTERNAL_ERROR, Applier, CommandHandler
from edge_agent.outbox import AsyncOutbox, DomainSchema, Unit
from edge_agent.wire import (
    CardsUsageCommand,
    Command,
    CommandBody,
    ConfigUpdateCommand,
    PingCommand,
    Usage,
    parse_event,
)


#: A stand-in domain that keeps each usage command's size in a table of its own.
def _tally_v1(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE tally (n INTEGER NOT NULL CHECK (n < 3))")


SCHEMA = DomainSchema("tally", [_tally_v1])


def tally(unit: Unit, body: CommandBody) -> tuple[bool, str]:
    assert isinstance(body, CardsUsageCommand)
    if len(body.usage) == 2:
        unit.execute("INSERT INTO tally (n) VALUES (0)")
        return False, "two is refused"
    unit.execute("INSERT INTO tally (n) VALUES (?)", [len(body.usage)])
    return True, f"{len(body.usage)} kept"


def command(body: CommandBody) -> Command:
    return Command(id=uuid.uuid4(), agent_id="a", issued_at=datetime.now(UTC), body=body)


async def results(box: AsyncOutbox) -> list[dict[str, object]]:
    events = [parse_event(json.loads(p.body)) for p in await box.pending(0, 1000, 10**9)]
    return [e.payload.model_dump() for e in events if e.kind == "command.result"]


async def handler(
    tmp_path: Path, domains: dict[str, Applier] | None = None, max_bytes: int | None = None
) -> tuple[CommandHandler, AsyncOutbox]:
    box = AsyncOutbox(tmp_path / "outbox.db", "a", schemas=[SCHEMA], max_bytes=max_bytes)
    await box.open()
    restarts: list[bool] = []
    h = CommandHandler(
        agent_id="a",
        outbox=box,
        clock=Clock(lambda: True),
        config_path=tmp_path / "agent.toml",
        data_dir=tmp_path,
        request_restart=lambda: restarts.append(True),
        domains=domains,
    )
    return h, box


async def test_concurrent_commands_are_all_answered_and_a_repeat_is_not_applied(
    tmp_path: Path,
) -> None:
    h, box = await handler(tmp_path, {"cards.usage": tally})
    usage = [command(CardsUsageCommand(usage=[])) for _ in range(4)]
    pings = [command(PingCommand()) for _ in range(3)]
    await asyncio.gather(*(h.handle(c) for c in [*usage, *pings, usage[0], pings[0]]))
    answered = await results(box)
    assert len(answered) == 7
    assert all(r["ok"] for r in answered)
    kept = await box.transact(lambda unit: unit.execute("SELECT count(*) FROM tally").fetchone())
    assert kept == (4,)
    await box.close()


async def test_a_refused_domain_command_leaves_nothing_of_itself(tmp_path: Path) -> None:
    h, box = await handler(tmp_path, {"cards.usage": tally})
    take = Usage(
        transaction=uuid.uuid4(),
        card="ab" * 32,
        product_group="condoms",
        quantity=1,
        at=datetime.now(UTC),
        box="b1",
    )
    await h.handle(command(CardsUsageCommand(usage=[take, take])))
    (answer,) = await results(box)
    assert answer == {**answer, "ok": False, "detail": "two is refused"}
    kept = await box.transact(lambda unit: unit.execute("SELECT count(*) FROM tally").fetchone())
    assert kept == (0,)
    await box.close()


async def test_a_failing_command_is_answered_without_the_exception_text(tmp_path: Path) -> None:
    def broken(unit: Unit, body: CommandBody) -> tuple[bool, str]:
        raise ValueError("Expecting value: line 1 column 3 (char 2)")

    h, box = await handler(tmp_path, {"cards.usage": broken})
    await h.handle(command(CardsUsageCommand(usage=[])))
    (answer,) = await results(box)
    assert answer["ok"] is False
    assert answer["detail"] == INTERNAL_ERROR
    await box.close()


async def test_a_command_the_full_outbox_cannot_hold_is_not_answered_and_applies_when_resent(
    tmp_path: Path,
) -> None:
    def keep(unit: Unit, body: CommandBody) -> tuple[bool, str]:
        assert isinstance(body, CardsUsageCommand)
        unit.execute("CREATE TABLE IF NOT EXISTS kept (blob BLOB)")
        for _ in body.usage:
            unit.execute("INSERT INTO kept VALUES (randomblob(200))")
        return True, f"{len(body.usage)} kept"

    h, box = await handler(tmp_path, {"cards.usage": keep}, max_bytes=512 * 1024)
    await box.transact(lambda unit: unit.execute("CREATE TABLE filler (blob BLOB)"))
    for _ in range(20):
        await box.transact(
            lambda unit: unit.execute("INSERT INTO filler VALUES (randomblob(15000))")
        )
    take = Usage(
        transaction=uuid.uuid4(),
        card="ab" * 32,
        product_group="condoms",
        quantity=1,
        at=datetime.now(UTC),
        box="b1",
    )
    big = command(CardsUsageCommand(usage=[take] * 1000))
    await h.handle(big)
    assert await results(box) == []

    await box.transact(lambda unit: unit.execute("DELETE FROM filler"))
    await h.handle(big)
    (answer,) = await results(box)
    assert answer == {**answer, "ok": True, "detail": "1000 kept"}
    await box.close()


async def test_a_domain_command_on_an_agent_without_the_domain_is_refused(tmp_path: Path) -> None:
    h, box = await handler(tmp_path)
    await h.handle(command(CardsUsageCommand(usage=[])))
    (answer,) = await results(box)
    assert answer["ok"] is False
    assert "no boxes" in str(answer["detail"])
    await box.close()


async def test_config_update_is_validated_saved_with_a_backup_and_restarts(tmp_path: Path) -> None:
    h, box = await handler(tmp_path)
    old = '[agent]\nid = "a"\nsite = "s"\n'
    (tmp_path / "agent.toml").write_text(old)
    new = '[agent]\nid = "a"\nsite = "s2"\n'
    await h.handle(command(ConfigUpdateCommand(toml='[agent]\nid = "b"\nsite = "s"\n')))
    await h.handle(command(ConfigUpdateCommand(toml=new)))
    first, second = await results(box)
    assert first["ok"] is False
    assert "not 'a'" in str(first["detail"])
    assert second["ok"] is True
    assert (tmp_path / "agent.toml").read_text() == new
    assert (tmp_path / "agent.toml.bak").read_text() == old
    await box.close()
