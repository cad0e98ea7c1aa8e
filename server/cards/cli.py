"""``edge-server cards ...``: the card registry from the command line.

A card's number (``--uid``, ``--id-number``, a desk reader, a CSV file) is hashed the moment it
is read (``identify``); only its pseudonym, shortened, is ever printed. What people read is in
``server.language`` (Simplified Chinese by default), never a library's error text; a database
error is one line, its detail goes to the log.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar, cast

import click
import sqlalchemy as sa

from edge_agent.wire import GuestPolicy, QuotaRule
from server.cards import queries, registry
from server.cards.identify import (
    ROLES,
    card_key,
    holder_of,
    make_key,
    of_typed_id,
    of_typed_uid,
    read_csv,
    valid_ident,
)
from server.cards.reader import FORMATS, Format, ReaderError, read_card
from server.cards.registry import Issue, RegistryError, Role, Status
from server.clisupport import config_or_exit, engine_or_exit, exit_with, failing, language
from server.config import ServerConfig
from server.i18n import Language, t, table

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

#: Hex digits of a pseudonym shown to people.
SHOWN = 12


def short(pseudonym: str) -> str:
    return pseudonym[:SHOWN]


def say(lang: Language, key: str, /, **fields: object) -> str:
    return t(key, lang).format(**fields)


def fail(lang: Language, key: str, code: int = 2, /, **fields: object) -> NoReturn:
    exit_with(say(lang, key, **fields), code)


class _Ctx:
    """The configuration, its language and (opened on first use) the database."""

    def __init__(self, ctx: click.Context) -> None:
        self.config: ServerConfig = config_or_exit(ctx)
        self.lang: Language = language(self.config)
        self._engine: sa.Engine | None = None

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = engine_or_exit(self.config)
        return self._engine


def _guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a registry refusal or a database error into one line for people."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = click.get_current_context()
        lang = _language_only(ctx)
        with failing("cards", RegistryError, say=functools.partial(say, lang), log=log):
            try:
                return fn(*args, **kwargs)
            except ReaderError as exc:
                fail(lang, exc.key, 1, **ctx.meta.get("reader", {}))
            except sa.exc.SQLAlchemyError as exc:
                if getattr(getattr(exc, "orig", None), "sqlstate", None) == "42501":
                    fail(lang, "holder.denied", 1)
                raise

    return run


def _language_only(ctx: click.Context) -> Language:
    """The configured language when the file exists (``make-key`` may come before it)."""
    path: Path = ctx.find_root().obj
    return language(config_or_exit(ctx)) if path.exists() else "zh"


@click.group()
def cards() -> None:
    """The card registry: cards by pseudonym, quota rules, guest policy, holders."""


@cards.command("make-key")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.pass_context
@_guarded
def make_key_cmd(ctx: click.Context, out: Path) -> None:
    """Write a new county card key (64 hex digits, mode 0600) and print its key id."""
    key = make_key(out)
    click.echo(say(_language_only(ctx), "key.made", path=out, key_id=key.key_id))


def _card_options(fn: Callable[P, R]) -> Callable[P, R]:
    """``--uid`` and ``--id-number`` given alone ask for the number, typed unseen (or read from
    standard input), so it stays out of the shell's history and the process list."""
    fn = click.option(
        "--uid", is_flag=False, flag_value="-", default=None,
        help="The card's UID in hex; given alone, it is asked for and typed unseen.",
    )(fn)  # fmt: skip
    return click.option(
        "--id-number", is_flag=False, flag_value="-", default=None,
        help="An 18-character ID number; given alone, it is asked for and typed unseen.",
    )(fn)  # fmt: skip


def _secret(value: str, prompt: str) -> str:
    if value != "-":
        return value
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return str(click.prompt(prompt, hide_input=True, err=True))


def _pseudonym_of(c: _Ctx, uid: str | None, id_number: str | None) -> str:
    key = card_key(c.config.cards.key_file)
    if uid is not None:
        pseudonym = of_typed_uid(key, _secret(uid, t("prompt.uid", c.lang)))
    else:
        assert id_number is not None
        pseudonym = of_typed_id(key, _secret(id_number, t("prompt.id", c.lang)))
    if "-" not in (uid, id_number):
        click.echo(say(c.lang, "card.number_in_history"), err=True)
    return pseudonym


def _one_of(lang: Language, options: str, *given: object) -> None:
    if sum(g is not None for g in given) != 1:
        fail(lang, "card.one_of", options=options)


@cards.command("issue")
@_card_options
@click.option("--reader", default=None, metavar="DEVICE", help="Read the card on a desk reader.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="hex-line", show_default=True)
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 600), default=30.0)
@click.option("--reversed", "reversed_uid", is_flag=True, help="The reader sends UIDs LSB first.")
@click.option("--role", type=click.Choice(ROLES), default=None, help="Default: villager.")
@click.option("--group", default=None, help="Default: default.")
@click.option("--name", default=None)
@click.option("--phone", default=None)
@click.option("--note", default=None)
@click.pass_context
@_guarded
def issue(
    ctx: click.Context,
    uid: str | None,
    id_number: str | None,
    reader: str | None,
    fmt: str,
    baud: int,
    timeout_s: float,
    reversed_uid: bool,
    role: str | None,
    group: str | None,
    name: str | None,
    phone: str | None,
    note: str | None,
) -> None:
    """Register a card (or make a lost or revoked one active again)."""
    c = _Ctx(ctx)
    _one_of(c.lang, "--uid, --id-number, --reader", uid, id_number, reader)
    if group is not None and not valid_ident(group):
        fail(c.lang, "bad.ident", what="--group")
    holder = holder_of(name, phone, note)
    if reader is not None:
        ctx.meta["reader"] = {"device": reader, "format": fmt, "seconds": f"{timeout_s:g}"}
        key = card_key(c.config.cards.key_file)
        engine = c.engine  # opened (or refused) before anyone waits at the reader
        pseudonym = read_card(
            reader, cast(Format, fmt), key, timeout_s, baud, reversed_uid,
            on_open=lambda: click.echo(say(c.lang, "reader.wait"), err=True),
        )  # fmt: skip
    else:
        pseudonym = _pseudonym_of(c, uid, id_number)
        engine = c.engine
    wanted = Issue(pseudonym, cast(Role | None, role), group, holder)
    [done] = registry.issue(engine, [wanted], datetime.now(UTC))
    role_text = t(f"role.{done.role}", c.lang)
    click.echo(say(c.lang, f"card.{done.change}", card=short(pseudonym), role=role_text,
                   group=done.group, version=done.version))  # fmt: skip
    if holder is not None:
        click.echo(say(c.lang, "card.holder_kept"))


def _status_command(status: Status) -> Callable[..., None]:
    @_card_options
    @click.option("--card", default=None, metavar="PSEUDONYM", help="As cards list shows it.")
    @click.pass_context
    @_guarded
    def mark(ctx: click.Context, uid: str | None, id_number: str | None, card: str | None) -> None:
        c = _Ctx(ctx)
        _one_of(c.lang, "--uid, --id-number, --card", uid, id_number, card)
        if card is not None:
            pseudonym = queries.find_card(c.engine, card)
        else:
            pseudonym = _pseudonym_of(c, uid, id_number)
        done = registry.set_status(c.engine, pseudonym, status, datetime.now(UTC))
        what = t(f"status.{status}", c.lang)
        key = "card.status_same" if done.change == "unchanged" else "card.status_set"
        click.echo(say(c.lang, key, card=short(pseudonym), status=what, version=done.version))

    return mark


cards.command("revoke", help="Revoke a card: every box refuses it.")(_status_command("revoked"))
cards.command("lost", help="Report a card lost: every box refuses it.")(_status_command("lost"))


@cards.command("list")
@click.option("--group", default=None)
@click.option("--status", type=click.Choice(("active", "lost", "revoked")), default=None)
@click.pass_context
@_guarded
def list_cards(ctx: click.Context, group: str | None, status: str | None) -> None:
    """Registered cards: pseudonym (shortened), status, role, group, version."""
    c = _Ctx(ctx)
    found = queries.list_cards(c.engine, group, status)
    version = queries.registry_head(c.engine).version
    if not found:
        click.echo(t("cards.none", c.lang))
    else:
        zone = c.config.server.zone
        header = [t(f"col.{k}", c.lang) for k in ("card", "status", "role", "group", "version")]
        header.append(t("col.updated", c.lang))
        rows = [
            [short(r.pseudonym), t(f"status.{r.status}", c.lang), t(f"role.{r.role}", c.lang),
             r.group, str(r.version), r.updated_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")]
            for r in found
        ]  # fmt: skip
        click.echo(table(header, rows))
    click.echo(say(c.lang, "cards.total", n=len(found), version=version))


@cards.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
@_guarded
def import_cards(ctx: click.Context, file: Path) -> None:
    """Register the cards of a CSV file (uid or id_number, role, group; name, phone, note)."""
    c = _Ctx(ctx)
    found = read_csv(file, card_key(c.config.cards.key_file))
    for bad in found.bad:
        why = say(c.lang, bad.key, **bad.fields)
        click.echo(say(c.lang, "import.line", line=bad.line, why=why), err=True)
    if found.bad:
        fail(c.lang, "import.refused", n=len(found.bad))
    if not found.cards:
        fail(c.lang, "import.empty")
    done = registry.issue(c.engine, found.cards, datetime.now(UTC))
    counts = {k: sum(o.change == k for o in done) for k in registry.CHANGES}
    version = max((o.version for o in done), default=0)
    click.echo(say(c.lang, "import.done", n=len(done), version=version, **counts))
    click.echo(t("import.wipe", c.lang))


@cards.group("rule")
def rule() -> None:
    """Quota rules: how much a card of a group may take per period."""


@rule.command("set")
@click.argument("group")
@click.argument("product_group")
@click.argument("quantity", type=int)
@click.argument("period_days", type=int)
@click.option("--site", default=None, help="Only at this site (default: county-wide).")
@click.pass_context
@_guarded
def rule_set(
    ctx: click.Context,
    group: str,
    product_group: str,
    quantity: int,
    period_days: int,
    site: str | None,
) -> None:
    """At most QUANTITY of PRODUCT_GROUP per PERIOD_DAYS for a card of GROUP."""
    c = _Ctx(ctx)
    for what, value in (("GROUP", group), ("PRODUCT_GROUP", product_group), ("--site", site)):
        if value is not None and not valid_ident(value):
            fail(c.lang, "bad.ident", what=what)
    _in_range(c.lang, "QUANTITY", quantity, 0, 10_000)
    _in_range(c.lang, "PERIOD_DAYS", period_days, 1, 366)
    new = QuotaRule(group=group, product_group=product_group, quantity=quantity,
                    period_days=period_days, site=site)  # fmt: skip
    version = registry.set_rule(c.engine, new, datetime.now(UTC))
    click.echo(_rule_text(c.lang, new, version))


def _in_range(lang: Language, what: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        fail(lang, "bad.range", what=what, lo=lo, hi=hi)


def _rule_text(lang: Language, r: QuotaRule, version: int) -> str:
    where = say(lang, "rule.site", site=r.site) if r.site else t("rule.county", lang)
    return say(lang, "rule.set", group=r.group, quantity=r.quantity, product=r.product_group,
               period=r.period_days, where=where, version=version)  # fmt: skip


@rule.command("list")
@click.pass_context
@_guarded
def rule_list(ctx: click.Context) -> None:
    """Every quota rule, and the guest policy."""
    c = _Ctx(ctx)
    found = queries.all_rules(c.engine)
    if not found:
        click.echo(t("rules.none", c.lang))
    else:
        keys = ("group", "product_group", "quantity", "period", "version")
        header = [t(f"col.{k}", c.lang) for k in keys] + [t("site", c.lang)]
        rows = [
            [r.rule.group, r.rule.product_group, str(r.rule.quantity), str(r.rule.period_days),
             str(r.version), r.rule.site or t("rule.county", c.lang)]
            for r in found
        ]  # fmt: skip
        click.echo(table(header, rows))
    click.echo(_guest_text(c.lang, queries.registry_head(c.engine).guest))


def _guest_text(lang: Language, guest: GuestPolicy) -> str:
    if guest.mode == "refuse":
        return t("guest.refuse", lang)
    return say(lang, "guest.quota", quantity=guest.quantity, period=guest.period_days)


@cards.group("guest")
def guest() -> None:
    """What a card the registry does not know may take."""


@guest.command("refuse")
@click.pass_context
@_guarded
def guest_refuse(ctx: click.Context) -> None:
    """Unregistered cards take nothing."""
    _set_guest(_Ctx(ctx), GuestPolicy(mode="refuse"))


@guest.command("quota")
@click.argument("quantity", type=int)
@click.argument("period_days", type=int)
@click.pass_context
@_guarded
def guest_quota(ctx: click.Context, quantity: int, period_days: int) -> None:
    """Unregistered cards take at most QUANTITY per PERIOD_DAYS."""
    c = _Ctx(ctx)
    _in_range(c.lang, "QUANTITY", quantity, 0, 100)
    _in_range(c.lang, "PERIOD_DAYS", period_days, 1, 366)
    _set_guest(c, GuestPolicy(mode="quota", quantity=quantity, period_days=period_days))


def _set_guest(c: _Ctx, policy: GuestPolicy) -> None:
    version = registry.set_guest(c.engine, policy, datetime.now(UTC))
    click.echo(say(c.lang, "guest.set", policy=_guest_text(c.lang, policy), version=version))


@cards.command("holder")
@click.argument("card")
@click.pass_context
@_guarded
def holder(ctx: click.Context, card: str) -> None:
    """Who holds CARD (a pseudonym as cards list shows it): administrators only."""
    c = _Ctx(ctx)
    pseudonym = queries.find_card(c.engine, card)
    found = queries.holder(c.engine, pseudonym)
    log.info("holder of card %s looked up (%s)", short(pseudonym), "kept" if found else "none")
    if found is None:
        click.echo(t("holder.none", c.lang))
        return
    click.echo(say(c.lang, "holder.shown", name=found.name or "-", phone=found.phone or "-",
                   note=found.note or "-"))  # fmt: skip
