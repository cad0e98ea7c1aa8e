"""Telling people of alerts, on SQLite and PostgreSQL, with real local receivers: a webhook and
an SMS gateway (a local HTTP server) and an SMTP server (aiosmtpd); the clock is injected.

One notice per alert, not per message; re-notification and escalation on schedule; an
acknowledgement stops escalation and is told with its action; resolution is told; a failing
channel is an alert of its own, told over the others, which still deliver; a silenced alert is
told to nobody; two server processes planning at once tell each thing once, and count a
channel's failures together; a request the receiver refuses for good is not tried again."""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from server.alerts.channels import ChannelError, Delivery, SmtpChannel
from server.alerts.config import AlertsSection, ChannelConfig, Contact
from server.alerts.entries import Acknowledgement
from server.alerts.notify import Notifier, silence
from server.alerts.projection import AlertsProjection, check_ack
from server.ingest.core import Ingestor
from server.store.schema import alert_channels, alert_notices, alerts
from simulators.broker import free_port
from simulators.receivers import HttpReceiver
from tests.support import wait_for
from tests.test_alerts_projection import events, record
from tests.test_ingest import NOW, TOPIC

SHANGHAI = ZoneInfo("Asia/Shanghai")
SMS_BODY = '{"mobile": "$phone", "content": "$text", "id": "$key"}'
PEOPLE = [
    Contact(site="county", name="李保管", level=1, phone="13800000001", email="li@example.cn"),
    Contact(site="county", name="张站长", level=2, phone="13800000002"),
    Contact(site="*", name="县卫健局", level=3, email="county@example.cn"),
]


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> datetime:
        return self.at

    def forward(self, **delta: float) -> None:
        self.at += timedelta(**delta)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@dataclass
class Rig:
    engine: sa.Engine
    clock: Clock
    http: HttpReceiver
    mailbox: Mailbox
    section: AlertsSection
    feed: Ingestor

    def notifier(self, **changes: Any) -> Notifier:
        section = self.section.model_copy(update=changes) if changes else self.section
        return Notifier(self.engine, section, SHANGHAI, now=self.clock)

    def hooks(self, rule: str | None = "climate.range") -> list[dict[str, Any]]:
        """What the webhook got about ``rule`` (None: about anything)."""
        got = [r.json() for r in self.http.at("/hook")]
        return [h for h in got if rule is None or h["rule"] == rule]

    def sms(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.http.at("/sms") if "终端离线" not in r.json()["content"]]

    def notices(self) -> list[Any]:
        with self.engine.connect() as conn:
            n = alert_notices
            return list(conn.execute(sa.select(n).order_by(n.c.id)))

    def alert(self, key: str) -> Any:
        with self.engine.connect() as conn:
            query = sa.select(alerts).where(alerts.c.key == key).order_by(alerts.c.id.desc())
            return conn.execute(query).first()


@pytest.fixture
def rig(engine: sa.Engine) -> Iterator[Rig]:
    http = HttpReceiver().start()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    clock = Clock()
    section = AlertsSection(
        renotify_s=1800,
        escalate_s=900,
        retry_s=1,
        channel_failures=2,
        contacts=PEOPLE,
        channels=[
            ChannelConfig(name="log", kind="log"),
            ChannelConfig(name="hook", kind="webhook", url=http.url("/hook")),
            ChannelConfig(name="sms", kind="sms", url=http.url("/sms"), body=SMS_BODY),
            ChannelConfig(name="mail", kind="smtp", host="127.0.0.1", port=smtp.port,
                          sender="alerts@county.example.cn"),
        ],
    )  # fmt: skip
    feed = Ingestor(engine, "fp", projections=[AlertsProjection.configured(section)])
    feed.projections[0].now = clock  # type: ignore[attr-defined]
    try:
        yield Rig(engine, clock, http, mailbox, section, feed)
    finally:
        http.stop()
        smtp.stop()


def hot(rig: Rig, first: int, count: int, temperature: float = 31.5) -> None:
    at = rig.clock()
    rig.feed.handle(TOPIC, events(first, *(record(temperature, at + timedelta(seconds=n))
                                            for n in range(count))), at)  # fmt: skip


def test_one_notice_per_alert_not_per_message_then_resolution(rig: Rig) -> None:
    notifier = rig.notifier()
    hot(rig, 1, 10)
    notifier.step()
    rig.clock.forward(minutes=1)
    hot(rig, 11, 10)
    notifier.step()
    [hook] = rig.hooks()
    assert (hook["rule"], hook["reason"], hook["level"]) == ("climate.range", "fired", 1)
    assert hook["text"].startswith("【紧急】county 2号库 温湿度超限 31.5°C/55%")
    assert len(hook["text"]) <= 70
    assert rig.http.at("/hook")[0].headers["Idempotency-Key"] == hook["key"]
    [sms] = rig.sms()
    assert (sms["mobile"], sms["content"]) == ("13800000001", hook["text"])
    wait_for(lambda: len(rig.mailbox.messages) == 1, what="the keeper's email")
    [mail] = rig.mailbox.messages
    assert mail["To"] == "li@example.cn"
    assert mail["X-Idempotency-Key"] == rig.notices()[-1].key

    rig.clock.forward(minutes=1)
    hot(rig, 21, 1, temperature=22.0)
    rig.clock.forward(minutes=11)
    notifier.step()
    assert rig.alert("climate.range:county:no2").state == "resolved"
    assert [h["reason"] for h in rig.hooks()] == ["fired", "resolved"]
    assert rig.sms()[-1]["content"].startswith("【已解除】")
    rig.clock.forward(hours=2)
    notifier.step()
    assert len(rig.hooks()) == 2, "told once of each"


def test_renotify_and_escalate_on_schedule_until_acknowledged(rig: Rig) -> None:
    notifier = rig.notifier()
    hot(rig, 1, 3)
    notifier.step()
    rig.clock.forward(seconds=899)
    notifier.step()
    assert [(h["level"], h["reason"]) for h in rig.hooks()] == [(1, "fired")]
    rig.clock.forward(seconds=1)
    notifier.step()
    assert [s["mobile"] for s in rig.sms()] == ["13800000001", "13800000002"]
    assert rig.hooks()[-1]["reason"] == "escalated"
    rig.clock.forward(seconds=900)  # 30 minutes in: the keeper again, and the county
    notifier.step()
    told = sorted((h["level"], h["reason"]) for h in rig.hooks()[2:])
    assert told == [(1, "renotify"), (3, "escalated")]
    wait_for(lambda: any(m["To"] == "county@example.cn" for m in rig.mailbox.messages),
             what="the county's email")  # fmt: skip

    key = "climate.range:county:no2"
    ack = Acknowledgement(key=key, by="李保管", action="开启空调")

    def make(conn: sa.Connection) -> list[tuple[str, Acknowledgement]]:
        check_ack(conn, ack)
        return [("alerts.ack", ack)]

    rig.clock.forward(minutes=1)
    rig.feed.enter(make, rig.clock())
    notifier.step()
    acked = [h for h in rig.hooks() if h["reason"] == "acknowledged"]
    assert sorted(h["level"] for h in acked) == [1, 2, 3], "every level told reached"
    assert "李保管：开启空调" in acked[0]["text"]
    before = len(rig.hooks())
    rig.clock.forward(hours=3)
    notifier.step()
    assert len(rig.hooks()) == before, "an acknowledged alert is not escalated nor repeated"
    assert rig.alert(key).action == "开启空调"


def test_a_failing_channel_is_an_alert_told_over_the_others(rig: Rig) -> None:
    rig.http.failing.add("/sms")
    notifier = rig.notifier()
    hot(rig, 1, 3)
    notifier.step()
    assert len(rig.hooks()) == 1, "the webhook delivers while the gateway fails"
    rig.clock.forward(seconds=1)
    notifier.step()  # the second failure in a row
    rig.clock.forward(seconds=1)
    notifier.step()
    channel = rig.alert("alerts.channel:county:sms")
    assert channel.state == "firing"
    told = rig.hooks("alerts.channel")
    assert [(h["subject"], h["reason"]) for h in told] == [("sms", "fired")]
    assert told[0]["text"].startswith("【紧急】")
    assert not any(n.channel == "sms" for n in rig.notices() if n.alert_id == channel.id)

    rig.http.failing.clear()
    rig.clock.forward(seconds=10)
    notifier.step()
    assert [s["mobile"] for s in rig.sms()] == ["13800000001"], "the retry delivered, once"
    with rig.engine.connect() as conn:
        n = alert_notices
        failed = conn.execute(sa.select(n.c.attempts).where(n.c.channel == "sms")).scalars()
        assert list(failed) == [3]
    rig.clock.forward(minutes=10)
    notifier.step()
    assert rig.alert("alerts.channel:county:sms").state == "resolved"


def test_gives_up_after_its_attempts_and_says_so(rig: Rig) -> None:
    rig.http.failing.add("/hook")
    notifier = rig.notifier(attempts=2)
    hot(rig, 1, 1)
    for _ in range(4):
        notifier.step()
        rig.clock.forward(seconds=5)
    [hook] = [n for n in rig.notices() if n.channel == "hook" and n.alert_id == 1]
    assert (hook.status, hook.attempts) == ("failed", 2)
    assert "HTTP 500" in hook.error


def test_quiet_hours_hold_back_only_what_is_not_critical(rig: Rig) -> None:
    # NOW is 13:00 in Shanghai; quiet from 12:00 to 14:00.
    notifier = rig.notifier(quiet_hours="12:00-14:00")
    fault = ("climate.sensor_fault", {"storeroom": "no1", "sensor": "no1-a", "error": "x",
                                      "reason": "no_response"}, rig.clock())  # fmt: skip
    rig.feed.handle(TOPIC, events(1, fault), rig.clock())
    rig.clock.forward(minutes=3)
    notifier.step()
    assert rig.alert("climate.sensor:county:no1/no1-a").state == "firing"
    hot(rig, 2, 1)
    notifier.step()
    assert [h["rule"] for h in rig.hooks(None)] == ["climate.range"], "the critical one only"
    rig.clock.forward(hours=1)
    notifier.step()
    assert rig.hooks("climate.sensor"), "told when the quiet ends"


def test_a_silenced_alert_is_told_to_nobody(rig: Rig) -> None:
    with rig.engine.begin() as conn:
        silence(conn, "climate.range:county:", NOW + timedelta(hours=1), "王", "检修空调", NOW)
    notifier = rig.notifier()
    hot(rig, 1, 2)
    notifier.step()
    assert rig.alert("climate.range:county:no2").state == "firing"
    assert rig.hooks() == []
    rig.clock.forward(hours=2)
    notifier.step()
    assert [h["reason"] for h in rig.hooks()] == ["fired"], "told once the silence ends"


def test_two_processes_planning_at_once_tell_each_thing_once(rig: Rig) -> None:
    one, two = rig.notifier(), rig.notifier()
    # The second has read what was told before the first committed: it plans the same again.
    two._told = lambda conn, ids: defaultdict(list)  # type: ignore[method-assign]
    hot(rig, 1, 2)
    with rig.engine.begin() as conn:
        planned = one.plan(conn, rig.clock())
    with rig.engine.begin() as conn:
        assert two.plan(conn, rig.clock()) == planned, "the same rows, offered again"
    assert len(rig.notices()) == planned, "and not inserted twice"
    one.deliver()
    two.deliver()
    assert len(rig.hooks()) == 1
    keys = [r.headers["Idempotency-Key"] for r in rig.http.received]
    assert len(keys) == len(set(keys))


def test_agent_offline_gap_and_unusable_messages_from_the_timer(rig: Rig) -> None:
    notifier = rig.notifier(offline_after_s=600)
    hot(rig, 1, 1, temperature=20.0)
    notifier.step()
    assert rig.alert("agent.offline:county:station-1") is None
    rig.clock.forward(minutes=11)
    notifier.step()
    offline = rig.alert("agent.offline:county:station-1")
    assert offline.state == "pending", "held for five minutes"
    rig.clock.forward(minutes=5)
    notifier.step()
    assert rig.alert("agent.offline:county:station-1").state == "firing"
    assert rig.hooks("agent.offline")

    # The agent comes back, with a gap behind its newest event and a message it cannot use.
    rig.feed.handle(TOPIC, events(5, record(20.0, rig.clock())), rig.clock())
    garbage = json.loads(events(6, record(20.0, rig.clock())))
    garbage["events"][0]["payload"]["humidity_pct"] = 250
    rig.feed.handle(TOPIC, json.dumps(garbage).encode(), rig.clock())  # dead-lettered
    notifier.step()
    assert rig.alert("agent.messages:county:station-1").state == "firing"
    for minute in range(6, 72, 6):
        rig.clock.forward(minutes=6)
        rig.feed.handle(TOPIC, events(minute + 1, record(20.0, rig.clock())), rig.clock())
        notifier.step()
    assert rig.alert("agent.offline:county:station-1").state == "resolved"
    assert rig.alert("agent.messages:county:station-1").state == "resolved", "an hour on"
    assert rig.alert("agent.gap:county:station-1").state == "firing"


def test_a_silence_names_one_key_or_a_prefix_ending_in_a_colon() -> None:
    from server.alerts.notify import silenced

    assert silenced("agent.offline:county:station-1", "agent.offline:county:station-1")
    assert not silenced("agent.offline:county:station-10", "agent.offline:county:station-1")
    assert silenced("agent.offline:county:station-10", "agent.offline:county:")
    assert not silenced("agent.offline:county2:x", "agent.offline:county:")


def test_a_level_nobody_can_be_reached_at_is_said_and_escalation_goes_on(rig: Rig) -> None:
    people = [
        Contact(site="county", name="李保管", level=1, email="li@example.cn"),
        Contact(site="county", name="张站长", level=2, phone="13800000002"),
    ]
    only_sms = [c for c in rig.section.channels if c.name == "sms"]
    notifier = rig.notifier(contacts=people, channels=only_sms)
    hot(rig, 1, 1)
    notifier.step()
    assert [(n.level, n.status) for n in rig.notices()] == [(1, "unreachable")]
    rig.clock.forward(seconds=900)
    notifier.step()
    assert [s["mobile"] for s in rig.sms()] == ["13800000002"], "the station head, on time"


def test_a_gateway_answering_garbage_is_a_failure_of_its_channel(rig: Rig) -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def garbage() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"this is not HTTP\r\n\r\n")

    threading.Thread(target=garbage, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/sms"
    broken = ChannelConfig(name="sms", kind="sms", url=url, body=SMS_BODY)
    hook = [c for c in rig.section.channels if c.name == "hook"]
    notifier = rig.notifier(channels=[broken, *hook], channel_failures=1)
    hot(rig, 1, 1)
    try:
        notifier.step()
    finally:
        server.close()
    [sms] = [n for n in rig.notices() if n.channel == "sms"]
    assert (sms.status, sms.attempts) == ("pending", 1)
    assert sms.error.startswith("POST ")
    assert rig.alert("alerts.channel:county:sms").state == "firing"
    assert len(rig.hooks()) == 1, "the webhook delivered"


def test_a_process_sends_only_over_the_channels_it_has(rig: Rig) -> None:
    full = rig.notifier()
    hot(rig, 1, 1)
    with rig.engine.begin() as conn:
        full.plan(conn, rig.clock())
    hooks_only = rig.notifier(channels=[c for c in rig.section.channels if c.name == "hook"])
    hooks_only.deliver()
    assert {n.channel for n in rig.notices() if n.status == "sent"} == {"hook"}
    assert rig.alert("alerts.channel:county:sms") is None, "another's channel is not failing"


def test_two_processes_observing_at_once_raise_each_alert_once(rig: Rig) -> None:
    """Two notifiers (two engines, as two server processes) run their rounds at the same
    moments over an agent gone quiet and a storeroom too warm."""
    import threading

    hot(rig, 1, 1)
    rig.clock.forward(minutes=16)
    second = sa.create_engine(rig.engine.url, connect_args=(
        {"timeout": 30} if rig.engine.dialect.name == "sqlite" else {}))  # fmt: skip
    one = rig.notifier()
    two = Notifier(second, rig.section.model_copy(update={"rules": {}}), SHANGHAI,
                   now=rig.clock)  # fmt: skip
    two.policies = one.policies
    failures: list[BaseException] = []

    def rounds(notifier: Notifier) -> None:
        try:
            for _ in range(5):
                notifier.step()
        except Exception as exc:  # noqa: BLE001 - the thread reports to the test
            failures.append(exc)

    for phase in range(2):  # pending, then (five minutes on) firing
        threads = [threading.Thread(target=rounds, args=(n,)) for n in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        rig.clock.forward(minutes=6 * (1 - phase))
    second.dispose()
    assert failures == []
    with rig.engine.connect() as conn:
        per_key = conn.execute(
            sa.select(alerts.c.key, sa.func.count()).group_by(alerts.c.key)
        ).all()  # fmt: skip
    assert dict(per_key) == {"agent.offline:county:station-1": 1, "climate.range:county:no2": 1}
    told = [(h["alert_key"], h["reason"]) for h in rig.hooks(None)]
    assert sorted(told) == [("agent.offline:county:station-1", "fired"),
                            ("climate.range:county:no2", "fired")]  # fmt: skip


class Answering:
    """A local HTTP receiver answering every POST with one status, counting them."""

    def __init__(self, status: int) -> None:
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.posts += 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize(("status", "again"), [(400, False), (422, False), (401, True),
                                               (403, True), (404, True), (429, True),
                                               (503, True)])  # fmt: skip
def test_a_request_refused_for_good_is_not_tried_again(
    rig: Rig, status: int, again: bool, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Answering(status)
    hook = ChannelConfig(name="hook", kind="webhook", url=receiver.url)
    notifier = rig.notifier(channels=[ChannelConfig(name="log", kind="log"), hook],
                            channel_failures=1)  # fmt: skip
    hot(rig, 1, 1)
    try:
        with caplog.at_level(logging.WARNING, "server.alerts.notify"):
            for _ in range(3):
                notifier.step()
                rig.clock.forward(seconds=10)
    finally:
        receiver.stop()
    [row] = [n for n in rig.notices() if n.channel == "hook"]
    assert f"HTTP {status}" in row.error
    if again:
        assert (receiver.posts, row.status, row.attempts) == (3, "pending", 3)
        return
    assert (receiver.posts, row.status, row.attempts) == (1, "failed", 1)
    [said] = [r for r in caplog.records if r.levelno == logging.ERROR and row.key in r.message]
    assert "over hook" in said.message
    assert rig.alert("alerts.channel:county:hook").state == "firing", "a failure of its channel"


class Refusing:
    """An SMTP server that refuses every recipient with ``reply``."""

    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        return self.reply


@pytest.mark.parametrize(("reply", "permanent"), [
    ("550 5.1.1 no such mailbox", True),
    ("451 4.7.1 greylisted, try again later", False),
    (None, False),  # nobody listening
])  # fmt: skip
def test_a_mail_server_refusing_for_good_is_told_from_one_that_says_later(
    reply: str | None, permanent: bool
) -> None:
    port = free_port()
    smtp = Controller(Refusing(reply or ""), hostname="127.0.0.1", port=port)
    if reply is not None:
        smtp.start()
    channel = SmtpChannel("mail", "127.0.0.1", port, "alerts@county.example.cn", None, None,
                          False, 5.0)  # fmt: skip
    try:
        with pytest.raises(ChannelError) as refused:
            channel.send(Delivery("1:1:fired:0:mail:li@example.cn", "mail", "li@example.cn",
                                  "【紧急】测试"))  # fmt: skip
    finally:
        if reply is not None:
            smtp.stop()
    assert refused.value.permanent is permanent


def test_processes_count_a_failing_channel_together(rig: Rig) -> None:
    """Each of two server processes sees one failed round of the webhook: together they are
    the two in a row that make the channel an alert; a delivery by either ends the count."""
    rig.http.failing.add("/hook")
    channels = [c for c in rig.section.channels if c.name in ("log", "hook")]
    second = sa.create_engine(rig.engine.url, connect_args=(
        {"timeout": 30} if rig.engine.dialect.name == "sqlite" else {}))  # fmt: skip
    one = rig.notifier(channels=channels)
    two = Notifier(second, rig.section.model_copy(update={"channels": channels}), SHANGHAI,
                   now=rig.clock)  # fmt: skip

    def failures() -> tuple[int, bool, bool]:
        with rig.engine.connect() as conn:
            c = alert_channels
            row = conn.execute(sa.select(c).where(c.c.channel == "hook")).one()
        return row.failures, row.last_sent_at is not None, row.last_failed_at is not None

    try:
        hot(rig, 1, 1)
        one.step()
        assert failures() == (1, False, True)
        assert rig.alert("alerts.channel:county:hook") is None, "once is not yet"
        rig.clock.forward(seconds=2)
        two.step()
        assert failures() == (2, False, True)
        assert rig.alert("alerts.channel:county:hook").state == "firing"

        rig.http.failing.clear()
        rig.clock.forward(seconds=5)
        one.step()
        assert failures() == (0, True, True)
        assert len(rig.hooks()) == 1
        assert rig.alert("alerts.channel:county:hook").condition is False
        rig.clock.forward(minutes=10)
        two.step()
        assert rig.alert("alerts.channel:county:hook").state == "resolved"
    finally:
        two.close()
        second.dispose()
