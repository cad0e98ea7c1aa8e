"""Alerts through the real thing: an agent's records cross a real Mosquitto to ``edge-server
run``, whose limits are stricter than anything the agent judged, so the excursion is caught
from the records themselves, one notice per storeroom however many records say it; then the
agent is killed and the server tells that it is offline. The notices reach a real local HTTP
receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.receivers import HttpReceiver
from tests.site import Site
from tests.support import Processes, wait_for


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


def alerts_section(hook: HttpReceiver) -> str:
    people = "".join(
        f'[[alerts.contacts]]\nsite = "county"\nname = "{name}"\nlevel = {level}\n'
        f'phone = "1380000000{level}"\n'
        for name, level in (("李保管", 1), ("张站长", 2), ("县卫健局", 3))
    )
    return f"""
[alerts]
tick_s = 0.5
[alerts.limits.default]
temperature_c = [10, 25]
[alerts.rules."agent.offline"]
for_s = 0
{people}
[[alerts.channels]]
name = "log"
kind = "log"
[[alerts.channels]]
name = "hook"
kind = "webhook"
url = "{hook.url("/hook")}"
"""


@pytest.fixture
def site(tmp_path: Path, processes: Processes) -> Iterator[Site]:
    """The site's processes and its broker, stopped even when the test failed."""
    made = Site(tmp_path, processes, agents=["station-1"])
    yield made
    processes.stop_all()
    made.broker.stop()


def test_an_excursion_from_the_records_and_a_killed_agent_are_told(
    site: Site, hook: HttpReceiver
) -> None:
    site.server_toml.write_text(site.server_config(f"sqlite:///{site.db}") + alerts_section(hook))
    site.start_server()
    site.start_agent()
    # Records 18.0 °C to 25.9 °C round the three storerooms: the last ten are over 25.
    last = site.inject(80)
    site.wait_acked(last)

    def told(rule: str) -> list[dict[str, Any]]:
        return [n.json() for n in hook.at("/hook") if n.json()["rule"] == rule]

    wait_for(lambda: len(told("climate.range")) >= 3, 30, what="three storerooms told")
    fired = told("climate.range")
    assert sorted(n["alert_key"] for n in fired) == [
        "climate.range:county:no1",
        "climate.range:county:no2",
        "climate.range:county:no3",
    ], "one notice per storeroom, not one per record"
    assert all(n["reason"] == "fired" for n in fired)
    assert "温湿度超限" in fired[0]["text"]

    site.kill_agent()
    wait_for(lambda: told("agent.offline"), 60, what="the killed agent told offline")
    [offline] = told("agent.offline")
    assert (offline["alert_key"], offline["reason"]) == ("agent.offline:county:station-1", "fired")
    assert "终端离线" in offline["text"]
    assert len(told("climate.range")) == 3
    keys = [n.headers["Idempotency-Key"] for n in hook.at("/hook")]
    assert len(keys) == len(set(keys)), json.dumps(keys)
