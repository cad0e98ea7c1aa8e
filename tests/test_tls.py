"""MQTT over TLS: the county CA and broker certificate made by ``edge-server broker make-certs``,
a real Mosquitto with a TLS listener only, and the agent and server checking the broker's
certificate against the CA (and saying so in one line when it does not match)."""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import MqttSection as AgentMqtt
from edge_agent.config import load_config as load_agent_config
from edge_agent.configfile import ConfigError
from edge_agent.mqtt import MqttError, MqttSession
from server.broker import make_certs
from server.config import MqttSection as ServerMqtt
from server.config import load_config as load_server_config
from tests.site import SERVER_USER, Site
from tests.support import BIN, Broker, Processes, wait_for


def edge_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "edge-server"), *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def site(tmp_path: Path, processes: Processes) -> Iterator[Site]:
    s = Site(tmp_path, processes, agents=["station-1"], tls=True)
    yield s
    processes.stop_all()
    s.broker.stop()


def test_link_over_tls_acknowledges_every_event_end_to_end(site: Site) -> None:
    site.start_server()
    site.start_agent()
    last = site.inject(300)
    site.wait_acked(last)
    site.assert_complete(site.wait_all_delivered())
    assert f"connected to broker 127.0.0.1:{site.broker.port}" in site.processes.log("station-1")
    for name in ("server", "station-1"):
        assert "Traceback" not in site.processes.log(name)


def test_broker_refuses_plain_mqtt_on_its_tls_listener(site: Site) -> None:
    plain = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain-spy")
    plain.username_pw_set(SERVER_USER, site.passwords[SERVER_USER])
    plain.connect("127.0.0.1", site.broker.port)  # the TCP connection itself is made...
    # ...but the broker takes the CONNECT for a bad TLS hello and drops the connection.
    rc = wait_for(
        lambda: (rc := plain.loop(timeout=0.1)) != mqtt.MQTT_ERR_SUCCESS and rc,
        10,
        what="the broker dropping a plain MQTT connection",
    )
    assert rc == mqtt.MQTT_ERR_CONN_LOST
    assert not plain.is_connected()


def test_wrong_ca_is_one_clear_line_and_both_sides_keep_trying(site: Site, tmp_path: Path) -> None:
    stranger = make_certs(tmp_path / "other-county", ["localhost"], days=30)
    for path in (site.agent_toml(), site.server_toml):
        text = path.read_text()
        path.write_text(text.replace(str(site.root / "tls" / "ca.crt"), str(stranger.ca_cert)))
    site.start_server()
    site.start_agent()
    refused = (
        f"cannot connect to 127.0.0.1:{site.broker.port}: TLS: broker certificate not accepted "
        "(unable to get local issuer certificate); check mqtt.ca_file and mqtt.host"
    )
    wait_for(
        lambda: site.processes.log("station-1").count(refused) >= 3,
        30,
        interval=0.2,
        what="the agent retrying with a clear TLS error",
    )
    wait_for(
        lambda: (
            f"cannot connect to broker 127.0.0.1:{site.broker.port}: TLS: broker "
            "certificate not accepted" in site.processes.log("server")
        ),
        30,
        interval=0.2,
        what="the server's TLS error",
    )
    agent_log, server_log = site.processes.log("station-1"), site.processes.log("server")
    assert "Traceback" not in agent_log
    assert "Traceback" not in server_log
    assert next(line for line in agent_log.splitlines() if refused in line).endswith(refused)
    # The server says it once, not at every attempt; nothing got through.
    assert server_log.count("certificate not accepted") == 1
    assert site.acked() == 0


async def test_session_errors_are_one_line(tmp_path: Path, broker: Broker) -> None:
    certs = make_certs(tmp_path / "tls", ["localhost"], days=30)

    async def connect(port: int, ca_file: Path, host: str = "127.0.0.1") -> str:
        tls = AgentMqtt(host=host, port=port, tls=True, ca_file=ca_file)
        session = MqttSession(client_id="tls-probe", host=host, port=port, keepalive_s=5, tls=tls)
        with pytest.raises(MqttError) as caught:
            await session.connect(within_s=5)
        await session.close()
        return str(caught.value)

    # No CA file: the file is named, no connection attempted.
    missing = tmp_path / "missing.crt"
    assert await connect(broker.port, missing) == (
        f"TLS: cannot use mqtt.ca_file {missing}: No such file or directory"
    )
    # A file that holds no certificate.
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    assert (await connect(broker.port, junk)).startswith(f"TLS: cannot use mqtt.ca_file {junk}: ")
    # TLS spoken to a plain listener.
    message = await connect(broker.port, certs.ca_cert)
    assert message.startswith(f"cannot connect to 127.0.0.1:{broker.port}: TLS")
    assert message.endswith("is the broker's port a TLS listener?")
    assert "\n" not in message


async def test_host_must_be_named_in_the_broker_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "tls", ["county-server.example"], days=30)
    broker = Broker(
        tmp_path / "broker",
        extra_config=f"certfile {certs.broker_cert}\nkeyfile {certs.broker_key}\n",
    )
    broker.start()
    try:
        tls = AgentMqtt(port=broker.port, tls=True, ca_file=certs.ca_cert)
        session = MqttSession(
            client_id="tls-probe", host="127.0.0.1", port=broker.port, keepalive_s=5, tls=tls
        )
        with pytest.raises(MqttError, match="IP address mismatch") as caught:
            await session.connect(within_s=5)
        await session.close()
        assert "check mqtt.ca_file and mqtt.host" in str(caught.value)
    finally:
        broker.stop()


# --- certificates -------------------------------------------------------------------------------


def test_make_certs_keeps_the_county_ca_and_renews_the_broker_certificate(
    tmp_path: Path,
) -> None:
    out = tmp_path / "tls"
    run = [str(BIN / "edge-server"), "broker", "make-certs", "--out", str(out)]
    first = subprocess.run(
        [*run, "--host", "county-server.local", "--host", "10.0.0.5"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "county CA made" in first.stdout
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {"ca.key": 0o600, "ca.crt": 0o644, "broker.key": 0o640, "broker.crt": 0o644}
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    ca, cert = (out / "ca.crt").read_bytes(), (out / "broker.crt").read_bytes()

    second = subprocess.run(
        [*run, "--host", "county-server.local", "--days", "90"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "county CA kept" in second.stdout
    assert (out / "ca.crt").read_bytes() == ca
    assert (out / "broker.crt").read_bytes() != cert
    # The renewed certificate still verifies against the CA the agents hold.
    context = ssl.create_default_context(cafile=str(out / "ca.crt"))
    context.load_cert_chain(out / "broker.crt", out / "broker.key")
    names = subprocess.run(
        ["openssl", "x509", "-in", str(out / "broker.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:county-server.local" in names
    assert "10.0.0.5" not in names


def test_make_certs_refuses_a_bad_host(tmp_path: Path) -> None:
    result = edge_server("broker", "make-certs", "--out", str(tmp_path / "t"), "--host", "a b")
    assert result.returncode == 1
    assert result.stderr == "broker: --host 'a b' is not a host name or address\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership is set only when run as root")
def test_files_mosquitto_reads_belong_to_its_group(tmp_path: Path) -> None:
    import grp

    try:
        gid = grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        pytest.skip("no mosquitto group (Debian's mosquitto package not installed)")
    certs = make_certs(tmp_path / "tls", ["localhost"], days=30)
    assert (certs.broker_key.stat().st_uid, certs.broker_key.stat().st_gid) == (0, gid)
    assert (certs.ca_key.stat().st_uid, stat.S_IMODE(certs.ca_key.stat().st_mode)) == (0, 0o600)
    passwd = tmp_path / "passwd"
    edge_server(
        "broker", "add-user", "edge-server", "--password-file", str(passwd)
    ).check_returncode()
    st = passwd.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o640)


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("section", [AgentMqtt, ServerMqtt])
def test_tls_settings(section: type[AgentMqtt] | type[ServerMqtt], tmp_path: Path) -> None:
    assert section().port == 1883
    on = section(tls=True, ca_file=tmp_path / "ca.crt")
    assert on.port == 8883
    assert section(tls=True, ca_file=tmp_path / "ca.crt", port=18883).port == 18883


def test_tls_config_errors_are_one_line_each(tmp_path: Path) -> None:
    agent = tmp_path / "agent.toml"
    agent.write_text('[agent]\nid = "a"\nsite = "s"\n[mqtt]\ntls = true\n')
    with pytest.raises(ConfigError) as caught:
        load_agent_config(agent)
    assert str(caught.value) == (
        f"{agent}: mqtt: tls = true needs ca_file (the county CA certificate, ca.crt)"
    )
    server = tmp_path / "server.toml"
    server.write_text('[mqtt]\nca_file = "/etc/edge-server/ca.crt"\n')
    with pytest.raises(ConfigError) as caught:
        load_server_config(server)
    assert str(caught.value) == (
        f"{server}: mqtt: ca_file is set but tls is false; set tls = true to use it"
    )


def test_provisioned_agent_uses_tls_when_the_server_does(tmp_path: Path) -> None:
    server = tmp_path / "server.toml"
    server.write_text(
        '[mqtt]\nhost = "localhost"\ntls = true\nca_file = "/etc/edge-server/ca.crt"\n'
    )
    out = tmp_path / "township-03.toml"
    edge_server(
        "--config", str(server), "broker", "provision-agent",
        "--agent", "township-03", "--site", "demo-county", "--out", str(out),
        "--password-file", str(tmp_path / "passwd"), "--broker-host", "county-server.local",
    ).check_returncode()  # fmt: skip
    mqtt_section = load_agent_config(out).mqtt
    assert (mqtt_section.host, mqtt_section.port, mqtt_section.tls) == (
        "county-server.local",
        8883,
        True,
    )
    assert mqtt_section.ca_file == Path("/etc/edge-agent/ca.crt")
