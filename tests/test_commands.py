"""Commands on the agent: applied once, one at a time, always answered."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.clock import Clock
from edge_agent.commands import CommandHandler
from edge_agent.outbox import AsyncOutbox
from edge_agent.wire import (
    CardsUpdateCommand,
    Command,
    CommandBody,
    ConfigUpdateCommand,
    RestockOrderCommand,
    parse_event,
)


def command(body: CommandBody) -> Command:
    return Command(id=uuid.uuid4(), agent_id="a", issued_at=datetime.now(UTC), body=body)


async def results(box: AsyncOutbox) -> list[dict[str, object]]:
    events = [parse_event(json.loads(p.body)) for p in await box.pending(0, 1000, 10**9)]
    return [e.payload.model_dump() for e in events if e.kind == "command.result"]


async def handler(tmp_path: Path) -> tuple[CommandHandler, AsyncOutbox]:
    box = AsyncOutbox(tmp_path / "outbox.db", "a")
    await box.open()
    restarts: list[bool] = []
    h = CommandHandler(
        agent_id="a",
        outbox=box,
        clock=Clock(lambda: True),
        config_path=tmp_path / "agent.toml",
        data_dir=tmp_path,
        request_restart=lambda: restarts.append(True),
    )
    return h, box


async def test_concurrent_orders_are_all_kept_and_a_repeat_is_not_applied(tmp_path: Path) -> None:
    h, box = await handler(tmp_path)
    orders = [
        command(RestockOrderCommand(order_id=f"o{i}", box="b1", product="p", batch="B", quantity=5))
        for i in range(5)
    ]
    await asyncio.gather(*(h.handle(c) for c in [*orders, orders[0]]))
    stored = json.loads((tmp_path / "restock-orders.json").read_text())
    assert sorted(stored) == [f"o{i}" for i in range(5)]
    answered = await results(box)
    assert len(answered) == 5
    assert all(r["ok"] for r in answered)
    await box.close()


async def test_a_failing_command_is_answered_with_the_failure(tmp_path: Path) -> None:
    h, box = await handler(tmp_path)
    (tmp_path / "cards.json").write_text("{ not json")
    await h.handle(command(CardsUpdateCommand(version=2, cards=["0123456789abcdef"])))
    (answer,) = await results(box)
    assert answer["ok"] is False
    assert "JSONDecodeError" in str(answer["detail"])
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
