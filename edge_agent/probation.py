"""A configuration pushed by the server is on probation until it reaches the broker.

A wrong broker host or password in a ``config.update`` would otherwise strand a station until
someone travels there. The command saves the new file with the old one beside it and marks the
probation; the agent restarts on the new file, and if it cannot reach the broker within
``agent.config_probation_s`` it puts the previous file back, notes why, and restarts again. The
agent on the old file reports the rollback to the server as ``agent.config_rolled_back``.

The deadline counts on the monotonic clock of one boot (the wall clock of a Pi without a
battery may jump at boot); after a reboot the probation starts again from the full period.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from edge_agent.clock import read_boot_id
from edge_agent.files import write_atomically
from edge_agent.wire import ConfigRolledBack

log = logging.getLogger(__name__)

PROBATION_FILE = "config-probation.json"
ROLLED_BACK_FILE = "config-rolled-back.json"


@dataclass(frozen=True)
class Probation:
    config_path: str
    backup_path: str
    probation_s: float
    command_id: str | None
    boot_id: str
    deadline_mono: float

    def left_s(self) -> float:
        return max(0.0, self.deadline_mono - time.monotonic())


def begin(
    data_dir: Path,
    config_path: Path,
    backup_path: Path,
    probation_s: float,
    command_id: uuid.UUID | None,
) -> None:
    """Mark the configuration just saved as on probation (before the restart that applies it)."""
    probation = Probation(
        str(config_path),
        str(backup_path),
        probation_s,
        str(command_id) if command_id else None,
        read_boot_id(),
        time.monotonic() + probation_s,
    )
    write_atomically(data_dir / PROBATION_FILE, json.dumps(asdict(probation)))


def current(data_dir: Path) -> Probation | None:
    """The probation in force, if any; restarted in full after a reboot."""
    path = data_dir / PROBATION_FILE
    try:
        probation = Probation(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        log.error("probation record %s unreadable (%s); the configuration is kept", path, exc)
        path.unlink(missing_ok=True)
        return None
    if probation.boot_id != read_boot_id():
        probation = replace(
            probation,
            boot_id=read_boot_id(),
            deadline_mono=time.monotonic() + probation.probation_s,
        )
        write_atomically(path, json.dumps(asdict(probation)))
    return probation


async def watch(
    data_dir: Path,
    probation: Probation,
    connected: asyncio.Event,
    last_error: Callable[[], str | None],
    restart: Callable[[], None],
) -> None:
    """Confirm the configuration once the broker is reached; else roll it back and restart."""
    left = probation.left_s()
    log.warning(
        "configuration %s is on probation: it must reach the broker within %.0f s",
        probation.config_path,
        left,
    )
    try:
        async with asyncio.timeout(left):
            await connected.wait()
    except TimeoutError:
        reason = last_error() or "no connection to the broker"
        rollback(data_dir, probation, reason)
        restart()
        return
    (data_dir / PROBATION_FILE).unlink(missing_ok=True)
    log.info("configuration %s reached the broker; probation over", probation.config_path)


def rollback(data_dir: Path, probation: Probation, reason: str) -> None:
    config, backup = Path(probation.config_path), Path(probation.backup_path)
    log.critical(
        "configuration %s did not reach the broker within %.0f s (%s); restoring %s",
        config,
        probation.probation_s,
        reason,
        backup,
    )
    note = ConfigRolledBack(
        reason=f"the new configuration could not reach the broker: {reason}"[:500],
        probation_s=probation.probation_s,
        command_id=uuid.UUID(probation.command_id) if probation.command_id else None,
    )
    write_atomically(config, backup.read_text(encoding="utf-8"))
    write_atomically(data_dir / ROLLED_BACK_FILE, note.model_dump_json())
    (data_dir / PROBATION_FILE).unlink(missing_ok=True)


def take_rollback_note(data_dir: Path) -> ConfigRolledBack | None:
    """The rollback to report, if the previous run made one; the caller removes it once the
    event is stored (``forget_rollback_note``)."""
    path = data_dir / ROLLED_BACK_FILE
    try:
        return ConfigRolledBack.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("rollback note %s unreadable (%s); reported without detail", path, exc)
        return ConfigRolledBack(reason="configuration rolled back (note unreadable)", probation_s=0)


def forget_rollback_note(data_dir: Path) -> None:
    (data_dir / ROLLED_BACK_FILE).unlink(missing_ok=True)
