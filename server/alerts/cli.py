"""``edge-server alerts list|ack|silence|told``: the alerts people have to see, their
acknowledgement (journaled as an entry of the county's stream: who, when, the regulating
action), silences, and who was told."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import click
import sqlalchemy as sa

from server.alerts import queries
from server.alerts.lifecycle import AlertError
from server.alerts.text import TEXTS, say, values_text
from server.clisupport import config_or_exit, engine_or_exit, exit_with, failing, language
from server.config import ServerConfig
from server.i18n import Language, table
from server.ingest.core import Ingestor
from server.store.db import utc

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
    with _database(config, shown) as engine, engine.connect() as conn:
        rows = queries.listed(conn, everything, site)
    if not rows:
        click.echo(say(shown, "none"))
        return
    zone = config.server.zone
    keys = ("no", "key", "rule", "severity", "state", "since", "by", "action")
    click.echo(
        table(
            [TEXTS[f"col.{k}"][shown] for k in keys],
            [
                [
                    str(r.id),
                    r.key,
                    TEXTS.get(f"rule.{r.rule}", {}).get(shown, r.rule)
                    + values_text(json.loads(r.detail)),
                    TEXTS[f"severity.{r.severity}"][shown],
                    TEXTS[f"state.{r.state}"][shown],
                    utc(r.since).astimezone(zone).strftime("%m-%d %H:%M"),
                    r.acked_by or "-",
                    r.action or "-",
                ]
                for r in rows
            ],
        )
    )


@alerts.command("ack")
@click.argument("alert")
@click.option("--by", required=True, help="Who acknowledges (as on the paper record).")
@click.option("--action", default=None, help="The regulating action taken, e.g. 开启除湿机.")
@click.pass_context
def ack(ctx: click.Context, alert: str, by: str, action: str | None) -> None:
    """Acknowledge the open ALERT (its number, as messages show it, or its key): escalation
    stops, and the action goes on the record sheet."""
    config = config_or_exit(ctx)
    shown = language(config)
    with _database(config, shown) as engine:
        try:
            ingestor = Ingestor(engine, config.mqtt.topic_prefix)
            key, number = queries.acknowledge(ingestor, alert, by, action, datetime.now(UTC))
        except ValueError:
            exit_with(say(shown, "ack.invalid"))
    click.echo(say(shown, "acked", key=key, n=number))


@alerts.command("silence")
@click.argument("alert")
@click.option("--for", "length", required=True, help="How long: 30m, 2h, 3d (at most 30d).")
@click.option("--by", required=True, help="Who silences it.")
@click.option("--reason", default=None, help="Why, e.g. 空调检修.")
@click.pass_context
def silence_(ctx: click.Context, alert: str, length: str, by: str, reason: str | None) -> None:
    """Tell nobody of ALERT (a number, a key, or the start of keys ending in ':', such as
    climate.range:town: for every storeroom of the township) for a while; it still fires,
    resolves and is listed."""
    config = config_or_exit(ctx)
    shown = language(config)
    try:
        span = queries.duration(length)
    except ValueError:
        exit_with(say(shown, "silence.duration", given=length))
    with _database(config, shown) as engine, engine.begin() as conn:
        try:
            done = queries.silence_for(conn, alert, span, by, reason, datetime.now(UTC))
        except ValueError:
            exit_with(say(shown, "silence.invalid"))
    until = done.until.astimezone(config.server.zone).strftime("%Y-%m-%d %H:%M")
    click.echo(say(shown, "silenced", match=done.match, until=until, n=done.covers))


@alerts.command("told")
@click.argument("alert")
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.pass_context
def told_(ctx: click.Context, alert: str, lang: str | None) -> None:
    """Who was told of ALERT (its number), when and why, over which channel, delivered or not."""
    config = config_or_exit(ctx)
    shown = language(config, lang)
    if not alert.isdigit():
        exit_with(say(shown, "alert.unknown", alert=alert))
    with _database(config, shown) as engine, engine.connect() as conn:
        rows = queries.told(conn, int(alert))
    if not rows:
        click.echo(say(shown, "told.none"))
        return
    zone = config.server.zone
    keys = ("told", "level", "reason", "channel", "recipient", "delivery")
    click.echo(
        table(
            [TEXTS[f"col.{k}"][shown] for k in keys],
            [
                [
                    utc(r.told_at).astimezone(zone).strftime("%m-%d %H:%M"),
                    str(r.level),
                    TEXTS[f"why.{r.reason}"][shown],
                    r.channel,
                    r.recipient or "-",
                    TEXTS[f"delivery.{r.status}"][shown]
                    + (f" ×{r.attempts}" if r.attempts > 1 else ""),
                ]
                for r in rows
            ],
        )
    )


@contextlib.contextmanager
def _database(config: ServerConfig, shown: Language) -> Iterator[sa.Engine]:
    """The store; a database error or an alert's refusal ends the command with one line."""
    engine = engine_or_exit(config)
    with failing("alerts", AlertError, say=functools.partial(say, shown), log=log):
        yield engine
