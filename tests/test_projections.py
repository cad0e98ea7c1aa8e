"""The projection seam on SQLite and PostgreSQL: replay equals live, a newer agent's events are
applied once the server understands them, a projection added later backfills by itself."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from edge_agent.wire import EVENT_MODELS
from server.ingest.core import Ingestor
from server.ingest.timefix import BootRef
from server.projections import Run, default_projections, replay
from server.store.schema import (
    climate_notices,
    climate_records,
    climate_summaries,
    commands,
    journal,
    streams,
)
from tests.test_ingest import EPOCH, NOW, TOPIC, batch, summary_event
from tests.test_wire import climate_event


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """What the projections hold, without the surrogate ids a replay renumbers."""
    out = {}
    for table in (climate_records, climate_summaries, climate_notices, commands):
        columns = [c for c in table.c if c.name != "id"]
        with engine.connect() as conn:
            rows = conn.execute(sa.select(*columns)).all()
        out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def varied_stream(ingest: Ingestor, engine: sa.Engine) -> None:
    """Records, a summary, notices, a command result, a gap filled late, clock re-dating."""
    cid = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            commands.insert().values(
                id=cid, agent_id="station-1", site_id="county", kind="ping", message="{}",
                created_at=NOW,
            )
        )  # fmt: skip
    unsynced = json.loads(batch(1, 2, clock_synced=False, occurred_at="1970-01-01T00:01:00+00:00"))
    unsynced["events"][1] = climate_event(
        2,
        kind="climate.state",
        clock_synced=False,
        occurred_at="1970-01-01T00:02:00+00:00",
        mono_s=160.0,
        payload={
            "storeroom": "no1", "state": "alarm", "previous": "normal", "sensor": "no1-a",
            "temperature_c": 31.0, "humidity_pct": 50.0,
        },
    )  # fmt: skip
    ingest.handle(TOPIC, json.dumps(unsynced).encode(), NOW)
    later = json.loads(batch(8))
    later["events"].append(
        climate_event(
            9,
            kind="command.result",
            payload={"command_id": cid, "command_kind": "ping", "ok": True, "detail": "pong"},
        )
    )
    ingest.handle(TOPIC, json.dumps(later).encode(), NOW)  # 3..7 missing: held back
    middle = json.loads(batch(3, occurred_at="2026-11-23T04:10:00+00:00", mono_s=700.0))
    middle["events"].append(summary_event(4, 4))
    ingest.handle(TOPIC, json.dumps(middle).encode(), NOW)


def test_replay_produces_exactly_what_live_ingest_produced(engine: sa.Engine) -> None:
    ingest = Ingestor(engine, "fp")
    varied_stream(ingest, engine)
    live = snapshot(engine)
    assert len(live["climate_records"]) == 3
    assert len(live["climate_notices"]) == 1
    assert len(live["climate_summaries"]) == 1
    result_ok = [c.name for c in commands.c if c.name != "id"].index("result_ok")
    assert live["commands"][0][result_ok] is True
    done = replay(engine, default_projections())
    assert {r.projection for r in done} == {"climate", "commands", "cabinet", "ledger"}, (
        "alerts are live state: not replayed"
    )
    assert snapshot(engine) == live
    replay(engine, default_projections(), agent_id="station-1")
    assert snapshot(engine) == live, "replay is idempotent"


class FutureDoorPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    box: str
    open: bool


class FutureDoorEvent(BaseModel):
    """A kind a newer agent sends before this server knows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: uuid.UUID
    agent_id: str
    seq: int
    span: int = 1
    kind: Literal["cabinet.lamp"]
    occurred_at: Any
    clock_synced: bool
    boot_id: str
    mono_s: float
    payload: FutureDoorPayload


class DoorProjection:
    """What an upgraded server would add in its cabinet domain."""

    name = "doors"
    rebuilt = True
    kinds = frozenset({"cabinet.lamp"})

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bool]] = []

    def apply(self, conn: sa.Connection, run: Run) -> None:
        for e in run.events:
            payload: Any = e.payload
            self.seen.append((run.agent_id, e.seq, payload.open))

    def redate(self, conn: sa.Connection, agent_id: str, boot_id: str, ref: BootRef) -> int:
        return 0

    def reset(self, conn: sa.Connection, agent_id: str, epoch: str) -> None:
        self.seen = [s for s in self.seen if s[0] != agent_id]


def door(seq: int) -> dict[str, Any]:
    return climate_event(seq, kind="cabinet.lamp", payload={"box": "box-1", "open": True})


def test_newer_agent_then_server_upgrade_then_replay_applies_once(engine: sa.Engine) -> None:
    old_server = Ingestor(engine, "fp")
    payload = json.loads(batch(1))
    payload["events"].append(door(2))
    payload["events"].append(climate_event(3))
    result = old_server.handle(TOPIC, json.dumps(payload).encode(), NOW)
    assert (result.not_understood, result.acked_seq) == (1, 3), "kept, and the agent drains"
    with engine.connect() as conn:
        status = conn.execute(sa.select(journal.c.status).where(journal.c.seq == 2)).scalar_one()
    assert status == "unknown"

    models: dict[str, type[BaseModel]] = {**EVENT_MODELS, "cabinet.lamp": FutureDoorEvent}
    doors = DoorProjection()
    upgraded = [*default_projections(), doors]
    done = replay(engine, upgraded, models=models)
    assert doors.seen == [("station-1", 2, True)]
    assert sum(r.now_understood for r in done if r.projection == "doors") == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(streams.c.not_understood)).scalar_one() == 0
    replay(engine, upgraded, models=models)
    assert doors.seen == [("station-1", 2, True)], "applied once, however often replayed"

    live = Ingestor(engine, "fp", projections=upgraded, models=models)
    live.handle(TOPIC, json.dumps({**payload, "events": [door(4)]}).encode(), NOW)
    assert doors.seen == [("station-1", 2, True), ("station-1", 4, True)]


def test_a_projection_added_later_backfills_from_the_journal(engine: sa.Engine) -> None:
    Ingestor(engine, "fp", projections=[]).handle(TOPIC, batch(1, 2, 3), NOW)
    assert snapshot(engine)["climate_records"] == []
    upgraded = Ingestor(engine, "fp")
    upgraded.handle(TOPIC, batch(4), NOW)
    assert snapshot(engine)["climate_records"] == [], "lagging: not applied out of order"
    assert upgraded.catch_up() == 5 * 4, "climate, commands, cabinet, ledger, alerts: 4 each"
    with engine.connect() as conn:
        seqs = conn.execute(sa.select(climate_records.c.seq).order_by(climate_records.c.id))
        assert list(seqs.scalars()) == [1, 2, 3, 4]
    upgraded.handle(TOPIC, batch(5), NOW + timedelta(seconds=1))
    assert len(snapshot(engine)["climate_records"]) == 5, "caught up: applied live again"
    with engine.connect() as conn:
        assert conn.execute(sa.select(streams.c.epoch)).scalar_one() == EPOCH
