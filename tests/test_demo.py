"""The README's main job: the simulated site demo shows readings and leaves nothing running."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
from pathlib import Path

from tests.support import BIN, wait_for


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args and "pytest" not in args:
            found.append(args)
    return found


def test_demo_shows_readings_an_alarm_and_its_end_then_stops_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(BIN / "edge-sim"),
            "demo",
            "--seconds",
            "42",
            "--lang",
            "en",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sensors = set(re.findall(r"\b(no[123]-[ab])\b", result.stdout))
    assert sensors == {"no1-a", "no1-b", "no2-a", "no2-b", "no3-a", "no3-b"}, result.stdout
    assert re.search(r"-?\d+\.\d °C +\d+\.\d %RH", result.stdout)
    alarm = result.stdout.find("no2-pills      ⚠ out of limits (ALARM)")
    assert alarm > 0, result.stdout
    assert result.stdout.find("no2-pills      ✓ back to normal", alarm) > alarm
    # The silent transmitter, in the keeper's words: why, and what to check; no library text.
    assert "no1-condoms    ✗ sensor fault no1-b: no response (check wiring and power)" in (
        result.stdout
    )
    assert "Modbus Error" not in result.stdout
    assert "two sensors disagree" not in result.stdout, "the room's sensors read alike"
    assert "relay 9@" in (tmp_path / "logs" / "sensors.log").read_text(), "the alarm output"
    assert "every process has ended" in result.stdout
    assert processes_mentioning(str(tmp_path)) == []


def records(db: Path) -> int:
    """Climate records the demo's server has stored (0 while it is starting)."""
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM climate_records").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(BIN / "edge-sim"), "demo", "--lang", "zh", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: records(tmp_path / "server.db") > 0, 60, what="demo running end to end")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "演示已停止" in out
    assert processes_mentioning(str(tmp_path)) == []
