"""The link under failure, with real processes and a Mosquitto with authentication and ACL on.

For a stream of numbered events: every event arrives once and is applied in order, whatever
is stopped, killed, replayed or corrupted in between.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.site import SERVER_USER, Site
from tests.support import Processes, wait_for
from tests.test_wire import climate_event


@pytest.fixture
def site(tmp_path: Path, processes: Processes) -> Iterator[Site]:
    s = Site(tmp_path, processes)
    yield s
    processes.stop_all()
    s.broker.stop()


def test_broker_stopped_and_restarted_every_event_arrives_once_in_order(site: Site) -> None:
    site.start_server()
    site.start_agent()
    site.inject(1500)
    site.broker.stop()
    wait_for(lambda: "broker link:" in site.processes.log("station-1"), 30, what="link lost")
    last = site.inject(1500)
    site.broker.start()
    site.wait_acked(last)
    site.assert_complete(site.wait_all_delivered())


def test_agent_killed_mid_burst_loses_nothing_and_doubles_nothing(site: Site) -> None:
    last = site.inject(20_000, "mixed")
    site.start_server()
    site.start_agent()
    wait_for(lambda: site.acked() > 1000, 60, interval=0.05, what="part of the burst delivered")
    site.kill_agent()
    assert site.acked() < last, "the kill must land in the middle of the burst"
    site.start_agent()
    site.assert_complete(site.wait_all_delivered())
    assert site.kinds("cabinet.dispense") == 20_000 // 43


def test_killed_agent_is_marked_offline_by_its_last_will(site: Site) -> None:
    site.start_server()
    site.start_agent()
    wait_for(lambda: site.query("SELECT online FROM agents") == [(1,)], 30, what="online")
    site.kill_agent()
    wait_for(lambda: site.query("SELECT online FROM agents") == [(0,)], 30, what="last will")


def retained_status(site: Site, agent: str = "station-1") -> list[dict[str, object]]:
    """The status the broker holds for ``agent``, as a new subscriber receives it."""
    got: list[dict[str, object]] = []
    spy = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"status-spy-{time.monotonic_ns()}")
    spy.username_pw_set(SERVER_USER, site.passwords[SERVER_USER])
    spy.on_message = lambda _c, _u, m: got.append(json.loads(m.payload)) if m.payload else None
    spy.connect("127.0.0.1", site.broker.port)
    spy.subscribe(f"fp/v1/county/{agent}/status", qos=1)
    spy.loop_start()
    try:
        wait_for(lambda: got, 5, what="retained status")
    finally:
        spy.loop_stop()
        spy.disconnect()
    return got


def test_agent_killed_while_the_server_is_down_is_shown_offline(site: Site) -> None:
    site.start_server()
    site.start_agent()
    wait_for(lambda: site.online() == "yes", 30, what="online")
    site.stop_server()
    site.kill_agent()
    wait_for(
        lambda: retained_status(site)[-1]["online"] is False, 30, what="the broker's last will"
    )
    site.start_server()
    wait_for(lambda: site.online() == "no", 15, what="shown offline")
    said = "SELECT online FROM agents WHERE agent_id = 'station-1'"
    wait_for(lambda: site.query(said) == [(0,)], 15, what="the retained will itself received")


def test_agent_silent_past_offline_after_is_offline_whatever_it_said(site: Site) -> None:
    site.start_server()
    quiet = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-station-2")
    quiet.username_pw_set("station-2", site.passwords["station-2"])
    quiet.connect("127.0.0.1", site.broker.port)
    quiet.loop_start()
    status = {"v": 1, "agent_id": "station-2", "online": True}
    quiet.publish("fp/v1/county/station-2/status", json.dumps(status), 1, True).wait_for_publish(5)
    quiet.loop_stop()  # no will: the broker keeps saying online
    try:
        wait_for(lambda: site.online("station-2") == "yes", 15, what="online")
        wait_for(lambda: site.online("station-2") == "no", 30, what="offline after 10 s")
    finally:
        quiet.disconnect()


def test_server_down_for_a_while_nothing_lost(site: Site) -> None:
    site.start_server()
    site.start_agent()
    site.wait_acked(1)
    site.stop_server()
    last = site.inject(2000)
    wait_for(
        lambda: "is offline" in site.processes.log("station-1"), 30, what="server seen offline"
    )
    site.start_server()
    site.wait_acked(last)
    site.assert_complete(site.wait_all_delivered())


def server_online(site: Site, since: float) -> bool:
    """Whether the broker holds an online status of the ingest process started after ``since``."""
    got: list[dict[str, object]] = []
    spy = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"server-spy-{time.monotonic_ns()}")
    spy.username_pw_set("station-2", site.passwords["station-2"])
    spy.on_message = lambda _c, _u, m: got.append(json.loads(m.payload)) if m.payload else None
    spy.connect("127.0.0.1", site.broker.port)
    spy.subscribe("fp/v1/server/+", qos=1)
    spy.loop_start()
    try:
        wait_for(lambda: got, 5, what="retained server status")
    finally:
        spy.loop_stop()
        spy.disconnect()
    started = datetime.fromisoformat(str(got[-1]["started_at"])).timestamp()
    return got[-1]["online"] is True and started >= since


@pytest.mark.parametrize("session_expiry_s", [86400, 0], ids=["kept-session", "no-session"])
def test_server_restart_ingest_resumes_within_2_s(site: Site, session_expiry_s: int) -> None:
    """Events sent while the server is down wait at the broker in its session; without one,
    the agent resends when it sees the server's status come online. Either way ingest resumes
    at once, not after the agent's acknowledgement timeout (60 s here)."""
    toml = site.agent_toml().read_text().replace("ack_timeout_s = 5", "ack_timeout_s = 60")
    site.agent_toml().write_text(toml)
    kept = f"session_expiry_s = {session_expiry_s}"
    site.server_toml.write_text(site.server_config(f"sqlite:///{site.db}", kept))
    site.start_server()
    site.start_agent()
    site.wait_acked(1)
    site.stop_server()
    last = site.inject(500)
    wait_for(lambda: site.last_seq() >= last, what="events numbered")
    before = site.acked()
    since = time.time() - 1
    site.start_server()
    wait_for(lambda: server_online(site, since), 30, interval=0.2, what="server back online")
    site.wait_acked(last, timeout=2.0)
    assert before < last
    site.assert_complete(site.wait_all_delivered())


def subscribed(client: mqtt.Client, *topics: str) -> None:
    """Subscribe and wait for the broker's SUBACKs (the client's loop must be running)."""
    acked: list[int] = []
    client.on_subscribe = lambda _c, _u, mid, _rc, _p: acked.append(mid)
    mids = [client.subscribe(t, qos=1)[1] for t in topics]
    wait_for(lambda: set(mids) <= set(acked), 10, what=f"subscribed to {topics}")


def capture_batches(site: Site) -> tuple[mqtt.Client, list[bytes]]:
    seen: list[bytes] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="spy")
    client.username_pw_set(SERVER_USER, site.passwords[SERVER_USER])
    client.on_message = lambda _c, _u, m: seen.append(bytes(m.payload))
    client.connect("127.0.0.1", site.broker.port)
    client.loop_start()
    subscribed(client, "fp/v1/+/+/events")
    return client, seen


def test_replayed_and_duplicated_batches_are_applied_once(site: Site) -> None:
    spy, seen = capture_batches(site)
    site.start_server()
    site.start_agent()
    last = site.inject(600)
    site.wait_acked(last)
    wait_for(lambda: len(seen) >= 3, what="batches captured")
    spy.loop_stop()
    spy.disconnect()
    records_before = site.query("SELECT count(*) FROM climate_records")

    replay = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="replayer")
    replay.username_pw_set("station-1", site.passwords["station-1"])
    replay.connect("127.0.0.1", site.broker.port)
    replay.loop_start()
    duplicates_before = site.processes.log("server").count("duplicate")
    for payload in [seen[0], seen[0], *seen]:
        replay.publish("fp/v1/county/station-1/events", payload, qos=1).wait_for_publish(5)
    wait_for(
        lambda: site.processes.log("server").count("duplicate") >= duplicates_before + len(seen),
        what="every replayed batch seen as duplicate",
    )
    replay.loop_stop()
    replay.disconnect()
    assert site.query("SELECT count(*) FROM climate_records") == records_before
    site.assert_complete(site.acked())
    assert "duplicate" in site.processes.log("server")


def test_corrupt_outbox_is_kept_aside_and_the_agent_starts_clean(site: Site) -> None:
    site.start_server()
    site.start_agent()
    last = site.inject(100)
    site.wait_acked(last)
    site.processes.stop("station-1")
    site.inject(50)  # these will be lost with the file
    outbox = site.outbox()
    outbox.write_bytes(b"\x00garbage\xff" * 5000)
    for suffix in ("-wal", "-shm"):
        Path(str(outbox) + suffix).unlink(missing_ok=True)
    site.start_agent()
    wait_for(lambda: site.query("SELECT count(*) FROM lost_ranges") == [(1,)], 30, what="epoch")
    log = site.processes.log("station-1")
    assert "is corrupt" in log
    assert "Traceback" not in log
    kept = list(outbox.parent.glob("outbox.db.corrupt-*"))
    assert kept, "the corrupt file is kept for inspection"
    resets = site.bodies("agent.outbox_reset")
    assert len(resets) == 1
    assert "corrupt" in resets[0]["payload"]["kept_as"]  # type: ignore[index]
    site.inject(30)
    site.assert_complete(site.wait_all_delivered())


@pytest.mark.parametrize("damage", ["emptied", "missing"])
def test_an_emptied_or_deleted_outbox_is_reported_with_the_count_lost(
    site: Site, damage: str
) -> None:
    site.start_server()
    site.start_agent()
    site.inject(100)
    last = site.wait_all_delivered()

    def outbox_acked() -> int:
        with closing(sqlite3.connect(site.outbox(), timeout=10)) as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key = 'acked_seq'").fetchone()[0])

    wait_for(lambda: outbox_acked() >= last, 60, what="the agent forgot what was acknowledged")
    site.processes.stop("station-1")
    site.inject(50)  # these will be lost with the file
    numbered = site.last_seq()
    outbox = site.outbox()
    for suffix in ("-wal", "-shm"):
        Path(str(outbox) + suffix).unlink(missing_ok=True)
    if damage == "emptied":
        outbox.write_bytes(b"")
    else:
        outbox.unlink()
    site.start_agent()
    wait_for(lambda: site.query("SELECT count(*) FROM lost_ranges") == [(1,)], 60, what="epoch")
    wait_for(lambda: len(site.bodies("agent.outbox_reset")) == 1, 60, what="reset reported")
    [reset] = site.bodies("agent.outbox_reset")
    payload = reset["payload"]
    assert payload["cause"] == damage  # type: ignore[index]
    assert payload["lost_events"] == 50  # type: ignore[index]
    assert payload["previous_last_seq"] == numbered  # type: ignore[index]
    log = site.processes.log("station-1")
    assert f"was {damage}" in log
    assert "Traceback" not in log
    site.inject(30)
    site.assert_complete(site.wait_all_delivered())


def test_a_rotten_byte_loses_only_its_own_event_and_is_reported(site: Site) -> None:
    last = site.inject(20)
    outbox = site.outbox()
    with closing(sqlite3.connect(outbox)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (event_id,) = conn.execute("SELECT id FROM events WHERE seq = 7").fetchone()
    data = bytearray(outbox.read_bytes())
    where = data.find(f'"id":"{event_id}"'.encode())
    assert where > 0
    data[where + 8] ^= 0x20  # one flipped bit in the stored body
    outbox.write_bytes(bytes(data))
    site.start_server()
    site.start_agent()
    site.wait_acked(last, timeout=30)
    site.assert_complete(site.wait_all_delivered())
    [stand_in] = site.bodies("agent.event_unreadable")
    assert stand_in["seq"] == 7
    assert site.query("SELECT count(*) FROM climate_records")[0][0] == last - 1
    assert "cannot be read back" in site.processes.log("station-1")
    assert site.query("SELECT count(*) FROM dead_letters") == [(0,)], "nothing refused"


def test_outbox_cap_folds_climate_and_keeps_every_ledger_event(
    tmp_path: Path, processes: Processes
) -> None:
    site = Site(tmp_path, processes, agent_extra="[outbox]\nmax_events = 300\n")
    try:
        site.broker.stop()
        last = site.inject(4300, "mixed")  # 100 dispenses among 4200 climate records
        site.broker.start()
        site.start_server()
        site.start_agent()
        site.wait_acked(last)
        site.assert_complete(site.wait_all_delivered())
        assert site.kinds("cabinet.dispense") == 100
        folded = site.query("SELECT sum(count) FROM climate_summaries")[0][0]
        kept = site.query("SELECT count(*) FROM climate_records")[0][0]
        assert folded
        assert int(folded) > 0  # type: ignore[call-overload]
        assert int(folded) + int(kept) == 4200  # type: ignore[call-overload]
        alarms = site.bodies("agent.storage_alarm")
        assert any("cap_reached" in str(b) for b in alarms)
    finally:
        processes.stop_all()
        site.broker.stop()


def test_agent_credentials_cannot_reach_another_agents_topics(site: Site) -> None:
    received: list[str] = []
    server = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watch")
    server.username_pw_set(SERVER_USER, site.passwords[SERVER_USER])
    server.on_message = lambda _c, _u, m: received.append(m.topic)
    server.connect("127.0.0.1", site.broker.port)
    server.subscribe("fp/v1/#", qos=1)
    server.loop_start()

    snooped: list[str] = []
    intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="intruder")
    intruder.username_pw_set("station-1", site.passwords["station-1"])
    intruder.on_message = lambda _c, _u, m: snooped.append(m.topic)
    intruder.connect("127.0.0.1", site.broker.port)
    intruder.loop_start()
    subscribed(
        intruder,
        "fp/v1/county/station-2/commands",
        "fp/v1/county/station-2/acks",
        "fp/v1/county/station-1/commands",
    )
    for channel in ("events", "status", "acks", "commands"):
        intruder.publish(f"fp/v1/county/station-2/{channel}", b"{}", qos=1).wait_for_publish(5)
    server.publish("fp/v1/county/station-2/commands", b"{}", qos=1).wait_for_publish(5)
    # Markers each sender may use, sent after the forbidden ones: the broker keeps one sender's
    # messages in order, so once a marker is in, anything let through before it would be too.
    intruder.publish("fp/v1/county/station-1/events", b"{}", qos=1).wait_for_publish(5)
    server.publish("fp/v1/county/station-1/commands", b"{}", qos=1).wait_for_publish(5)
    wait_for(lambda: "fp/v1/county/station-1/events" in received, what="own topic delivered")
    wait_for(lambda: "fp/v1/county/station-1/commands" in snooped, what="own commands delivered")
    snooped.remove("fp/v1/county/station-1/commands")
    assert not [
        t for t in received if "/station-2/" in t and t.endswith(("events", "status", "acks"))
    ]
    assert snooped == [], "station-1 must not read station-2's commands or acks"

    codes: list[object] = []
    wrong = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wrong")
    wrong.username_pw_set("station-1", "not-the-password")
    wrong.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc)
    wrong.connect("127.0.0.1", site.broker.port)
    wrong.loop_start()
    wait_for(lambda: codes, what="CONNACK for a wrong password")
    wrong.loop_stop()
    assert codes[0].is_failure  # type: ignore[attr-defined]
    for c in (server, intruder):
        c.loop_stop()
        c.disconnect()


def test_command_is_applied_once_and_its_result_reaches_the_server(site: Site) -> None:
    site.start_server()
    site.start_agent()
    wait_for(lambda: site.query("SELECT online FROM agents") == [(1,)], 30, what="online")
    cid = site.server_cli("command", "send", "station-1", "ping").strip()
    wait_for(
        lambda: site.query("SELECT result_ok FROM commands WHERE id = ?", cid) == [(1,)],
        30,
        what="ping result",
    )
    message = site.query("SELECT message FROM commands WHERE id = ?", cid)[0][0]
    again = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="again")
    again.username_pw_set(SERVER_USER, site.passwords[SERVER_USER])
    again.connect("127.0.0.1", site.broker.port)
    again.loop_start()
    for _ in range(2):
        again.publish("fp/v1/county/station-1/commands", str(message), qos=1).wait_for_publish(5)
    again.loop_stop()
    again.disconnect()
    # The agent takes commands one at a time, in order: once a later one is answered, the
    # repeats before it have been seen.
    later = site.server_cli("command", "send", "station-1", "ping").strip()
    wait_for(
        lambda: site.query("SELECT result_ok FROM commands WHERE id = ?", later) == [(1,)],
        30,
        what="a later command's result",
    )
    assert site.kinds("command.result") == 2, "a command delivered three times is applied once"
    assert "ok" in site.server_cli("command", "list")

    bad = site.server_cli(
        "command", "send", "station-1", "config.update", "--data", '{"toml": "x = ["}'
    )
    wait_for(
        lambda: site.query("SELECT result_ok FROM commands WHERE id = ?", bad.strip()) == [(0,)],
        30,
        what="config.update refused",
    )
    detail = site.query("SELECT result_detail FROM commands WHERE id = ?", bad.strip())[0][0]
    assert "invalid TOML" in str(detail)

    newer = json.loads(str(message))
    newer.update(id=str(uuid.uuid4()), body={"kind": "box.reboot", "box": "b1"})
    again.reconnect()
    again.loop_start()
    again.publish("fp/v1/county/station-1/commands", json.dumps(newer), qos=1).wait_for_publish(5)
    again.loop_stop()
    again.disconnect()

    def answered() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = site.bodies("command.result")
        return [b for b in results if b["payload"]["command_id"] == newer["id"]]

    [result] = wait_for(answered, 30, what="a command of a kind the agent does not know answered")
    assert result["payload"]["ok"] is False
    assert "unsupported command kind 'box.reboot'" in result["payload"]["detail"]


def test_agent_without_clock_adopts_server_time_and_earlier_events_are_re_dated(
    tmp_path: Path, processes: Processes
) -> None:
    site = Site(tmp_path, processes, agent_extra='[clock]\nsource = "server"\n')
    try:
        site.start_server()
        site.start_agent()
        site.wait_acked(1)
        started = site.bodies("agent.started")
        assert [e["clock_synced"] for e in started] == [False], "stamped before server time"
        records = site.inject(5)  # the same boot, no server time known to the inject tool
        site.wait_acked(records)
        undated = (
            "SELECT count(*) FROM climate_records WHERE clock_synced = 0 AND time_corrected = 0"
        )
        assert site.query(undated) == [(5,)]
        wait_for(lambda: site.query("SELECT online FROM agents") == [(1,)], 30, what="online")
        site.server_cli("command", "send", "station-1", "ping")
        wait_for(
            lambda: site.query(undated) == [(0,)],
            30,
            what="climate records re-dated from the boot reference",
        )
        result = site.bodies("command.result")
        assert [e["clock_synced"] for e in result] == [True], "synchronised after a live ack"
        wait_for(
            lambda: '"clock":"server"' in str(site.query("SELECT status FROM agents")),
            30,
            what="status reports the server clock",
        )
    finally:
        processes.stop_all()
        site.broker.stop()


def test_own_malformed_event_is_refused_replaced_and_the_stream_goes_on(site: Site) -> None:
    """A buggy agent's event the server refuses gets a negative acknowledgement naming it; the
    agent puts an ``agent.event_refused`` in its place instead of resending it for ever."""
    last = site.inject(10)
    with closing(sqlite3.connect(site.outbox())) as conn:
        (body,) = conn.execute("SELECT body FROM events WHERE seq = 5").fetchone()
        event = json.loads(body)
        event["payload"]["humidity_pct"] = 250.0
        text = json.dumps(event)  # stored as the buggy agent wrote it: checksum and all
        conn.execute(
            "UPDATE events SET body = ?, crc = ? WHERE seq = 5", [text, zlib.crc32(text.encode())]
        )
        conn.commit()
    site.start_server()
    site.start_agent()
    site.wait_acked(last, timeout=30)
    site.assert_complete(site.wait_all_delivered())
    [stand_in] = site.bodies("agent.event_refused")
    assert stand_in["seq"] == 5
    assert stand_in["payload"]["refused_id"] == event["id"]  # type: ignore[index]
    assert "humidity_pct" in stand_in["payload"]["reason"]  # type: ignore[index]
    assert site.query("SELECT seq FROM dead_letters") == [(5,)]
    assert "replaced by agent.event_refused" in site.processes.log("station-1")


NOW = "2026-11-24T00:00:00+00:00"


def garbage(i: int) -> bytes:
    """What a broken or hostile sender on station-2's account might publish."""
    bad_event = climate_event(i + 1, agent_id="station-2")
    if i % 4 == 0:
        return b"\x00garbage %d" % i
    if i % 4 == 1:
        return json.dumps({"hello": i}).encode()
    if i % 4 == 2:
        bad_event["payload"]["humidity_pct"] = 999
    else:
        bad_event["seq"] = 50_000_000 + i
    batch = {
        "v": 1,
        "agent_id": "station-2",
        "epoch": "feedfeed",
        "sent_at": "2026-11-24T00:00:00+00:00",
    }
    return json.dumps({**batch, "events": [bad_event]}).encode()


def test_a_flood_from_one_agent_neither_stalls_another_nor_fills_the_disk(site: Site) -> None:
    site.start_server()
    site.start_agent()
    site.wait_acked(1)
    flooder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-station-2")
    flooder.username_pw_set("station-2", site.passwords["station-2"])
    flooder.max_inflight_messages_set(1000)
    flooder.max_queued_messages_set(0)
    flooder.connect("127.0.0.1", site.broker.port)
    flooder.loop_start()
    status = {"v": 1, "agent_id": "station-2", "online": True}
    flooder.publish("fp/v1/county/station-2/status", json.dumps(status), 1).wait_for_publish(5)
    wait_for(lambda: site.query("SELECT 1 FROM agents WHERE agent_id = 'station-2'"))
    flood_started = datetime.now(UTC)

    def flood() -> None:
        """10,000 messages over about 5 s: some 50 times what a box sends, with no pause for
        acknowledgements, so that station-1 streams all through it."""
        for i in range(10_000):
            flooder.publish("fp/v1/county/station-2/events", garbage(i), qos=1)
            if i % 100 == 99:
                time.sleep(0.05)

    sender = threading.Thread(target=flood)
    sender.start()
    last = 0
    while sender.is_alive():
        last = site.inject(50)
    last = site.inject(50)
    sender.join()
    site.wait_acked(last)
    counted = "SELECT dead_lettered + dead_letters_dropped FROM agents WHERE agent_id = ?"
    wait_for(
        lambda: site.query(counted, "station-2") == [(10_000,)],
        30,
        interval=0.2,
        what="every garbage message kept or counted",
    )
    flooder.loop_stop()
    flooder.disconnect()
    flood_ended = datetime.now(UTC)
    delays = []
    for received, payload in site.query(
        "SELECT m.received_at, m.payload FROM messages m JOIN streams s ON s.id = m.stream_id "
        "WHERE s.agent_id = 'station-1'"
    ):
        at = datetime.fromisoformat(str(received)).replace(tzinfo=UTC)
        if flood_started <= at <= flood_ended:
            delays.append(at - datetime.fromisoformat(json.loads(payload)["sent_at"]))  # type: ignore[arg-type]
    assert len(delays) >= 3, "station-1 streamed all through the flood"
    assert max(delays) <= timedelta(seconds=1), f"station-1 delayed up to {max(delays)}"
    kept = site.query("SELECT count(*) FROM dead_letters WHERE agent_id = 'station-2'")
    assert kept[0][0] <= 30 * (1 + (datetime.now(UTC) - flood_started).total_seconds() // 60)  # type: ignore[operator]
    site.assert_complete(site.wait_all_delivered())
