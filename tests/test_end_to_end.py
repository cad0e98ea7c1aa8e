"""The spine, end to end, with real processes and a real Mosquitto:

simulated Modbus TCP transmitter -> edge-agent -> outbox -> Mosquitto -> edge-server -> SQLite
-> ``edge-server climate latest``.
"""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from tests.support import BIN, Broker, Processes, free_port, wait_for


def write_site(tmp_path: Path, broker: Broker, modbus_port: int) -> dict[str, Path]:
    sensors = tmp_path / "sensors.toml"
    sensors.write_text(
        f"""
[[tcp]]
port = {modbus_port}
[[tcp.devices]]
unit = 1
profile = "rh-t-holding-x10"
temperature_c = 23.4
humidity_pct = 61.2
[[tcp.devices]]
unit = 2
profile = "t-rh-input-x10"
temperature_c = -1.5
humidity_pct = 38.7
"""
    )
    agent = tmp_path / "agent.toml"
    agent.write_text(
        f"""
[agent]
id = "station-1"
site = "county"
data_dir = "{tmp_path / "agent-data"}"
[mqtt]
port = {broker.port}
[link]
ack_timeout_s = 5
[climate]
poll_interval_s = 1
record_in_range_s = 1
[[climate.storerooms]]
id = "no1-condoms"
name = "一号库"
product_group = "condoms"
[[buses]]
id = "gw"
kind = "tcp"
host = "127.0.0.1"
port = {modbus_port}
[[climate.sensors]]
id = "no1-a"
storeroom = "no1-condoms"
bus = "gw"
address = 1
profile = "rh-t-holding-x10"
[[climate.sensors]]
id = "no1-b"
storeroom = "no1-condoms"
bus = "gw"
address = 2
profile = "t-rh-input-x10"
"""
    )
    server = tmp_path / "server.toml"
    server.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "server.db"}"
[mqtt]
port = {broker.port}
"""
    )
    return {"sensors": sensors, "agent": agent, "server": server, "db": tmp_path / "server.db"}


def stored_readings(db: Path) -> dict[str, tuple[float, float]]:
    if not db.exists():
        return {}
    with closing(sqlite3.connect(db)) as conn:
        try:
            rows = conn.execute(
                "SELECT sensor, temperature_c, humidity_pct FROM climate_records"
            ).fetchall()
        except sqlite3.OperationalError:
            return {}
    return {sensor: (t, h) for sensor, t, h in rows}


def test_reading_travels_from_transmitter_to_server_database(
    tmp_path: Path, broker: Broker, processes: Processes
) -> None:
    files = write_site(tmp_path, broker, free_port())
    processes.start("sim", "edge-sim", "sensors", "--config", str(files["sensors"]))
    wait_for(lambda: "ready" in processes.log("sim"), what="simulator ready")
    processes.start("server", "edge-server", "--config", str(files["server"]), "run")
    processes.start("agent", "edge-agent", "--config", str(files["agent"]), "run")

    readings = wait_for(
        lambda: (r := stored_readings(files["db"])) and len(r) == 2 and r,
        timeout=30,
        what="readings of both sensors in the server database",
    )
    assert readings == {"no1-a": (23.4, 61.2), "no1-b": (-1.5, 38.7)}

    with closing(sqlite3.connect(files["db"])) as conn:
        rows = conn.execute("SELECT DISTINCT site_id, agent_id, storeroom FROM climate_records")
        assert set(rows) == {("county", "station-1", "no1-condoms")}

    def started_event_stored() -> bool:
        # The agent may have sent it before the server subscribed; the gap is then repaired.
        with closing(sqlite3.connect(files["db"])) as conn:
            return bool(conn.execute("SELECT 1 FROM journal WHERE kind='agent.started'").fetchone())

    wait_for(started_event_stored, timeout=20, what="agent.started at the server")

    out = subprocess.run(
        [str(BIN / "edge-server"), "--config", str(files["server"]), "climate", "latest"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = out.splitlines()
    assert "库房" in lines[0]
    assert "温度" in lines[0]
    assert "Asia/Shanghai" in lines[0]
    assert any("no1-a" in ln and "23.4" in ln and "61.2" in ln for ln in lines[1:]), out
    assert any("no1-b" in ln and "-1.5" in ln and "38.7" in ln for ln in lines[1:]), out

    assert processes.stop("agent") == 0
    assert processes.stop("server") == 0
    agent_log = processes.log("agent")
    assert "Traceback" not in agent_log, agent_log
    assert "Traceback" not in processes.log("server")


def test_agent_buffers_while_broker_is_down_and_delivers_later(
    tmp_path: Path, broker: Broker, processes: Processes
) -> None:
    files = write_site(tmp_path, broker, free_port())
    processes.start("sim", "edge-sim", "sensors", "--config", str(files["sensors"]))
    wait_for(lambda: "ready" in processes.log("sim"), what="simulator ready")
    broker.stop()
    processes.start("agent", "edge-agent", "--config", str(files["agent"]), "run")
    outbox = tmp_path / "agent-data" / "outbox.db"

    def backlog() -> int:
        if not outbox.exists():
            return 0
        with closing(sqlite3.connect(outbox)) as conn:
            try:
                return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
            except sqlite3.OperationalError:
                return 0  # not created yet

    wait_for(lambda: backlog() >= 5, what="events buffered in the outbox")
    broker.start()
    processes.start("server", "edge-server", "--config", str(files["server"]), "run")
    wait_for(lambda: len(stored_readings(files["db"])) == 2, timeout=40, what="delivery")
    wait_for(lambda: backlog() < 5, timeout=40, what="acknowledged events leaving the outbox")
