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
        "intro": "演示：模拟县药具管理站（3 个库房，6 个温湿度变送器：一号、二号库在 RS485 总线上，"
        "三号库经 Modbus TCP 网关），数据经 MQTT 送到服务器。模拟时间加速 240 倍："
        "约 6 秒后二号库空调故障、温度超限报警，随后恢复；一号库一个变送器会暂时失去响应。",
        "where": "工作目录：{dir}（日志在 logs/ 下）",
        "stop": "按 Ctrl-C 停止。以下为服务器收到的温湿度记录：",
        "died": "进程 {name} 意外退出（代码 {code}），日志：{log}",
        "stopped": "演示已停止，所有进程已结束。",
        "no_broker": "无法启动 Mosquitto：{err}",
    },
    "en": {
        "intro": "Demo: a simulated county commodity station (3 storerooms, 6 transmitters: "
        "No.1 and No.2 on an RS485 bus, No.3 on a Modbus TCP gateway), readings carried over "
        "MQTT to the server. Simulated time runs 240x: after about 6 s the air conditioning of "
        "No.2 fails, the room goes into alarm, then recovers; a transmitter in No.1 falls silent "
        "for a while.",
        "where": "Working directory: {dir} (logs under logs/)",
        "stop": "Press Ctrl-C to stop. Climate records as the server stores them:",
        "died": "process {name} exited unexpectedly (code {code}), log: {log}",
        "stopped": "Demo stopped; every process has ended.",
        "no_broker": "cannot start Mosquitto: {err}",
    },
}


#: Simulated seconds per real second: the scenario's hours pass in minutes.
TIME_SCALE = 240.0

#: An air-conditioning failure in No.2 (pills) from 0.4 h to 1.6 h of simulated time, and a
#: transmitter in No.1 that stops answering from 1.2 h for an hour (about 18 s to 33 s of real
#: time: long enough to be declared faulty and to recover), then cycles again every 3 hours.
SCENARIO = [
    ("ac_failure", "no2-pills", 0.4, 1.2),
    ("silent", "no1-b", 1.2, 1.0),
]
CYCLE_H = 3.0


@dataclass
class DemoSite:
    """A county station: No.1 and No.2 on one RS485 bus (RTU on a pseudo-terminal), No.3 on a
    Modbus TCP gateway, and a relay board for the sound-and-light alarms."""

    workdir: Path
    broker_port: int
    modbus_port: int
    poll_interval_s: float = 2.0
    cycles: int = 40

    def write(self) -> dict[str, Path]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        rs485 = self.workdir / "ttyRS485-1"
        sensors = [f"time_scale = {TIME_SCALE}"]
        for room, _name, _group, temperature, humidity in STOREROOMS:
            sensors += [
                "[[rooms]]",
                f'id = "{room}"',
                f"base_c = {temperature}",
                f"base_pct = {humidity}",
                "daily_c = 1.5",
                "daily_pct = 4.0",
            ]
        for cycle in range(self.cycles):
            for kind, target, at_h, duration_h in SCENARIO:
                sensors += [
                    "[[scenario]]",
                    f'kind = "{kind}"',
                    f'target = "{target}"',
                    f"at_h = {at_h + cycle * CYCLE_H}",
                    f"duration_h = {duration_h}",
                ]
        rtu_devices: list[str] = []
        tcp_devices: list[str] = []
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
            f"record_in_range_s = {self.poll_interval_s * 5}",
            f"record_out_of_range_s = {self.poll_interval_s}",
            "fault_after_s = 10",
            "# Time runs 240x in the simulated rooms: real minutes of change pass in seconds.",
            "spike_c_per_min = 1000",
            "[[buses]]",
            'id = "rs485-1"',
            'kind = "rtu"',
            f'device = "{rs485}"',
            "baudrate = 9600",
            "timeout_s = 0.3",
            "[[buses]]",
            'id = "gateway-1"',
            'kind = "tcp"',
            'host = "127.0.0.1"',
            f"port = {self.modbus_port}",
        ]
        unit = 0
        for index, (room, name, group, _t, _rh) in enumerate(STOREROOMS):
            agent += [
                "[[climate.storerooms]]",
                f'id = "{room}"',
                f'name = "{name}"',
                f'product_group = "{group}"',
                f'alarm_output = {{ bus = "rs485-1", address = 9, coil = {index} }}',
            ]
            on_tcp = room == "no3-iud"
            for suffix, profile in (("a", "rh-t-holding-x10"), ("b", "t-rh-input-x10")):
                unit += 1
                sensor = f"{room.split('-')[0]}-{suffix}"
                device = [
                    f"[[{'tcp' if on_tcp else 'rtu'}.devices]]",
                    f"unit = {unit}",
                    f'name = "{sensor}"',
                    f'profile = "{profile}"',
                    f'room = "{room}"',
                    f"offset_c = {0.1 * (unit % 2)}",
                ]
                (tcp_devices if on_tcp else rtu_devices).extend(device)
                agent += [
                    "[[climate.sensors]]",
                    f'id = "{sensor}"',
                    f'storeroom = "{room}"',
                    f'bus = "{"gateway-1" if on_tcp else "rs485-1"}"',
                    f"address = {unit}",
                    f'profile = "{profile}"',
                ]
        sensors += ["[[tcp]]", f"port = {self.modbus_port}", *tcp_devices]
        sensors += ["[[rtu]]", f'link = "{rs485}"', "baudrate = 9600", *rtu_devices]
        sensors += ["[[rtu.relays]]", "unit = 9"]
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
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="edge-demo-"))).resolve()
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
