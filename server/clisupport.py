"""What every ``edge-server`` command needs: the configuration, the database, the language,
each failing with one clear line and an exit status instead of a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

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
