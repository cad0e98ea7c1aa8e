"""``edge-server`` as installed: the server's libraries are the ``server`` extra, so a machine
that has only the agent's (a Pi) gets a sentence saying what to install, not a traceback."""

from __future__ import annotations

import sys

#: Top-level modules of the ``server`` extra's distributions.
SERVER_ONLY = frozenset({
    "alembic", "argon2", "fastapi", "jinja2", "multipart", "prometheus_client",
    "python_multipart", "sqlalchemy", "starlette", "uvicorn",
})  # fmt: skip


def main() -> None:
    try:
        from server.cli import main as cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_ONLY:
            raise
        print(
            f"edge-server: the server's libraries are not installed ({exc.name} is missing); "
            "install the package with its server extra: pip install '/path/to/checkout[server]'",
            file=sys.stderr,
        )
        sys.exit(2)
    cli()
