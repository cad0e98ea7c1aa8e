"""The README's main job: the simulated site demo shows readings and the village's boxes, and
leaves nothing running.

The demo runs twice at once, so that the module takes the minute of one run: in English with
``--seconds`` (it stops by itself), and in Chinese until the boxes have shown what they are
scripted to show, then Ctrl-C.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    workdir: Path
    out: Path
    err: Path

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")


#: What the Chinese demo's boxes show: a take, a refused card and why, the jam.
CHINESE_BOXES = ("✓ 发放 condoms 1 件：货道 1", "拒绝：此卡已挂失", "✗ 货道 1 出货失败：卡货")
#: No.2's alarm and its end, awaited here rather than in the English run's fixed seconds: on
#: loaded cores the end can come after those.
CHINESE_ROOM = (f"{'no2':14} ⚠ 超出限值（报警）", f"{'no2':14} ✓ 恢复正常")


@contextmanager
def chinese_demo_in(root: Path) -> Iterator[Demo]:
    """``edge-sim demo --lang zh`` under ``root``, output in files; stopped (Ctrl-C, then kill)
    when the block ends, even when a test failed."""
    workdir = root / "site"
    out, err = root / "stdout", root / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(BIN / "edge-sim"), "demo", "--lang", "zh", "--workdir", str(workdir)],
            stdout=stdout,
            stderr=stderr,
        )
    try:
        yield Demo(proc, workdir, out, err)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def chinese_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo in Chinese, started first and left running beside the English one."""
    with chinese_demo_in(tmp_path_factory.mktemp("zh")) as demo:
        yield demo


def test_demo_shows_readings_an_alarm_and_its_end_then_stops_cleanly(
    tmp_path: Path, chinese_demo: Demo
) -> None:
    result = subprocess.run(
        [
            str(BIN / "edge-sim"),
            "demo",
            "--seconds",
            "34",
            "--lang",
            "en",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sensors = set(re.findall(r"\b(no[123]-[ab])\b", result.stdout))
    assert sensors == {"no1-a", "no1-b", "no2-a", "no2-b", "no3-a", "no3-b"}, result.stdout
    assert re.search(r"-?\d+\.\d °C +\d+\.\d %RH", result.stdout)
    alarm = result.stdout.find(f"{'no2':14} ⚠ out of limits (ALARM)")
    assert alarm > 0, result.stdout
    # The silent transmitter, in the keeper's words: why, and what to check; no library text.
    assert f"{'no1':14} ✗ sensor fault no1-b: no response (check wiring and power)" in (
        result.stdout
    )
    assert "Modbus Error" not in result.stdout
    assert "two sensors disagree" not in result.stdout, "the room's sensors read alike"
    assert "relay 9@" in (tmp_path / "logs" / "sensors.log").read_text(), "the alarm output"
    # The village's boxes: loaded, a take, a card refused and why, the scripted jam with the
    # slot taken out of use and the next slot serving instead; never a card.
    boxes = [line for line in result.stdout.splitlines() if "  box xiaozhuang" in line]
    text = "\n".join(boxes)
    assert "slot 2 loaded: condoms x2, batch C241103" in text, result.stdout
    assert re.search(r"✓ dispensed condoms x1: slot 1, batch C240511, \d+ left", text), text
    assert re.search(r"refused: card (reported lost|not registered)", text), text
    jam = text.find("✗ slot 1 vend failed: jammed; the slot is marked faulty (not counted)")
    assert jam > 0, text
    assert text.find("✓ dispensed condoms x1: slot 2, batch C241103, 1 left", jam) > jam
    assert not re.search(r"[0-9a-f]{12}", text), "no card pseudonym"
    assert "Traceback" not in result.stdout + result.stderr
    assert re.search(r"Dashboard: http://127\.0\.0\.1:\d+/  user demo  password demo-password",
                     result.stdout), "the dashboard's address and login"  # fmt: skip
    assert "books" not in result.stderr, "the county's books opened"
    assert "every process has ended" in result.stdout
    assert processes_mentioning(str(tmp_path)) == []
    assert list(tmp_path.glob("tty*")) == [], "the simulators' serial links are removed"
    assert chinese_demo.proc.poll() is None, chinese_demo.err.read_text()


def test_ctrl_c_stops_every_process(chinese_demo: Demo) -> None:
    """In Chinese, as people see it by default; stopped with Ctrl-C once the boxes showed."""
    demo = chinese_demo

    def boxes_shown() -> bool:
        assert demo.proc.poll() is None, demo.err.read_text()
        return all(text in demo.stdout for text in CHINESE_BOXES)

    def room_recovered() -> bool:
        out = demo.stdout
        alarm = out.find(CHINESE_ROOM[0])
        return alarm >= 0 and out.find(CHINESE_ROOM[1], alarm) > alarm

    wait_for(boxes_shown, 120, interval=0.5, what="the Chinese demo's box events")
    wait_for(room_recovered, 120, interval=0.5, what="No.2's alarm and its end")
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(60) == 0, demo.err.read_text()
    out = demo.stdout
    assert "登记 6 张卡（1 张挂失，1 张技术员卡）" in out
    assert "°C" in out
    assert "演示已停止" in out
    assert processes_mentioning(str(demo.workdir)) == []
    assert list(demo.workdir.glob("tty*")) == []
