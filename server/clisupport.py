"""What every ``edge-server`` command needs: the configuration, the database, the language,
each failing with one clear line and an exit status instead of a traceback."""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from edge_agent.configfile import ConfigError
from server.config import ServerConfig, load_config
from server.i18n import Language


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
