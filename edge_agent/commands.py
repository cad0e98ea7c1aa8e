"""Commands from the server: applied once each, whatever the broker delivers twice.

A command's id is recorded in this domain's table in the outbox file, in the same transaction
as its result event (``AsyncOutbox.transact``), so the result reaches the server exactly like
any other event, and a second delivery is recognised and not applied again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from edge_agent import probation
from edge_agent.clock import Clock, Stamp
from edge_agent.config import AgentConfig
from edge_agent.configfile import ConfigError, loads
from edge_agent.files import write_atomically
from edge_agent.outbox import AsyncOutbox, DomainSchema, OutboxFull, Unit
from edge_agent.wire import (
    Command,
    CommandBody,
    CommandEnvelope,
    CommandResult,
    ConfigUpdateCommand,
    PingCommand,
    TimeSetCommand,
)

log = logging.getLogger(__name__)


def _commands_v1(db: sqlite3.Connection) -> None:
    # Outboxes before domains owned their tables already have it.
    db.execute(
        "CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, kind TEXT, received_at TEXT, "
        "ok INTEGER, detail TEXT)"
    )


#: The commands domain's table in the outbox file: every command id seen, with its outcome.
SCHEMA = DomainSchema("commands", [_commands_v1])


def seen(unit: Unit, command_id: uuid.UUID) -> bool:
    row = unit.execute("SELECT 1 FROM commands WHERE id = ?", [str(command_id)]).fetchone()
    return row is not None


def record(
    unit: Unit, command_id: uuid.UUID, kind: str, ok: bool, detail: str, stamp: Stamp
) -> int | None:
    """Remember a command and queue its result; ``None`` if it was seen before."""
    inserted = unit.execute(
        "INSERT OR IGNORE INTO commands (id, kind, received_at, ok, detail) VALUES (?, ?, ?, ?, ?)",
        [str(command_id), kind, stamp.occurred_at.isoformat(), int(ok), detail],
    ).rowcount
    if not inserted:
        return None
    result = CommandResult(command_id=command_id, command_kind=kind, ok=ok, detail=detail)
    return unit.append("command.result", result, stamp)


#: A domain's command (``cards.sync`` for the cabinet, say), applied inside the outbox
#: transaction that records the command and its result, so the two never part: (ok, detail).
Applier = Callable[[Unit, CommandBody], tuple[bool, str]]

#: What staff read when a command failed on a bug rather than on its content: the exception
#: itself goes to the agent's log, not into the result.
INTERNAL_ERROR = "internal error in the agent; see its log"


def _changes_the_way_out(previous: str, new: AgentConfig) -> bool:
    """Whether the new configuration may cut the agent off (broker, identity, data directory):
    only then is it on probation, so a network outage never undoes an unrelated change."""
    try:
        old = loads(previous, AgentConfig, source="current configuration")
    except ConfigError:
        return True
    return old.mqtt != new.mqtt or old.agent != new.agent


class CommandHandler:
    def __init__(
        self,
        *,
        agent_id: str,
        outbox: AsyncOutbox,
        clock: Clock,
        config_path: Path | None,
        data_dir: Path,
        request_restart: Callable[[], None],
        probation_s: float = 300.0,
        domains: Mapping[str, Applier] | None = None,
        applied: Callable[[CommandBody], None] = lambda body: None,
    ) -> None:
        self._agent_id = agent_id
        self._outbox = outbox
        self._clock = clock
        self._config_path = config_path
        self._data_dir = data_dir
        self._request_restart = request_restart
        self._probation_s = probation_s
        self._domains = dict(domains or {})
        #: Told of a domain's command once its transaction has committed (not before: what it
        #: learns, such as a registry version, must be true of the file).
        self._applied = applied
        self._one_at_a_time = asyncio.Lock()

    async def handle(self, command: Command) -> None:
        """Apply a command unless seen before, and queue its result; one command at a time."""
        kind = command.body.kind
        async with self._one_at_a_time:
            if await self._seen(command.id):
                log.info("command %s (%s) seen before; not applied again", command.id, kind)
                return
            restart = False
            try:
                if kind in self._domains:
                    try:
                        outcome = await self._apply_in_domain(command)
                    except OutboxFull as exc:
                        # Not the command's fault: no result is recorded, so the server, which
                        # resends what is unanswered, delivers it again once there is room.
                        log.error("command %s (%s) not applied, to be resent: %s",
                                  command.id, kind, exc)  # fmt: skip
                        return
                    if outcome is None:
                        return
                    ok, detail = outcome
                else:
                    ok, detail, restart = await self._apply(command)
                    await self._record(command.id, kind, ok, detail)
            except Exception:  # the server must hear of it, not resend it for ever
                log.exception("command %s (%s) failed", command.id, kind)
                ok, detail = False, INTERNAL_ERROR
                await self._record(command.id, kind, ok, detail)
            log.info("command %s (%s): %s, %s", command.id, kind, "ok" if ok else "failed", detail)
        if restart and ok:
            self._request_restart()

    async def _apply_in_domain(self, command: Command) -> tuple[bool, str] | None:
        """Apply and record in one transaction; ``None`` if another delivery got there first."""
        applier = self._domains[command.body.kind]
        stamp = self._clock.stamp()

        def work(unit: Unit) -> tuple[bool, str] | None:
            if seen(unit, command.id):
                return None
            ok, detail = applier(unit, command.body)
            if not ok:
                # What a refused command half-did must not stay: the unit is rolled back by
                # raising, and the refusal recorded in a transaction of its own.
                raise _Refused(detail)
            record(unit, command.id, command.body.kind, ok, detail, stamp)
            return ok, detail

        try:
            outcome = await self._outbox.transact(work, what=command.body.kind)
        except _Refused as refused:
            await self._record(command.id, command.body.kind, False, refused.detail)
            return False, refused.detail
        if outcome is not None:
            self._applied(command.body)
        return outcome

    async def refuse(self, command: CommandEnvelope, reason: str) -> None:
        """Answer a command this agent cannot apply, once, with a failed result."""
        async with self._one_at_a_time:
            if await self._seen(command.id):
                return
            await self._record(command.id, command.kind, False, reason)

    async def _seen(self, command_id: uuid.UUID) -> bool:
        return await self._outbox.transact(lambda unit: seen(unit, command_id), what="command")

    async def _record(self, command_id: uuid.UUID, kind: str, ok: bool, detail: str) -> None:
        stamp = self._clock.stamp()
        await self._outbox.transact(
            lambda unit: record(unit, command_id, kind, ok, detail, stamp), what="command.result"
        )

    async def _apply(self, command: Command) -> tuple[bool, str, bool]:
        restart = False
        body = command.body
        if isinstance(body, PingCommand):
            ok, detail = True, "pong"
        elif isinstance(body, TimeSetCommand):
            adopted = self._clock.adopt(body.server_time)
            ok, detail = True, "adopted" if adopted else "kernel clock is synchronised; kept"
        elif isinstance(body, ConfigUpdateCommand):
            ok, detail = await asyncio.to_thread(self._update_config, body, command.id)
            restart = ok
        else:
            ok, detail = False, f"this agent does not handle {body.kind} (it has no boxes)"
        return ok, detail, restart

    def _update_config(self, body: ConfigUpdateCommand, command_id: uuid.UUID) -> tuple[bool, str]:
        if self._config_path is None:
            return False, "agent runs without a config file path"
        try:
            new = loads(body.toml, AgentConfig, source="config.update")
        except ConfigError as exc:
            return False, str(exc)[:1000]
        if new.agent.id != self._agent_id:
            return False, f"config is for agent {new.agent.id!r}, not {self._agent_id!r}"
        backup = self._config_path.with_name(self._config_path.name + ".bak")
        if not self._config_path.exists():
            return False, f"{self._config_path} does not exist; nothing to fall back to"
        previous = self._config_path.read_text(encoding="utf-8")
        write_atomically(backup, previous)
        saved = f"saved to {self._config_path} (previous kept as {backup.name}); restarting"
        if not _changes_the_way_out(previous, new):
            write_atomically(self._config_path, body.toml)
            return True, saved
        probation.begin(self._data_dir, self._config_path, backup, self._probation_s, command_id)
        write_atomically(self._config_path, body.toml)
        return True, (
            f"{saved}; broker settings changed: rolled back unless it reaches the broker within "
            f"{self._probation_s:.0f} s"
        )


class _Refused(Exception):
    """A domain refused a command: its transaction is rolled back and the refusal recorded."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
