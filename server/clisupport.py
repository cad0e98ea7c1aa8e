"""What every ``edge-server`` command needs: the configuration, the database, the language,
times as people write them, each failing with one clear line and an exit status instead of a
traceback (``failing``)."""

from __future__ import annotations

import contextlib
import csv
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, NoReturn, Protocol, cast

import click
import sqlalchemy as sa

from edge_agent.configfile import ConfigError
from server.config import ServerConfig, load_config
from server.i18n import Language, t

_log = logging.getLogger(__name__)


def config_or_exit(ctx: click.Context) -> ServerConfig:
    """The configuration named by ``--config`` (the root context's object); exit 2 if invalid."""
    path: Path = ctx.find_root().obj
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def engine_or_exit(config: ServerConfig, migrate: bool = False) -> sa.Engine:
    """The database; only ``run`` and ``db upgrade`` create or migrate it."""
    from server.store.db import StoreError, open_current, open_store

    try:
        return (open_store if migrate else open_current)(config.database.url)
    except (StoreError, OSError) as exc:
        click.echo(f"database: {exc}", err=True)
    except (sa.exc.ArgumentError, ValueError) as exc:
        click.echo(f"database: database.url is not a database URL ({exc})", err=True)
    except ImportError as exc:
        click.echo(f"database: no driver ({exc.name}): pip install '.[postgres]'", err=True)
    sys.exit(1)


def language(config: ServerConfig, lang: str | None = None) -> Language:
    """``--lang`` when given, else ``server.language``: Simplified Chinese unless English."""
    return "en" if (lang or config.server.language) == "en" else "zh"


@contextlib.contextmanager
def csv_file(path: Path) -> Iterator[Any]:
    """A ``csv.writer`` onto ``path`` for people's spreadsheets (UTF-8 with a byte-order mark,
    which Excel needs to read Chinese), written through a temporary file beside it, so a failure
    leaves no half-written file. Raises OSError when it cannot be written."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8-sig", newline="") as out:
            yield csv.writer(out)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def exit_with(line: str, code: int = 2) -> NoReturn:
    """End the command with one line on standard error and status ``code``."""
    click.echo(line, err=True)
    sys.exit(code)


class Refusal(Protocol):
    """A domain's refusal (``LedgerError``, ``RegistryError``, ``UserError``, ``AlertError``):
    ``key`` names the text people read, ``fields`` fill it."""

    key: str
    fields: dict[str, object]


@contextlib.contextmanager
def failing(
    prefix: str,
    *errors: type[Exception],
    code: int = 2,
    say: Callable[..., str] | None = None,
    log: logging.Logger = _log,
) -> Iterator[None]:
    """One of ``errors`` ends the command with one line and status ``code``, never a traceback.

    Without ``say``, the line is ``PREFIX: the error's words``, for errors written for people
    (a broker account, a file). With ``say`` (``say(key, **fields)``: the group's texts in the
    user's language), ``errors`` are refusals (``Refusal``) and the line is their text; a
    database error ends the command too, as ``say("db.failed")`` and status 1, its detail logged
    to ``log`` as ``PREFIX: database error: …``, since what a driver says helps nobody at the
    desk."""
    try:
        yield
    except errors as exc:
        if say is None:
            exit_with(f"{prefix}: {exc}", code)
        refused = cast(Refusal, exc)
        exit_with(say(refused.key, **refused.fields), code)
    except sa.exc.SQLAlchemyError as exc:
        if say is None:
            raise
        log.error("%s: database error: %s", prefix, exc)
        exit_with(say("db.failed"), 1)


#: How a time may be written on the command line: a month, a day, or a day and a time.
_WHEN = re.compile(
    r"^(?P<y>\d{4})-(?P<m>\d{1,2})(?:-(?P<d>\d{1,2})"
    r"(?:[ T](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?)?)?$"
)


def parse_when(text: str, zone: tzinfo, end: bool = False) -> datetime:
    """A time the user wrote, in ``zone``, as UTC. A month or a day given as an ``end`` is the
    end of it (the start of the next), so the window includes it. ValueError if not a time."""
    found = _WHEN.match(text.strip())
    if found is None:
        raise ValueError(text)
    g = found.groupdict()
    y, m = int(g["y"]), int(g["m"])
    if g["d"] is None:
        local = datetime(y, m, 1)
        if end:
            local = datetime(y + m // 12, m % 12 + 1, 1)
    else:
        local = datetime(y, m, int(g["d"]), int(g["H"] or 0), int(g["M"] or 0), int(g["S"] or 0))
        if end and g["H"] is None:
            local += timedelta(days=1)
    return local.replace(tzinfo=zone).astimezone(UTC)


def parse_time(text: str, zone: tzinfo) -> datetime:
    """A moment as ``parse_when`` reads it, or in ISO 8601 as a script writes it
    (``2026-10-10T08:00:00+08:00``; in ``zone`` without an offset), as UTC. ValueError if not
    a time."""
    try:
        return parse_when(text, zone)
    except ValueError:
        given = datetime.fromisoformat(text.strip())
    return (given if given.tzinfo else given.replace(tzinfo=zone)).astimezone(UTC)


def now_or_exit(given: str | None, zone: tzinfo, lang: Language, option: str = "--now") -> datetime:
    """``--now`` as given, so a script or a test asks as of a time; the clock's when not given.
    Exit 2 with one line when it is not a time."""
    if given is None:
        return datetime.now(UTC)
    try:
        return parse_time(given, zone)
    except ValueError:
        exit_with(t("hist.bad_time", lang).format(option=option, value=given))


class LazyGroup(click.Group):
    """A group whose commands, named with ``"module:attribute"``, are imported when one is
    run (or listed by ``--help``): ``edge-server stock`` does not import the alerts' channels
    and the cards' registry just to start, and each command starts sooner."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            found = getattr(importlib.import_module(module), attribute)
            assert isinstance(found, click.Command), self.lazy[cmd_name]
            return found
        return super().get_command(ctx, cmd_name)
