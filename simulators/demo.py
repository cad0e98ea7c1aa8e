"""The simulated county station: every part as a real process, what the server stores shown as
it arrives.

Mosquitto, the transmitter simulator, the server, the agent, the dispensing boxes' simulator
(``edge-sim cabinet``), ``edge-server climate tail`` and ``edge-server boxes tail`` run as
child processes in their own sessions, so Ctrl-C reaches only this supervisor, which then stops
each child in order and waits for it. The card registry goes the way it goes at a county: the
demo makes the county card key and registers the crowd's cards with ``edge-server cards``, gives
the agent the same key file, and the server's sync timer sends the registry to the agent
(``cards.sync``); the boxes are loaded with ``edge-agent cabinet restock``. Only then is the
boxes' simulator started, so that nobody swipes a card the box cannot know yet.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import FrameType

from simulators.broker import BrokerError, Mosquitto, free_port, port_open

BIN = Path(sys.executable).parent

#: (storeroom id, Chinese name, product group, base temperature, base humidity)
STOREROOMS = [
    ("no1", "一号库（避孕套）", "condoms", 21.0, 55.0),
    ("no2", "二号库（避孕药）", "pills", 24.0, 60.0),
    ("no3", "三号库（节育环）", "iud", 19.5, 48.0),
]

TEXTS = {
    "zh": {
        "intro": "演示：模拟县药具管理站（3 个库房，6 个温湿度变送器：一号、二号库在 RS485 总线上，"
        "三号库经 Modbus TCP 网关），数据经 MQTT 送到服务器。模拟时间加速 240 倍："
        "约 6 秒后二号库空调故障、温度超限报警，随后恢复；一号库一个变送器会暂时失去响应。\n"
        "同一终端还管着三台村级药具箱。小庄村两台："
        "一台 IC 卡药具箱（避孕套、口服避孕药，2 号货道快空了），"
        "村民刷卡领取，也有人拿着挂失卡、未登记的卡来，技术员不时刷卡开门；"
        "另一台是不用卡的按键式药具箱，按一次出一件，两次之间要等一会儿。"
        "县服务器生成卡密钥、登记这些卡（一张挂失），登记册经 cards.sync 下发到终端。"
        "药具箱投入使用约 10 秒后，IC 卡药具箱 1 号货道卡货（该货道停用，改由 2 号货道出货）；"
        "约 17 秒时有人撬开箱门（报警）。大庄村还有一台 IC 卡药具箱。"
        "约 20 秒时一位村民来县站挂失卡片，约 24 秒时技术员给小庄村 2 号货道补货；"
        "一号库随后进入连阴雨天气，湿度升高。",
        "web": "监控页面：{url}  登录名 {user}  密码 {password}",
        "where": "工作目录：{dir}（日志在 logs/ 下）",
        "cards": "县卡密钥已就绪，登记 {n} 张卡（{lost} 张挂失，{tech} 张技术员卡）。",
        "cards_failed": "登记卡未成功，药具箱会拒绝所有卡。日志：{log}",
        "stop": "按 Ctrl-C 停止。以下为服务器收到的温湿度记录和药具箱事件：",
        "died": "进程 {name} 意外退出（代码 {code}），日志：{log}",
        "stopped": "演示已停止，所有进程已结束。",
        "no_broker": "无法启动 Mosquitto：{err}",
    },
    "en": {
        "intro": "Demo: a simulated county commodity station (3 storerooms, 6 transmitters: "
        "No.1 and No.2 on an RS485 bus, No.3 on a Modbus TCP gateway), readings carried over "
        "MQTT to the server. Simulated time runs 240x: after about 6 s the air conditioning of "
        "No.2 fails, the room goes into alarm, then recovers; a transmitter in No.1 falls silent "
        "for a while.\n"
        "The same agent serves three village dispensing boxes. In Xiaozhuang: an IC-card box "
        "(condoms and oral pills; slot 2 is nearly empty) where villagers swipe their cards, "
        "someone brings a lost card or one nobody registered, and now and then a technician "
        "opens the door with a technician card; and an open box without a reader, one unit "
        "per press, paced. The county server makes the card key and registers those cards (one "
        "reported lost); the registry reaches the agent as cards.sync. About 10 s after the "
        "boxes come into service, slot 1 of the card box jams (it is taken out of use and slot "
        "2 serves instead); at about 17 s someone forces its door (tamper). Dazhuang village "
        "has an IC-card box too. At about 20 s a villager reports a card lost at the county; "
        "at about 24 s a technician refills slot 2 in Xiaozhuang; then a wet spell raises the "
        "humidity in No.1.",
        "web": "Dashboard: {url}  user {user}  password {password}",
        "where": "Working directory: {dir} (logs under logs/)",
        "cards": "County card key ready; {n} cards registered ({lost} lost, {tech} technician's).",
        "cards_failed": "The cards could not be registered; the boxes will refuse every card. "
        "Log: {log}",
        "stop": "Press Ctrl-C to stop. Climate records and box events as the server stores them:",
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
    ("ac_failure", "no2", 0.4, 1.2),
    ("silent", "no1-b", 1.2, 1.0),
    ("wet_week", "no1", 1.8, 1.0),
]
CYCLE_H = 3.0

#: The villages' boxes, served by the station's agent: an IC-card box and an open one in
#: Xiaozhuang, an IC-card box in Dazhuang.
CARD_BOX = "xiaozhuang"
OPEN_BOX = "xiaozhuang-open"
OTHER_BOX = "dazhuang"
#: (product id, name on the display, English name, quota group)
PRODUCTS = [
    ("condoms", "避孕套", "Condoms", "condoms"),
    ("pills", "口服避孕药", "Oral pills", "pills"),
]
#: (box, slot, product, capacity, batch, days to its expiry, units loaded). Slot 1 expires
#: first, so it serves condoms first (FEFO) until it jams; slot 2 is nearly empty.
SLOTS = [
    (CARD_BOX, 1, "condoms", 20, "C240511", 300, 10),
    (CARD_BOX, 2, "condoms", 20, "C241103", 500, 2),
    (CARD_BOX, 3, "pills", 20, "P240820", 400, 8),
    (OPEN_BOX, 1, "condoms", 30, "C241103", 500, 24),
    (OTHER_BOX, 1, "condoms", 20, "C241103", 500, 12),
    (OTHER_BOX, 2, "pills", 20, "P240820", 400, 6),
]
#: The crowd's cards (UIDs as the reader reads them): registered villagers, a card reported
#: lost, a technician's; the simulator makes up two nobody registered.
VILLAGERS = ["04A1B2C3", "04112233445566", "9C3E2A17", "7B21C0DE"]
LOST = "5D0F8B21"
TECHNICIAN = "DEADBEEF"
#: The crowd at the card box. With this seed the first people are a villager who takes
#: condoms, the technician and the lost card; a villager wants condoms soon after the jam.
CARD_CROWD_SEED = 34
#: The incidents on the card box's script, in seconds from when the agent took it into
#: service: slot 1 jams; the door is forced open for 2 s.
JAM_AT_S = 10
FORCED_DOOR_AT_S = 17
#: In seconds from when the boxes' simulator started: a villager reports a card lost at the
#: county, and a technician refills the card box's slot 2 (nearly empty).
CARD_LOST_AT_S = 20
CARD_LOST = "7B21C0DE"
RESTOCK_AT_S = 24
RESTOCK = (CARD_BOX, 2, "C241103", 500, 10)
#: The dashboard's demo login (the dashboard listens on 127.0.0.1 only).
DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"
WEB_PORT = 8080
#: The county's books: its places in the levels, the products, what it received and passed
#: (the boxes' batches among them).
LEDGER = [
    ["site", "add", "demo-city", "--name", "示范市", "--level", "city"],
    ["site", "add", "demo-county", "--name", "示范县药具管理站", "--level", "county",
     "--parent", "demo-city"],
    ["product", "add", "condoms", "--name-zh", "避孕套", "--name-en", "Condoms",
     "--storeroom", "no1", "--group", "condoms"],
    ["product", "add", "pills", "--name-zh", "口服避孕药", "--name-en", "Oral pills",
     "--storeroom", "no2", "--group", "pills"],
]  # fmt: skip
RECEIPTS = [("no1", "condoms", "C241103", 500, 600), ("no2", "pills", "P240820", 400, 300)]


@dataclass
class DemoSite:
    """A county station: No.1 and No.2 on one RS485 bus (RTU on a pseudo-terminal), No.3 on a
    Modbus TCP gateway, a relay board for the sound-and-light alarms, and the village's two
    dispensing boxes on serial lines of their own."""

    workdir: Path
    broker_port: int
    modbus_port: int
    web_port: int = WEB_PORT
    poll_interval_s: float = 2.0
    cycles: int = 40

    @property
    def key_file(self) -> Path:
        return self.workdir / "card.key"

    def line(self, name: str) -> Path:
        """A serial line's symlink, as the agent opens it."""
        return self.workdir / f"tty{name}"

    @property
    def links(self) -> list[Path]:
        boxes = [f"BOX-{CARD_BOX}", f"CARD-{CARD_BOX}", f"BOX-{OPEN_BOX}", f"BOX-{OTHER_BOX}",
                 f"CARD-{OTHER_BOX}"]  # fmt: skip
        return [self.line(name) for name in ["RS485-1", *boxes]]

    def write(self) -> dict[str, Path]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        files = {
            "sensors": self._sensors(),
            "agent": self._agent(),
            "server": self._server(),
            "cabinet": self._cabinet(),
        }
        paths = {}
        for name, lines in files.items():
            paths[name] = self.workdir / f"{name}.toml"
            paths[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
        return paths

    def _sensors(self) -> list[str]:
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
        unit = 0
        for room, _name, _group, _t, _rh in STOREROOMS:
            on_tcp = room == "no3"
            for suffix, profile in (("a", "rh-t-holding-x10"), ("b", "t-rh-input-x10")):
                unit += 1
                (tcp_devices if on_tcp else rtu_devices).extend(
                    [
                        f"[[{'tcp' if on_tcp else 'rtu'}.devices]]",
                        f"unit = {unit}",
                        f'name = "{room.split("-")[0]}-{suffix}"',
                        f'profile = "{profile}"',
                        f'room = "{room}"',
                        f"offset_c = {0.1 * (unit % 2)}",
                    ]
                )
        sensors += ["[[tcp]]", f"port = {self.modbus_port}", *tcp_devices]
        sensors += ["[[rtu]]", f'link = "{self.line("RS485-1")}"', "baudrate = 9600"]
        return [*sensors, *rtu_devices, "[[rtu.relays]]", "unit = 9"]

    def _agent(self) -> list[str]:
        agent = [
            "[agent]",
            'id = "county-station-01"',
            'site = "demo-county"',
            f'data_dir = "{self.workdir / "agent-data"}"',
            "[mqtt]",
            f"port = {self.broker_port}",
            "[link]",
            "ack_timeout_s = 10",
            "# The status names the card registry version held: the server syncs from it.",
            "status_interval_s = 1",
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
            f'device = "{self.line("RS485-1")}"',
            "baudrate = 9600",
            "timeout_s = 0.3",
            "[[buses]]",
            'id = "gateway-1"',
            'kind = "tcp"',
            'host = "127.0.0.1"',
            f"port = {self.modbus_port}",
        ]
        for bus, name in (
            (f"box-{CARD_BOX}", f"BOX-{CARD_BOX}"),
            (f"reader-{CARD_BOX}", f"CARD-{CARD_BOX}"),
            (f"box-{OPEN_BOX}", f"BOX-{OPEN_BOX}"),
            (f"box-{OTHER_BOX}", f"BOX-{OTHER_BOX}"),
            (f"reader-{OTHER_BOX}", f"CARD-{OTHER_BOX}"),
        ):
            agent += ["[[buses]]", f'id = "{bus}"', 'kind = "serial"']
            agent.append(f'device = "{self.line(name)}"')
        unit = 0
        for index, (room, name, group, _t, _rh) in enumerate(STOREROOMS):
            agent += [
                "[[climate.storerooms]]",
                f'id = "{room}"',
                f'name = "{name}"',
                f'product_group = "{group}"',
                f'alarm_output = {{ bus = "rs485-1", address = 9, coil = {index} }}',
            ]
            on_tcp = room == "no3"
            for suffix, profile in (("a", "rh-t-holding-x10"), ("b", "t-rh-input-x10")):
                unit += 1
                agent += [
                    "[[climate.sensors]]",
                    f'id = "{room.split("-")[0]}-{suffix}"',
                    f'storeroom = "{room}"',
                    f'bus = "{"gateway-1" if on_tcp else "rs485-1"}"',
                    f"address = {unit}",
                    f'profile = "{profile}"',
                ]
        return agent + self._agent_cabinet()

    def _agent_cabinet(self) -> list[str]:
        lines = ["[cabinet]", f'card_key_file = "{self.key_file}"']
        for product, name, name_en, group in PRODUCTS:
            lines += ["[[cabinet.products]]", f'id = "{product}"', f'name = "{name}"']
            lines += [f'name_en = "{name_en}"', f'group = "{group}"']
        for group, quantity in (("condoms", 2), ("pills", 1)):
            lines += ["[[cabinet.quota]]", f'product_group = "{group}"']
            lines += [f"quantity = {quantity}", "period_days = 30"]
        lines += [
            "[[cabinet.boxes]]",
            f'id = "{CARD_BOX}"',
            'name = "小庄村卫生室 IC 卡药具箱"',
            'mode = "card"',
            f'board = "box-{CARD_BOX}"',
            f'reader = {{ bus = "reader-{CARD_BOX}" }}',
            'products = ["condoms", "pills"]',
            *self._slots(CARD_BOX),
            "[[cabinet.boxes]]",
            f'id = "{OPEN_BOX}"',
            'name = "小庄村村委会 按键式药具箱"',
            'mode = "open"',
            f'board = "box-{OPEN_BOX}"',
            'products = ["condoms"]',
            "# Paced: one unit per press, then a pause, so that one person cannot empty it.",
            "pause_s = 6",
            "max_per_hour = 30",
            *self._slots(OPEN_BOX),
            "[[cabinet.boxes]]",
            f'id = "{OTHER_BOX}"',
            'name = "大庄村卫生室 IC 卡药具箱"',
            'mode = "card"',
            f'board = "box-{OTHER_BOX}"',
            f'reader = {{ bus = "reader-{OTHER_BOX}" }}',
            'products = ["condoms", "pills"]',
            *self._slots(OTHER_BOX),
        ]
        return lines

    @staticmethod
    def _slots(box: str) -> list[str]:
        lines = []
        for where, number, product, capacity, *_ in SLOTS:
            if where == box:
                lines += ["[[cabinet.boxes.slots]]", f"number = {number}"]
                lines += [f'product = "{product}"', f"capacity = {capacity}"]
        return lines

    def _server(self) -> list[str]:
        return [
            "[database]",
            f'url = "sqlite:///{self.workdir / "server.db"}"',
            "[mqtt]",
            f"port = {self.broker_port}",
            "# Quick enough for a demo: commands looked at twice a second, the registry synced",
            "# to the boxes' agents every second.",
            "[commands]",
            "poll_s = 0.5",
            "[cards]",
            f'key_file = "{self.key_file}"',
            "sync_interval_s = 1",
            "# The dashboard, for this machine only.",
            "[web]",
            "enabled = true",
            'host = "127.0.0.1"',
            f"port = {self.web_port}",
        ]

    def _cabinet(self) -> list[str]:
        """The boxes' simulator: the same slots and counts as the agent's books, a crowd at
        each box, and the card box's incidents."""
        card_box = [
            "[[boxes]]",
            f'id = "{CARD_BOX}"',
            'products = ["condoms", "pills"]',
            "wait_for_agent = true",
            *self._board(CARD_BOX),
            "[boxes.reader]",
            f'link = "{self.line(f"CARD-{CARD_BOX}")}"',
            'format = "hex-line"',
            "[boxes.crowd]",
            f"seed = {CARD_CROWD_SEED}",
            "people_per_hour = 4",
            f"time_scale = {TIME_SCALE}",
            f"registered = {_toml_list(VILLAGERS)}",
            f'lost = ["{LOST}"]',
            f'technicians = ["{TECHNICIAN}"]',
            "unregistered = 2",
            "read_s = 2",
            "think_s = 0.5",
            "give_up_s = 3",
            "refill_s = 2",
            "[boxes.crowd.mix]",
            "registered = 70",
            "unregistered = 12",
            "lost = 10",
            "technician = 8",
            "[[boxes.faults]]",
            f"at_s = {JAM_AT_S}",
            'kind = "jam"',
            "slot = 1",
            "[[boxes.faults]]",
            f"at_s = {FORCED_DOOR_AT_S}",
            'kind = "force_door"',
            "duration_s = 2",
        ]
        open_box = [
            "[[boxes]]",
            f'id = "{OPEN_BOX}"',
            "wait_for_agent = true",
            *self._board(OPEN_BOX),
            "[boxes.crowd]",
            "seed = 11",
            "people_per_hour = 4",
            f"time_scale = {TIME_SCALE}",
            "people = 8",
            "read_s = 2",
            "give_up_s = 3",
        ]
        other_box = [
            "[[boxes]]",
            f'id = "{OTHER_BOX}"',
            'products = ["condoms", "pills"]',
            "wait_for_agent = true",
            *self._board(OTHER_BOX),
            "[boxes.reader]",
            f'link = "{self.line(f"CARD-{OTHER_BOX}")}"',
            'format = "hex-line"',
            "[boxes.crowd]",
            "seed = 7",
            "people_per_hour = 3",
            f"time_scale = {TIME_SCALE}",
            f"registered = {_toml_list(VILLAGERS)}",
            "unregistered = 1",
            "read_s = 2",
            "think_s = 0.5",
            "give_up_s = 3",
            "refill_s = 2",
            "[boxes.crowd.mix]",
            "registered = 90",
            "unregistered = 10",
            "lost = 0",
            "technician = 0",
        ]
        return card_box + open_box + other_box

    def _board(self, box: str) -> list[str]:
        lines = [
            "[boxes.board]",
            f'link = "{self.line(f"BOX-{box}")}"',
            "turn_s = 1.0",
            f'state_file = "{self.workdir / f"board-{box}.json"}"',
        ]
        for where, _number, product, capacity, _batch, _days, units in SLOTS:
            if where == box:
                lines += ["[[boxes.board.slots]]", f'label = "{product}"']
                lines += [f"capacity = {capacity}", f"count = {units}"]
        return lines

    def server_cli(self, config: Path, *args: str) -> list[str]:
        return ["edge-server", "--config", str(config), *args]

    def registrations(self, config: Path) -> list[list[str]]:
        """``edge-server cards issue`` for each card the crowd brings that the county knows."""
        issue = [self.server_cli(config, "cards", "issue", "--uid", uid) for uid in VILLAGERS]
        issue.append(self.server_cli(config, "cards", "issue", "--uid", LOST))
        issue.append(
            self.server_cli(config, "cards", "issue", "--uid", TECHNICIAN, "--role", "technician")
        )
        return issue

    def incidents(self, server: Path, agent: Path,
                  today: date) -> list[tuple[float, list[str]]]:  # fmt: skip
        """What people do while the demo runs, at seconds after the boxes started: a card
        reported lost at the county, a slot refilled by a technician."""
        box, slot, batch, days, units = RESTOCK
        expiry = (today + timedelta(days=days)).isoformat()
        return [
            (CARD_LOST_AT_S, self.server_cli(server, "cards", "lost", "--uid", CARD_LOST)),
            (RESTOCK_AT_S, ["edge-agent", "--config", str(agent), "cabinet", "restock", box,
                            str(slot), batch, expiry, str(units)]),
        ]  # fmt: skip

    def restocks(self, config: Path, today: date) -> list[list[str]]:
        """``edge-agent cabinet restock`` for each slot: what a technician loaded."""
        return [
            ["edge-agent", "--config", str(config), "cabinet", "restock", box, str(number),
             batch, (today + timedelta(days=days)).isoformat(), str(units)]
            for box, number, _product, _capacity, batch, days, units in SLOTS
        ]  # fmt: skip


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


class Supervisor:
    """Child processes in start order; stopped in reverse order. ``stopping`` (set by the
    signal handler) cuts every wait short."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False
        logdir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, args: list[str], show_output: bool,
               feed: bytes | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
        with (self.logdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]],
                stdout=None if show_output else log,
                stderr=log,
                stdin=subprocess.DEVNULL if feed is None else subprocess.PIPE,
                start_new_session=True,
            )
        if feed is not None and proc.stdin is not None:
            proc.stdin.write(feed)
            proc.stdin.close()
        return proc

    def start(self, name: str, args: list[str], show_output: bool = False) -> None:
        self.children.append((name, self._spawn(name, args, show_output)))

    def run(
        self, name: str, commands: list[list[str]], timeout: float = 30.0,
        retry: int | None = None, feed: bytes | None = None,
    ) -> bool:  # fmt: skip
        """One-off commands, all at once, logged to ``name.log`` (``feed`` on their standard
        input); a command that exits with ``retry`` (its target is not up yet) is started again
        until ``timeout``. True when every one succeeded."""
        deadline = time.monotonic() + timeout
        running = [(args, self._spawn(name, args, False, feed)) for args in commands]
        ok = True
        while running:
            args, proc = running.pop(0)
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = -1
            again = retry is not None and code == retry and not self.stopping
            if again and time.monotonic() < deadline:
                time.sleep(0.3)
                running.append((args, self._spawn(name, args, False, feed)))
                continue
            ok = ok and code == 0
        return ok

    def wait_for_line(self, name: str, text: str, timeout: float = 20.0) -> bool:
        path = self.logdir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while not self.stopping and time.monotonic() < deadline:
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


def register_cards(procs: Supervisor, site: DemoSite, config: Path) -> bool:
    """The county card key (made once per working directory) and the crowd's cards, the lost
    one reported lost, through ``edge-server cards``."""
    if not site.key_file.exists():
        made = procs.run("cards", [site.server_cli(config, "cards", "make-key", "--out",
                                                   str(site.key_file))])  # fmt: skip
        if not made:
            return False
    if not procs.run("cards", site.registrations(config)):
        return False
    return procs.run("cards", [site.server_cli(config, "cards", "lost", "--uid", LOST)])


def add_demo_user(procs: Supervisor, site: DemoSite, config: Path) -> bool:
    """The dashboard's login: an administrator who sees everything."""
    add_user = site.server_cli(config, "users", "add", DEMO_USER, "--role", "admin", "--scope",
                               "*", "--display", "演示管理员", "--password-stdin")  # fmt: skip
    return procs.run("users", [add_user], feed=f"{DEMO_PASSWORD}\n".encode())


def open_the_books(procs: Supervisor, site: DemoSite, config: Path, today: date) -> bool:
    """The county's books, in order (a site before the sites below it, a product before its
    batches)."""
    steps = [site.server_cli(config, *step, "--by", "王会计") for step in LEDGER]
    for room, product, batch, days, quantity in RECEIPTS:
        expiry = (today + timedelta(days=days)).isoformat()
        place = ["demo-county", room, product, batch, str(quantity)]
        steps.append(site.server_cli(config, "receive", *place, "--expiry", expiry,
                                     "--by", "李保管"))  # fmt: skip
        steps.append(site.server_cli(config, "inspect", *place, "--result", "qualified",
                                     "--by", "李保管"))  # fmt: skip
    return all(procs.run("books", [step]) for step in steps)


def web_port() -> int:
    """8080 when it is free, so the address is always the same; another free port if not."""
    return free_port() if port_open(WEB_PORT) else WEB_PORT


def run_demo(seconds: float | None, workdir: Path | None, lang: str) -> int:
    text = TEXTS.get(lang, TEXTS["zh"])
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="edge-demo-"))).resolve()
    #: A working directory used before keeps its boxes' books (agent) and counts (simulator).
    fresh = not (workdir / "agent-data").exists()
    broker = Mosquitto(workdir / "broker")
    site = DemoSite(workdir, broker.port, free_port(), web_port())
    files = site.write()
    print(text["intro"], flush=True)
    print(text["where"].format(dir=workdir), flush=True)
    try:
        broker.start()
    except BrokerError as exc:
        print(text["no_broker"].format(err=exc), file=sys.stderr)
        return 1

    procs = Supervisor(workdir / "logs")

    def request_stop(_sig: int, _frame: FrameType | None) -> None:
        procs.stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    server = files["server"]
    code = 0
    try:
        procs.start("sensors", ["edge-sim", "sensors", "--config", str(files["sensors"])])
        procs.wait_for_line("sensors", "ready")
        procs.start("server", ["edge-server", "--config", str(server), "run"])
        procs.wait_for_line("server", "connected to broker")
        if fresh and not procs.stopping and not add_demo_user(procs, site, server):
            log = workdir / "logs" / "users.log"
            print(text["died"].format(name="users", code=1, log=log), file=sys.stderr)
        url = f"http://127.0.0.1:{site.web_port}/"
        print(text["web"].format(url=url, user=DEMO_USER, password=DEMO_PASSWORD), flush=True)
        if not procs.stopping:
            if register_cards(procs, site, server):
                print(text["cards"].format(n=len(VILLAGERS) + 2, lost=1, tech=1), flush=True)
            else:
                log = workdir / "logs" / "cards.log"
                print(text["cards_failed"].format(log=log), file=sys.stderr, flush=True)
        print(text["stop"], flush=True)
        for name, what in (("tail", "climate"), ("boxes", "boxes")):
            tail = ["edge-server", "--config", str(server), what, "tail", "--lang", lang]
            if fresh:  # a new store: all of it, even what arrives before the tail is up
                tail.append("--from-start")
            procs.start(name, tail, show_output=True)
        procs.start("agent", ["edge-agent", "--config", str(files["agent"]), "run"])
        if fresh and not procs.stopping:
            # Exit status 1: the agent's control socket is not there yet.
            procs.run("restock", site.restocks(files["agent"], date.today()), retry=1)
        procs.wait_for_line("agent", "(cards.sync): ok", timeout=30)
        if not procs.stopping:
            procs.start("cabinet", ["edge-sim", "cabinet", "--config", str(files["cabinet"])])
        opened = time.monotonic()
        books: list[bool] = []
        if fresh and not procs.stopping:
            # A dozen commands: opened while the site runs, so that the boxes' service and the
            # first readings are not kept waiting behind the books.
            threading.Thread(
                target=lambda: books.append(open_the_books(procs, site, server, date.today())),
                name="books", daemon=True,
            ).start()  # fmt: skip
        incidents = site.incidents(server, files["agent"], date.today())
        deadline = None if seconds is None else time.monotonic() + seconds
        while not procs.stopping and (deadline is None or time.monotonic() < deadline):
            while incidents and time.monotonic() - opened >= incidents[0][0]:
                procs.run("incidents", [incidents.pop(0)[1]])
            if books == [False]:
                books.append(False)  # said once
                log = workdir / "logs" / "books.log"
                print(text["died"].format(name="books", code=1, log=log), file=sys.stderr)
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
        for link in site.links:  # left behind only by a simulator that had to be killed
            if link.is_symlink():
                link.unlink()
    print(text["stopped"], flush=True)
    return code
