"""The climate projection: records, summaries and notices from the journal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from edge_agent.wire import ClimateRecordEvent, ClimateSummaryEvent
from server.ingest.timefix import BootRef
from server.projections import Run, redate_rows
from server.store.db import bulk_insert, db_time, utc
from server.store.schema import climate_notices, climate_records, climate_summaries

#: Climate events a person should see (``climate tail``, and the alerts to come).
NOTICE_KINDS = frozenset(
    {
        "climate.state",
        "climate.sensor_fault",
        "climate.sensor_recovered",
        "climate.alarm_silenced",
        "climate.disagreement",
        "climate.calibration",
    }
)

RECORD_COLUMNS = (
    "agent_id", "epoch", "seq", "site_id", "storeroom", "sensor", "serial", "temperature_c",
    "humidity_pct", "raw_temperature_c", "raw_humidity_pct", "quality", "occurred_at",
    "agent_occurred_at", "clock_synced", "time_corrected", "boot_id", "mono_s",
)  # fmt: skip
SUMMARY_COLUMNS = (
    "agent_id", "epoch", "seq", "site_id", "storeroom", "sensor", "count", "first_at",
    "last_at", "temperature_min_c", "temperature_mean_c", "temperature_max_c",
    "humidity_min_pct", "humidity_mean_pct", "humidity_max_pct", "agent_occurred_at",
    "clock_synced", "time_corrected", "boot_id", "mono_s",
)  # fmt: skip
NOTICE_COLUMNS = (
    "agent_id", "epoch", "seq", "site_id", "kind", "storeroom", "payload", "occurred_at",
    "agent_occurred_at", "clock_synced", "time_corrected", "boot_id", "mono_s",
)  # fmt: skip


class ClimateProjection:
    name = "climate"
    rebuilt = True
    kinds = frozenset({"climate.record", "climate.summary", *NOTICE_KINDS})

    def apply(self, conn: sa.Connection, run: Run) -> None:
        t = db_time(conn)
        records: list[tuple[object, ...]] = []
        summaries: list[tuple[object, ...]] = []
        notices: list[tuple[object, ...]] = []
        agent, epoch, site = run.agent_id, run.epoch, run.site_id
        for e in run.events:
            when, corrected = run.when(e)
            own = t(e.occurred_at)
            if isinstance(e, ClimateRecordEvent):
                p = e.payload
                records.append(
                    (
                        agent, epoch, e.seq, site, p.storeroom, p.sensor, p.serial,
                        p.temperature_c, p.humidity_pct, p.raw_temperature_c, p.raw_humidity_pct,
                        ",".join(p.quality), t(when) if corrected else own, own,
                        e.clock_synced, corrected, e.boot_id, e.mono_s,
                    )
                )  # fmt: skip
            elif isinstance(e, ClimateSummaryEvent):
                shift = when - e.occurred_at
                for m in e.payload.sensors:
                    summaries.append(
                        (
                            agent, epoch, e.seq, site, m.storeroom, m.sensor, m.count,
                            t(m.first_at + shift), t(m.last_at + shift), m.temperature_min_c,
                            m.temperature_mean_c, m.temperature_max_c, m.humidity_min_pct,
                            m.humidity_mean_pct, m.humidity_max_pct, own, e.clock_synced,
                            corrected, e.boot_id, e.mono_s,
                        )
                    )  # fmt: skip
            else:
                payload: Any = e.payload
                notices.append(
                    (
                        agent, epoch, e.seq, site, e.kind, payload.storeroom,
                        payload.model_dump_json(), t(when) if corrected else own, own,
                        e.clock_synced, corrected, e.boot_id, e.mono_s,
                    )
                )  # fmt: skip
        bulk_insert(conn, climate_records, RECORD_COLUMNS, records)
        bulk_insert(conn, climate_summaries, SUMMARY_COLUMNS, summaries)
        bulk_insert(conn, climate_notices, NOTICE_COLUMNS, notices)

    def redate(self, conn: sa.Connection, agent_id: str, boot_id: str, ref: BootRef) -> int:
        fixed = redate_rows(conn, (climate_records, climate_notices), agent_id, boot_id, ref)
        s = climate_summaries
        rows = conn.execute(
            _undated(
                s, agent_id, boot_id, s.c.mono_s, s.c.agent_occurred_at, s.c.first_at, s.c.last_at
            )
        ).all()
        fixes = []
        for rid, mono, own, first, last in rows:
            at = ref.date(mono)
            if at is not None:
                shift: timedelta = at - utc(own)
                fixes.append(
                    {"b_id": rid, "b_first": utc(first) + shift, "b_last": utc(last) + shift}
                )
        if fixes:
            conn.execute(
                _fix(s, first_at=sa.bindparam("b_first"), last_at=sa.bindparam("b_last")), fixes
            )
        return fixed + len(fixes)

    def reset(self, conn: sa.Connection, agent_id: str, epoch: str) -> None:
        for table in (climate_records, climate_summaries, climate_notices):
            conn.execute(table.delete().where(table.c.agent_id == agent_id, table.c.epoch == epoch))


def _undated(table: sa.Table, agent_id: str, boot_id: str, *columns: Any) -> sa.Select[Any]:
    return sa.select(table.c.id, *columns).where(
        table.c.agent_id == agent_id,
        table.c.boot_id == boot_id,
        table.c.clock_synced == sa.false(),
        table.c.time_corrected == sa.false(),
    )


def _fix(table: sa.Table, **values: Any) -> Any:
    return (
        table.update()
        .where(table.c.id == sa.bindparam("b_id"))
        .values(time_corrected=True, **values)
    )
