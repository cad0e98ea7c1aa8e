"""A configuration pushed by the server that cannot reach the broker is rolled back on its own."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.site import Site
from tests.support import Processes, wait_for


@pytest.fixture
def site(tmp_path: Path, processes: Processes) -> Iterator[Site]:
    s = Site(tmp_path, processes, agents=["station-1"])
    toml = s.agent_toml("station-1")
    toml.write_text(toml.read_text().replace("[mqtt]\n", "config_probation_s = 10\n[mqtt]\n", 1))
    yield s
    processes.stop_all()
    s.broker.stop()


class Supervisor:
    """What systemd does for the agent (``Restart=always``): start it again when it exits."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.exits: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Supervisor:
        self.site.start_agent()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            proc = self.site.processes.procs.get("station-1")
            if proc is not None and proc.poll() is not None:
                self.exits.append(proc.returncode)
                self.site.processes.procs.pop("station-1")
                self.site.start_agent()


def test_a_pushed_configuration_with_a_wrong_password_is_rolled_back(site: Site) -> None:
    site.start_server()
    toml = site.agent_toml("station-1")
    good = toml.read_text()
    wrong = good.replace(site.passwords["station-1"], "not-the-password")
    with Supervisor(site) as supervisor:
        wait_for(lambda: len(site.bodies("agent.started")) == 1, 30, what="agent online")
        command = site.server_cli(
            "command", "send", "station-1", "config.update", "--data", json.dumps({"toml": wrong})
        ).strip()
        wait_for(lambda: toml.read_text() == wrong, 30, what="new configuration saved")
        wait_for(
            lambda: len(site.bodies("agent.config_rolled_back")) == 1,
            60,
            what="rollback reported",
        )
        assert toml.read_text() == good
        [note] = site.bodies("agent.config_rolled_back")
        payload = note["payload"]
        assert payload["command_id"] == command  # type: ignore[index]
        assert "not authori" in str(payload["reason"]).lower()  # type: ignore[index]
        assert supervisor.exits.count(75) == 2, "one restart to apply, one to roll back"
        wait_for(
            lambda: site.query("SELECT result_ok FROM commands WHERE id = ?", command) == [(1,)],
            30,
            what="the command's own result",
        )
    log = site.processes.log("station-1")
    assert "did not reach the broker" in log
    assert "Traceback" not in log
    assert not (site.root / "station-1" / "config-probation.json").exists()


def test_a_change_that_keeps_the_broker_settings_is_not_on_probation(site: Site) -> None:
    site.start_server()
    toml = site.agent_toml("station-1")
    changed = toml.read_text().replace("status_interval_s = 2", "status_interval_s = 3")
    with Supervisor(site) as supervisor:
        wait_for(lambda: len(site.bodies("agent.started")) == 1, 30, what="agent online")
        site.server_cli(
            "command", "send", "station-1", "config.update", "--data", json.dumps({"toml": changed})
        )
        wait_for(lambda: len(site.bodies("agent.started")) == 2, 30, what="restarted")
        assert supervisor.exits == [75]
    assert not (site.root / "station-1" / "config-probation.json").exists()
    assert "on probation" not in site.processes.log("station-1")
