"""A Pi installs the package without the ``server`` extra: every module of the agent imports
without the server's libraries, and ``edge-server`` there says what to install."""

from __future__ import annotations

import subprocess
import sys

from server.entry import SERVER_ONLY

#: Run first in a fresh interpreter: the server's libraries cannot be found, as on a Pi.
BLOCK = f"""
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(SERVER_ONLY)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_every_agent_module_imports_without_the_server_libraries() -> None:
    assert python("import sqlalchemy").returncode == 1, "the server's libraries are hidden"
    done = python(
        "import importlib, pkgutil, edge_agent\n"
        "names = [m.name for m in pkgutil.walk_packages(edge_agent.__path__, 'edge_agent.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 20


def test_the_agent_runs_and_edge_server_says_what_is_missing() -> None:
    agent = python("import sys; sys.argv = ['edge-agent', '--help']\n"
                   "from edge_agent.cli import main; main()")  # fmt: skip
    assert agent.returncode == 0, agent.stderr
    assert "Edge agent" in agent.stdout
    server = python("from server.entry import main; main()")
    assert server.returncode == 2
    assert "[server]" in server.stderr
    assert "Traceback" not in server.stderr


def test_each_lazy_command_is_the_command_of_its_name() -> None:
    """``edge-server`` imports a domain's commands only when one is run; each name must lead
    to the command that calls itself so."""
    import click

    from server.cli import CLIMATE_LAZY, LAZY, climate, main

    for group, lazy in ((main, LAZY), (climate, CLIMATE_LAZY)):
        context = click.Context(group)
        for name in lazy:
            command = group.get_command(context, name)
            assert command is not None, name
            assert command.name == name
