"""``edge-server verify`` and ``edge-server backup``.

What people read is in ``server.language`` (Simplified Chinese by default) or ``--lang``, never
a library's error text: that goes to the log. Exit status: 0 done and sound, 1 broken or
failed, 2 a request that cannot be done as asked.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import NoReturn

import click

from server.clisupport import config_or_exit, engine_or_exit, exit_with, failing, language
from server.i18n import Language, t
from server.integrity.verify import ChainReport, Report, UnknownAgent
from server.integrity.verify import verify as verify_chains

log = logging.getLogger(__name__)

_LANG = click.option("--lang", type=click.Choice(["zh", "en"]), default=None)


def _say(lang: Language, key: str, /, **fields: object) -> str:
    return t(key, lang).format(**fields)


def _fail(lang: Language, key: str, code: int, /, **fields: object) -> NoReturn:
    exit_with(_say(lang, key, **fields), code)


def describe(chain: ChainReport, lang: Language) -> str:
    """One line for one agent's chain: intact, or its first broken record and what is wrong."""
    p = chain.problem
    if p is None:
        return _say(lang, "verify.ok", agent=chain.agent_id, n=chain.messages)
    return _say(
        lang,
        f"verify.{p.kind}.{p.reason}",
        agent=chain.agent_id,
        position=p.position,
        message=p.message_id,
        head=p.head,
        epoch=p.epoch,
        seq=p.seq,
    )


def summary(report: Report, lang: Language) -> str:
    n = len(report.chains)
    if not n:
        return t("verify.none", lang)
    if report.ok:
        return _say(lang, "verify.all_ok", n=n)
    return _say(lang, "verify.broken", bad=len(report.broken), n=n)


@click.command()
@click.option("--agent", default=None, help="Only this agent's chain (e.g. county).")
@_LANG
@click.pass_context
def verify(ctx: click.Context, agent: str | None, lang: str | None) -> None:
    """Check the journal's hash chains; name each chain's first altered, missing or inserted
    record. Exit 0 when every chain is intact, 1 when one is not. Safe while ingest runs."""
    config = config_or_exit(ctx)
    lang_ = language(config, lang)
    engine = engine_or_exit(config)
    with failing("verify", say=functools.partial(_say, lang_), log=log):
        try:
            report = verify_chains(engine, agent)
        except UnknownAgent:
            _fail(lang_, "verify.unknown_agent", 2, agent=agent)
    for chain in report.chains:
        click.echo(describe(chain, lang_))
    click.echo(summary(report, lang_))
    sys.exit(0 if report.ok else 1)


#: Exit status per ``BackupError.reason``: 2 for what cannot be done as asked.
_BAD_REQUEST = frozenset({"postgresql", "unwritable"})


@click.command()
@click.option(
    "--to",
    "directory",
    default=None,
    metavar="DIR",
    help="Where to put the backup (default: [backup] directory).",
)
@_LANG
@click.pass_context
def backup(ctx: click.Context, directory: str | None, lang: str | None) -> None:
    """Copy the SQLite store consistently (also while ingest runs) to
    server-YYYYMMDD-HHMMSS.db, check the copy (integrity and hash chains), and delete backups
    older than [backup] retention_days. PostgreSQL: pg_dump (deploy/README.md)."""
    from server.integrity.backup import BackupError, sqlite_file
    from server.integrity.backup import backup as make_backup

    config = config_or_exit(ctx)
    lang_ = language(config, lang)
    if sqlite_file(config.database.url) is None:
        _fail(lang_, "backup.postgresql", 2)
    target = Path(directory) if directory else config.backup.directory
    if target is None:
        _fail(lang_, "backup.no_directory", 2)
    engine_or_exit(config).dispose()  # the store exists and has this version's schema
    days = config.backup.retention_days
    try:
        result = make_backup(config.database.url, target, days, config.server.zone)
    except BackupError as exc:
        if exc.detail:
            log.error("backup: %s", exc)
        _fail(lang_, f"backup.{exc.reason}", 2 if exc.reason in _BAD_REQUEST else 1, path=exc.path)
    if not result.report.ok:
        for chain in result.report.broken:
            click.echo(describe(chain, lang_))
        _fail(lang_, "backup.broken", 1, path=result.path, bad=len(result.report.broken))
    records = sum(c.messages for c in result.report.chains)
    click.echo(_say(lang_, "backup.done", path=result.path, size=result.size, n=records))
    if result.removed:
        click.echo(_say(lang_, "backup.removed", n=len(result.removed), days=days))
