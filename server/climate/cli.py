"""``edge-server climate series|mkt|export|sheet``: a storeroom's climate history, and its
monthly record sheet.

Times are read and shown in ``server.timezone`` (Asia/Shanghai by default). ``--from`` and
``--to`` take a day (``2026-01-31``), a month (``2026-01``) or a time (``2026-01-31 08:00``);
``--to`` given as a day or a month means the end of it, so ``--from 2026-01 --to 2026-12`` is
the whole year. Without them the window is the last 30 days. Every bad input is one line in the
user's language and exit status 2; a database error is one line and status 1 (detail in the
log).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import click
import sqlalchemy as sa

from server.climate import history
from server.clisupport import (
    config_or_exit,
    engine_or_exit,
    exit_with,
    failing,
    language,
    parse_when,
)
from server.config import ServerConfig
from server.i18n import Language, t, table

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

BUCKETS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "1d": 86400, "7d": 7 * 86400}
DEFAULT_DAYS = 30


def window(
    start: str | None, end: str | None, zone: tzinfo, lang: Language, now: datetime
) -> tuple[datetime, datetime]:
    """``[start, end)`` from ``--from`` and ``--to``; the last 30 days when not given."""
    try:
        until = parse_when(end, zone, end=True) if end else now
    except ValueError:
        fail(lang, "hist.bad_time", option="--to", value=end)
    try:
        since = parse_when(start, zone) if start else until - timedelta(days=DEFAULT_DAYS)
    except ValueError:
        fail(lang, "hist.bad_time", option="--from", value=start)
    if since >= until:
        fail(lang, "hist.bad_order")
    return since, until


def fail(lang: Language, key: str, code: int = 2, /, **fields: object) -> NoReturn:
    exit_with(t(key, lang).format(**fields), code)


def _guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """A database error becomes one line for people; its detail goes to the log."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()

        def say(key: str, **fields: object) -> str:
            return t(key, language(config_or_exit(ctx), ctx.params.get("lang"))).format(**fields)

        with failing("climate", say=say, log=log):
            return fn(*args, **kwargs)

    return run


class _Run:
    """What each command needs: configuration, language, zone, the database, the window."""

    def __init__(
        self, ctx: click.Context, lang: str | None, start: str | None, end: str | None
    ) -> None:
        self.config: ServerConfig = config_or_exit(ctx)
        self.lang: Language = language(self.config, lang)
        self.zone = self.config.server.zone
        self.zone_name = self.config.server.timezone
        self.start, self.end = window(start, end, self.zone, self.lang, datetime.now(UTC))
        self.engine = engine_or_exit(self.config)

    def local(self, value: datetime, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return value.astimezone(self.zone).strftime(fmt)

    def check(self, site: str, room: str | None) -> None:
        check_place(self.engine, self.lang, site, room)

    def empty(self, what: str) -> NoReturn:
        fail(
            self.lang, "hist.empty", what=what, start=self.local(self.start),
            end=self.local(self.end), zone=self.zone_name,
        )  # fmt: skip

    def title(self, site: str, room: str) -> str:
        return t("hist.title", self.lang).format(
            site=site, room=room, start=self.local(self.start), end=self.local(self.end),
            zone=self.zone_name,
        )  # fmt: skip


def check_place(engine: sa.Engine, lang: Language, site: str, room: str | None) -> None:
    """Exit 2 with one line when the site or storeroom is not known."""
    if not history.site_known(engine, site):
        fail(lang, "hist.unknown_site", site=site)
    if room is not None and not history.room_known(engine, site, room):
        known = "、" if lang == "zh" else ", "
        found = known.join(history.rooms(engine, site)) or "-"
        fail(lang, "hist.unknown_room", site=site, room=room, known=found)


def _window_options(fn: Callable[P, R]) -> Callable[P, R]:
    for option in reversed(
        (
            click.option("--from", "start", metavar="DATE", help="From (2026-01-01, 2026-01)."),
            click.option("--to", "end", metavar="DATE", help="To, included when a day or month."),
            click.option("--lang", type=click.Choice(["zh", "en"]), default=None),
        )
    ):
        fn = option(fn)
    return fn


def step_text(seconds: int, lang: Language) -> str:
    if seconds % 86400 == 0:
        return t("hist.days", lang).format(n=seconds // 86400)
    if seconds % 3600 == 0:
        return t("hist.hours", lang).format(n=seconds // 3600)
    return t("hist.minutes", lang).format(n=seconds // 60)


@click.command("series")
@click.argument("site")
@click.argument("storeroom")
@_window_options
@click.option("--bucket", default="auto", help="auto, raw, 15m, 1h, 6h, 1d or 7d.")
@click.option("--raw", "raw_values", is_flag=True, help="The transmitters' uncorrected values.")
@click.pass_context
@_guarded
def series(
    ctx: click.Context,
    site: str,
    storeroom: str,
    start: str | None,
    end: str | None,
    lang: str | None,
    bucket: str,
    raw_values: bool,
) -> None:
    """A storeroom's temperature and humidity over a window: min, mean and max per point (every
    record up to 2 days, then 15 min, 1 h, 6 h, 1 day or 1 week points, at most about 1000)."""
    run = _Run(ctx, lang, start, end)
    chosen: history.Bucket
    if bucket in ("auto", "raw"):
        chosen = "auto" if bucket == "auto" else "raw"
    elif bucket in BUCKETS:
        chosen = BUCKETS[bucket]
    else:
        fail(run.lang, "hist.bad_bucket")
    run.check(site, storeroom)
    found = history.series(
        run.engine, site, storeroom, run.start, run.end, bucket=chosen,
        values="raw" if raw_values else "corrected", zone=run.zone,
    )  # fmt: skip
    if not found.points:
        run.empty(f"{site} / {storeroom}")
    lang_ = run.lang
    click.echo(run.title(site, storeroom))
    if found.bucket_s is None:
        click.echo(t("hist.step_raw", lang_).format(records=found.records))
    else:
        click.echo(
            t("hist.step", lang_).format(
                step=step_text(found.bucket_s, lang_), points=len(found.points),
                records=found.records,
            )
        )  # fmt: skip
    if raw_values:
        click.echo(t("hist.raw_values", lang_))
    folded = sum(p.summarised for p in found.points)
    if folded:
        click.echo(t("hist.summarised", lang_).format(n=folded))
    click.echo("")
    click.echo(_series_table(found, run))


def _series_table(found: history.Series, run: _Run) -> str:
    lang = run.lang
    head = f"{t('hist.col.time', lang)} ({run.zone_name})"
    if found.bucket_s is None:
        header = [head, t("sensor", lang), t("temperature", lang), t("humidity", lang)]
        header.append(t("hist.col.note", lang))
        rows = [
            [
                run.local(p.at, "%Y-%m-%d %H:%M:%S"), p.sensor or "",
                f"{p.temperature_mean_c:.1f}", f"{p.humidity_mean_pct:.1f}",
                t("hist.summary_note", lang).format(
                    n=p.records, lo=p.temperature_min_c, hi=p.temperature_max_c
                ) if p.summarised else "",
            ]
            for p in found.points
        ]  # fmt: skip
        return table(header, rows)
    keys = ("records", "t_min", "t_mean", "t_max", "h_min", "h_mean", "h_max")
    header = [head, *(t(f"hist.col.{k}", lang) for k in keys)]
    fmt = "%Y-%m-%d" if found.bucket_s % 86400 == 0 else "%Y-%m-%d %H:%M"
    rows = [
        [
            run.local(p.at, fmt), str(p.records),
            *(f"{v:.1f}" for v in (
                p.temperature_min_c, p.temperature_mean_c, p.temperature_max_c,
                p.humidity_min_pct, p.humidity_mean_pct, p.humidity_max_pct,
            )),
        ]
        for p in found.points
    ]  # fmt: skip
    return table(header, rows)


@click.command("mkt")
@click.argument("site")
@click.argument("storeroom")
@_window_options
@click.pass_context
@_guarded
def mkt(
    ctx: click.Context,
    site: str,
    storeroom: str,
    start: str | None,
    end: str | None,
    lang: str | None,
) -> None:
    """A storeroom's mean kinetic temperature over a window, with its mean, min, max and
    record count (ΔH/R from [climate] mkt_delta_h_over_r_k, 10,000 K by default)."""
    run = _Run(ctx, lang, start, end)
    run.check(site, storeroom)
    found = history.mkt(
        run.engine, site, storeroom, run.start, run.end,
        delta_h_over_r_k=run.config.climate.mkt_delta_h_over_r_k,
    )  # fmt: skip
    if found is None:
        run.empty(f"{site} / {storeroom}")
    lang_ = run.lang
    click.echo(run.title(site, storeroom))
    click.echo(t("hist.mkt", lang_).format(mkt=found.mkt_c, a=found.delta_h_over_r_k))
    click.echo(t("hist.mean", lang_).format(mean=found.mean_c))
    click.echo(t("hist.range", lang_).format(lo=found.min_c, hi=found.max_c))
    click.echo(t("hist.records", lang_).format(n=found.records))
    if found.summarised:
        click.echo(t("hist.summarised", lang_).format(n=found.summarised))


@click.command("export")
@click.argument("site")
@click.argument("storeroom", required=False)
@_window_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    metavar="FILE.csv",
    help="The CSV file to write (UTF-8 with BOM, for Excel).",
)
@click.pass_context
@_guarded
def export(
    ctx: click.Context,
    site: str,
    storeroom: str | None,
    start: str | None,
    end: str | None,
    lang: str | None,
    out: Path,
) -> None:
    """Every climate record of a site (or one storeroom) over a window, raw and corrected,
    times in UTC and local, with the summaries agents folded, as CSV."""
    from server.climate.export import write_csv

    run = _Run(ctx, lang, start, end)
    run.check(site, storeroom)
    what = site if storeroom is None else f"{site} / {storeroom}"
    try:
        written = write_csv(
            run.engine, out, site, storeroom, run.start, run.end, run.zone, run.zone_name,
            run.lang,
        )  # fmt: skip
    except OSError as exc:
        log.debug("climate export: %s", exc)
        fail(run.lang, "hist.unwritable", path=out)
    if written.records + written.summaries == 0:
        run.empty(what)
    click.echo(
        t("hist.exported", run.lang).format(
            records=written.records, summaries=written.summaries, path=out
        )
    )


_MONTH = re.compile(r"^(?P<y>\d{4})-(?P<m>\d{1,2})$")


@click.command("sheet")
@click.argument("site")
@click.argument("storeroom")
@click.option("--month", required=True, metavar="YYYY-MM", help="The month, e.g. 2026-10.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, metavar="FILE.csv",
    help="Write the sheet as CSV (UTF-8 with BOM, for Excel) instead of printing it.",
)  # fmt: skip
@click.option("--lang", type=click.Choice(["zh", "en"]), default=None)
@click.pass_context
@_guarded
def sheet_(
    ctx: click.Context, site: str, storeroom: str, month: str, out: Path | None, lang: str | None
) -> None:
    """The month's temperature and humidity record sheet of a storeroom, as the paper form has
    it: each day's checks at [climate] check_times with the regulating actions taken and the
    reading after them, the day's extremes, every excursion, the month's MKT."""
    from server.climate import sheet

    config = config_or_exit(ctx)
    shown = language(config, lang)
    found = _MONTH.match(month.strip())
    if found is None or not 1 <= int(found["m"]) <= 12:
        fail(shown, "sheet.bad_month", value=month)
    engine = engine_or_exit(config)
    check_place(engine, shown, site, storeroom)
    zone = config.server.zone
    with engine.connect() as conn:
        made = sheet.load(
            conn, site, storeroom, int(found["y"]), int(found["m"]), zone,
            config.alerts.range_for(site, storeroom), config.climate.check_times,
            now=datetime.now(UTC), delta_h_over_r_k=config.climate.mkt_delta_h_over_r_k,
        )  # fmt: skip
    header, rows = sheet.rows(made, shown)
    if out is not None:
        from server.clisupport import csv_file

        try:
            with csv_file(out) as writer:
                writer.writerow(header)
                writer.writerows(rows)
        except OSError as exc:
            log.debug("climate sheet: %s", exc)
            fail(shown, "hist.unwritable", path=out)
        click.echo(t("sheet.written", shown).format(path=out))
        return
    title = t("sheet.title", shown)
    click.echo(title.format(site=site, room=storeroom, year=made.year, month=made.month,
                            zone=config.server.timezone))  # fmt: skip
    lo_t, hi_t = made.limits.temperature_c
    lo_h, hi_h = made.limits.humidity_pct
    click.echo(t("sheet.limits", shown).format(t0=lo_t, t1=hi_t, h0=lo_h, h1=hi_h))
    click.echo(table(header, rows))
    click.echo("\n".join(sheet.excursion_lines(made, shown, zone)))
    mkt_text = "-" if made.mkt_c is None else f"{made.mkt_c:.2f} °C"
    click.echo(t("sheet.mkt", shown).format(mkt=mkt_text))
    click.echo(t("sheet.reviewer", shown))


#: Registered in the ``climate`` group of ``server/cli.py``.
COMMANDS = (series, mkt, export, sheet_)
