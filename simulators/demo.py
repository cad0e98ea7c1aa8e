"""The simulated county station: every part as a real process, readings shown as they arrive.

Mosquitto, the transmitter simulator, the server, the agent and ``edge-server climate tail``
run as child processes in their own sessions, so Ctrl-C reaches only this supervisor, which
then stops each child in order and waits for it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from simulators.broker import BrokerError, Mosquitto, free_port

BIN = Path(sys.executable).parent

#: (storeroom id, Chinese name, product group, base temperature, base humidity)
STOREROOMS = [
    ("no1-condoms", "一号库（避孕套）", "condoms", 21.0, 55.0),
    ("no2-pills", "二号库（避孕药）", "pills", 24.0, 60.0),
    ("no3-iud", "三号库（节育环）", "iud", 19.5, 48.0),
]

TEXTS = {
    "zh": {
        "intro": "演示：模拟县药具管理站（3 个库房，6 个温湿度变送器），数据经 MQTT 送到服务器。",
        "where": "工作目录：{dir}（日志在 logs/ 下）",
        "stop": "按 Ctrl-C 停止。以下为服务器收到的温湿度记录：",
        "died": "进程 {name} 意外退出（代码 {code}），日志：{log}",
        "stopped": "演示已停止，所有进程已结束。",
        "no_broker": "无法启动 Mosquitto：{err}",
    },
    "en": {
        "intro": "Demo: a simulated county commodity station (3 storerooms, 6 transmitters), "
        "readings carried over MQTT to the server.",
        "where": "Working directory: {dir} (logs under logs/)",
        "stop": "Press Ctrl-C to stop. Climate records as the server stores them:",
        "died": "process {name} exited unexpectedly (code {code}), log: {log}",
        "stopped": "Demo stopped; every process has ended.",
        "no_broker": "cannot start Mosquitto: {err}",
    },
}


@dataclass
class DemoSite:
    workdir: Path
    broker_port: int
    modbus_port: int
    poll_interval_s: float = 5.0

    def write(self) -> dict[str, Path]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        sensors = ["[[tcp]]", f"port = {self.modbus_port}"]
        agent = [
            "[agent]",
            'id = "county-station-01"',
            'site = "demo-county"',
            f'data_dir = "{self.workdir / "agent-data"}"',
            "[mqtt]",
            f"port = {self.broker_port}",
            "[link]",
            "ack_timeout_s = 10",
            "[climate]",
            f"poll_interval_s = {self.poll_interval_s}",
            f"record_in_range_s = {self.poll_interval_s}",
            f"record_out_of_range_s = {self.poll_interval_s}",
            "[[climate.buses]]",
            'id = "gateway-1"',
            'kind = "tcp"',
            'host = "127.0.0.1"',
            f"port = {self.modbus_port}",
        ]
        unit = 0
        for room, name, group, temperature, humidity in STOREROOMS:
            agent += [
                "[[climate.storerooms]]",
                f'id = "{room}"',
                f'name = "{name}"',
                f'product_group = "{group}"',
            ]
            for suffix, profile in (("a", "rh-t-holding-x10"), ("b", "t-rh-input-x10")):
                unit += 1
                sensors += [
                    "[[tcp.devices]]",
                    f"unit = {unit}",
                    f'profile = "{profile}"',
                    f"temperature_c = {temperature + unit * 0.1:.1f}",
                    f"humidity_pct = {humidity}",
                    "wave_c = 1.5",
                    "wave_pct = 4.0",
                    "wave_period_s = 120",
                ]
                agent += [
                    "[[climate.sensors]]",
                    f'id = "{room.split("-")[0]}-{suffix}"',
                    f'storeroom = "{room}"',
                    'bus = "gateway-1"',
                    f"address = {unit}",
                    f'profile = "{profile}"',
                ]
        server = [
            "[database]",
            f'url = "sqlite:///{self.workdir / "server.db"}"',
            "[mqtt]",
            f"port = {self.broker_port}",
        ]
        files = {"sensors": sensors, "agent": agent, "server": server}
        paths = {}
        for name, lines in files.items():
            paths[name] = self.workdir / f"{name}.toml"
            paths[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
        return paths


class Supervisor:
    """Child processes in start order; stopped in reverse order."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        logdir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str], show_output: bool = False) -> None:
        with (self.logdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]],
                stdout=None if show_output else log,
                stderr=log,
                start_new_session=True,
            )
        self.children.append((name, proc))

    def wait_for_line(self, name: str, text: str, timeout: float = 20.0) -> bool:
        path = self.logdir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text(errors="replace"):
                return True
            time.sleep(0.1)
        return False

    def dead(self) -> tuple[str, int] | None:
        for name, proc in self.children:
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def stop_all(self) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(self.children):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.children.clear()


def run_demo(seconds: float | None, workdir: Path | None, lang: str) -> int:
    text = TEXTS.get(lang, TEXTS["zh"])
    workdir = workdir or Path(tempfile.mkdtemp(prefix="edge-demo-"))
    broker = Mosquitto(workdir / "broker")
    site = DemoSite(workdir, broker.port, free_port())
    files = site.write()
    print(text["intro"], flush=True)
    print(text["where"].format(dir=workdir), flush=True)
    try:
        broker.start()
    except BrokerError as exc:
        print(text["no_broker"].format(err=exc), file=sys.stderr)
        return 1

    stopping = False

    def request_stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    procs = Supervisor(workdir / "logs")
    code = 0
    try:
        procs.start("sensors", ["edge-sim", "sensors", "--config", str(files["sensors"])])
        procs.wait_for_line("sensors", "ready")
        procs.start("server", ["edge-server", "--config", str(files["server"]), "run"])
        procs.wait_for_line("server", "connected to broker")
        procs.start("agent", ["edge-agent", "--config", str(files["agent"]), "run"])
        print(text["stop"], flush=True)
        procs.start(
            "tail",
            ["edge-server", "--config", str(files["server"]), "climate", "tail", "--lang", lang],
            show_output=True,
        )
        deadline = None if seconds is None else time.monotonic() + seconds
        while not stopping and (deadline is None or time.monotonic() < deadline):
            died = procs.dead()
            if died is not None:
                name, status = died
                log = workdir / "logs" / f"{name}.log"
                print(text["died"].format(name=name, code=status, log=log), file=sys.stderr)
                code = 1
                break
            time.sleep(0.2)
    finally:
        procs.stop_all()
        broker.stop()
    print(text["stopped"], flush=True)
    return code
