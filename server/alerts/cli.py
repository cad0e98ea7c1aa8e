"""``edge-server alerts list|ack``: the alerts people have to see, and their acknowledgement
(journaled as an entry of the county's stream: who, when, the regulating action)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

import click
import sqlalchemy as sa

from server.alerts.entries import Acknowledgement
from server.alerts.lifecycle import OPEN, AlertError
from server.alerts.projection import check_ack
from server.alerts.text import TEXTS, say
from server.clisupport import config_or_exit, engine_or_exit, language
from server.i18n import table
from server.ingest.core import Ingestor
from server.store.schema import alerts as alerts_table

log = logging.getLogger(__name__)


@click.group()
def alerts() -> None:
    """Alerts: what is wrong now, and its acknowledgement with the action taken."""


@alerts.command("list")
@click.option("--all", "everything", is_flag=True, help="Resolved ones too (the last 200).")
@click.option("--site", default=None)
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.pass_context
def list_(ctx: click.Context, everything: bool, site: str | None, lang: str | None) -> None:
    """Open alerts (firing and acknowledged), the most severe and oldest first."""
    config = config_or_exit(ctx)
    shown = language(config, lang)
    a = alerts_table
    query = sa.select(a)
    if not everything:
        query = query.where(a.c.state.in_([str(s) for s in OPEN]))
    if site is not None:
        query = query.where(a.c.site == site)
    query = query.order_by(a.c.severity, a.c.since).limit(200)
    engine = engine_or_exit(config)
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(query))
    except sa.exc.SQLAlchemyError as exc:
        log.error("alerts: database error: %s", exc)
        click.echo(say(shown, "db.failed"), err=True)
        sys.exit(1)
    if not rows:
        click.echo(say(shown, "none"))
        return
    zone = config.server.zone
    keys = ("key", "rule", "severity", "state", "since", "by", "action")
    click.echo(
        table(
            [TEXTS[f"col.{k}"][shown] for k in keys],
            [
                [
                    r.key,
                    TEXTS.get(f"rule.{r.rule}", {}).get(shown, r.rule) + _detail(r.detail),
                    TEXTS[f"severity.{r.severity}"][shown],
                    TEXTS[f"state.{r.state}"][shown],
                    r.since.astimezone(zone).strftime("%m-%d %H:%M"),
                    r.acked_by or "-",
                    r.action or "-",
                ]
                for r in rows
            ],
        )
    )


def _detail(text: str) -> str:
    detail = json.loads(text)
    if "temperature_c" in detail:
        return f" {detail['temperature_c']:.1f} °C {detail.get('humidity_pct', 0):.0f} %RH"
    if "state" in detail:
        return f" {detail['state']}"
    return ""


@alerts.command("ack")
@click.argument("key")
@click.option("--by", required=True, help="Who acknowledges (as on the paper record).")
@click.option("--action", default=None, help="The regulating action taken, e.g. 开启除湿机.")
@click.pass_context
def ack(ctx: click.Context, key: str, by: str, action: str | None) -> None:
    """Acknowledge the open alert KEY (as alerts list shows it): escalation stops, and the action
    goes on the record sheet."""
    config = config_or_exit(ctx)
    shown = language(config)
    engine = engine_or_exit(config)
    try:
        entry = Acknowledgement(key=key, by=by, action=action)
    except ValueError:
        click.echo("--by, --action: ?", err=True)
        sys.exit(2)

    def make(conn: sa.Connection) -> list[tuple[str, Acknowledgement]]:
        check_ack(conn, entry)
        return [("alerts.ack", entry)]

    try:
        [number] = Ingestor(engine, config.mqtt.topic_prefix).enter(make, datetime.now(UTC))
    except AlertError as exc:
        click.echo(say(shown, exc.key, **exc.fields), err=True)
        sys.exit(2)
    except sa.exc.SQLAlchemyError as exc:
        log.error("alerts: database error: %s", exc)
        click.echo(say(shown, "db.failed"), err=True)
        sys.exit(1)
    click.echo(say(shown, "acked", key=key, n=number))
