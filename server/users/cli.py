"""``edge-server users add|list|passwd|disable|enable|token|revoke``: the people who use the
dashboard and the API. The first administrator is made here; later ones on the dashboard too."""

from __future__ import annotations

import contextlib
import functools
import getpass
import logging
import sys
from datetime import UTC, datetime

import click

from server.clisupport import config_or_exit, engine_or_exit, exit_with, failing, language
from server.i18n import Language, table
from server.users import store
from server.users.roles import Role
from server.users.text import TEXTS, say

log = logging.getLogger(__name__)


@click.group()
def users() -> None:
    """People who use the dashboard and the API: role, scope, password, tokens."""


def _refusals(shown: Language) -> contextlib.AbstractContextManager[None]:
    """A refused operation or a database error ends the command with one line."""
    return failing("users", store.UserError, say=functools.partial(say, shown), log=log)


def _password(shown: Language, from_stdin: bool) -> str:
    if from_stdin:
        given = sys.stdin.readline().rstrip("\r\n")
        if not given:
            exit_with(say(shown, "password.empty_stdin"))
        return given
    first = getpass.getpass(say(shown, "password.prompt") + ": ")
    if getpass.getpass(say(shown, "password.again") + ": ") != first:
        exit_with(say(shown, "password.mismatch"))
    return first


_STDIN = click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input's first line."
)


@users.command("add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice([str(r) for r in Role]), required=True, help="What they may do."
)
@click.option("--scope", required=True, help="Their place in the levels (a site), or * for all.")
@click.option("--display", default=None, help="The name shown, e.g. 张三.")
@click.option("--by", default="cli", show_default=True, help="Who adds them (for the record).")
@_STDIN
@click.pass_context
def add(ctx: click.Context, name: str, role: str, scope: str, display: str | None, by: str,
        password_stdin: bool) -> None:  # fmt: skip
    """Add a person who logs in as NAME."""
    config = config_or_exit(ctx)
    shown = language(config)
    engine = engine_or_exit(config)
    with _refusals(shown):
        store.check_name(name)
        password = _password(shown, password_stdin)
        with engine.begin() as conn:
            user = store.add(conn, name, role, scope, password, by, datetime.now(UTC), display)
    click.echo(say(shown, "user.added", name=user.name, role=user.role, scope=user.scope))


@users.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Everyone, with role, scope and state."""
    config = config_or_exit(ctx)
    shown = language(config)
    engine = engine_or_exit(config)
    with _refusals(shown), engine.connect() as conn:
        found = store.listed(conn)
    if not found:
        click.echo(say(shown, "user.none"))
        return
    keys = ("name", "display", "role", "scope", "state")
    rows = [
        [u.name, u.display, TEXTS[f"role.{u.role}"][shown], u.scope,
         TEXTS["state.disabled" if u.disabled else "state.active"][shown]]
        for u in found
    ]  # fmt: skip
    click.echo(table([TEXTS[f"col.{k}"][shown] for k in keys], rows))


@users.command("passwd")
@click.argument("name")
@click.option("--by", default="cli", show_default=True)
@_STDIN
@click.pass_context
def passwd(ctx: click.Context, name: str, by: str, password_stdin: bool) -> None:
    """Set NAME's password; their browser sessions end."""
    config = config_or_exit(ctx)
    shown = language(config)
    engine = engine_or_exit(config)
    with _refusals(shown):
        with engine.connect() as conn:
            store.find(conn, name)
        password = _password(shown, password_stdin)
        with engine.begin() as conn:
            store.set_password(conn, name, password, by, datetime.now(UTC))
    click.echo(say(shown, "user.password_set", name=name))


def _switch(disabled: bool) -> click.Command:
    @click.command("disable" if disabled else "enable")
    @click.argument("name")
    @click.option("--by", default="cli", show_default=True)
    @click.pass_context
    def switch(ctx: click.Context, name: str, by: str) -> None:
        config = config_or_exit(ctx)
        shown = language(config)
        engine = engine_or_exit(config)
        with _refusals(shown), engine.begin() as conn:
            store.set_disabled(conn, name, disabled, by, datetime.now(UTC))
        click.echo(say(shown, "user.disabled" if disabled else "user.enabled", name=name))

    switch.help = (
        "Disable NAME: sessions end, tokens stop working (nothing is deleted)."
        if disabled
        else "Enable NAME again."
    )
    return switch


users.add_command(_switch(True))
users.add_command(_switch(False))


@users.command("token")
@click.argument("name")
@click.option("--label", required=True, help="What the token is for, e.g. 'city-report'.")
@click.option("--by", default="cli", show_default=True)
@click.pass_context
def token(ctx: click.Context, name: str, label: str, by: str) -> None:
    """Make an API token that acts as NAME (sent as 'Authorization: Bearer TOKEN')."""
    config = config_or_exit(ctx)
    shown = language(config)
    engine = engine_or_exit(config)
    with _refusals(shown), engine.begin() as conn:
        made = store.make_token(conn, name, label, by, datetime.now(UTC))
    click.echo(say(shown, "token.made"), err=True)
    click.echo(made)


@users.command("revoke")
@click.argument("name")
@click.option("--label", default=None, help="Only the tokens with this label.")
@click.option("--by", default="cli", show_default=True)
@click.pass_context
def revoke(ctx: click.Context, name: str, label: str | None, by: str) -> None:
    """Revoke NAME's API tokens."""
    config = config_or_exit(ctx)
    shown = language(config)
    engine = engine_or_exit(config)
    with _refusals(shown), engine.begin() as conn:
        n = store.revoke_tokens(conn, name, label, by, datetime.now(UTC))
    click.echo(say(shown, "token.revoked", n=n))
