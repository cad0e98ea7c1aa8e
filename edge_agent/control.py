"""The agent's local control socket: what a keeper does on site, with no network.

A Unix socket in the data directory (only the agent's user and group can reach it) takes one
line per connection and answers one line. It knows ``silence STOREROOM [WHO]``, used by
``edge-agent silence`` (a hardware button would speak the same line), and ``cabinet …``, used by
``edge-agent cabinet restock|remove|count|status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

from edge_agent.cabinet.domain import Cabinet
from edge_agent.climate.service import ClimateService
from edge_agent.outbox import OutboxError

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"


class ControlError(Exception):
    """The agent could not be reached or refused the request."""


async def serve(path: Path, climate: ClimateService, cabinet: Cabinet | None = None) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = (await reader.readline()).decode(errors="replace")
            writer.write((await answer(line.strip(), climate, cabinet) + "\n").encode())
            await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            log.warning("control connection dropped: %r", exc)
        finally:
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # noqa: ASYNC240 - once at start: a socket left by a previous run
    try:
        server = await asyncio.start_unix_server(handle, path=str(path))
        os.chmod(path, 0o660)
    except OSError as exc:
        # The agent's real work goes on without it; only on-site silencing is unavailable.
        log.error("no local control socket at %s: %s", path, exc)
        return
    async with server:
        await server.serve_forever()


async def answer(line: str, climate: ClimateService, cabinet: Cabinet | None = None) -> str:
    if line.startswith("cabinet "):
        if cabinet is None or not cabinet.boxes:
            return "error this agent has no boxes"
        return await cabinet.answer(line.removeprefix("cabinet "))
    parts = line.split(maxsplit=2)
    if len(parts) >= 2 and parts[0] == "silence":
        who = parts[2] if len(parts) == 3 else "on site"
        try:
            silenced = await climate.silence(parts[1], who)
        except KeyError:
            return f"error unknown storeroom {parts[1]!r}"
        except OutboxError as exc:
            log.error("silencing of %s not recorded: %s", parts[1], exc)
            return "ok silenced (not recorded: outbox error)"
        return "ok silenced" if silenced else "ok nothing sounding"
    return f"error unknown request {line[:40]!r}"


def request(path: Path, line: str, within_s: float = 5.0) -> str:
    """Send one line to a running agent and return its answer (blocking; for the CLI)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(within_s)
            sock.connect(str(path))
            sock.sendall(line.encode() + b"\n")
            reply = sock.makefile("r", encoding="utf-8").readline().strip()
    except OSError as exc:
        raise ControlError(f"cannot reach the agent at {path}: {exc}") from exc
    if not reply:
        raise ControlError("the agent closed the connection without answering")
    return reply
