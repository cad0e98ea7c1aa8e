"""A bad configuration fails with one clear line per problem, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig, load_config
from edge_agent.configfile import ConfigError, loads
from server.config import load_config as load_server_config
from tests.support import BIN

EXAMPLES = Path(__file__).parent.parent / "deploy" / "examples"

GOOD = """
[agent]
id = "station-1"
site = "county"
data_dir = "/tmp/x"

[[climate.storerooms]]
id = "no1"
name = "一号库"
product_group = "condoms"

[[buses]]
id = "bus1"
kind = "tcp"
host = "127.0.0.1"

[[climate.sensors]]
id = "s1"
storeroom = "no1"
bus = "bus1"
address = 1
profile = "rh-t-holding-x10"

[[climate.sensors]]
id = "s2"
storeroom = "no1"
bus = "bus1"
address = 2
profile = "rh-t-holding-x10"

[[climate.sensors]]
id = "s3"
storeroom = "no1"
bus = "bus1"
address = 3
profile = "rh-t-holding-x10"
"""


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_examples_are_valid() -> None:
    agent = load_config(EXAMPLES / "agent.toml")
    assert {r.product_group for r in agent.climate.storerooms} == {"condoms", "pills", "iud"}
    for room in agent.climate.storerooms:
        assert sum(s.storeroom == room.id for s in agent.climate.sensors) == 2
    server = load_server_config(EXAMPLES / "server.toml")
    assert server.server.timezone == "Asia/Shanghai"


BAD_AGENT = [
    (
        GOOD.replace("address = 3", "address = 300"),
        "agent.toml: climate.sensors[2].address: must be 1..247",
    ),
    (GOOD.replace('id = "station-1"\n', ""), "agent.toml: agent.id: is required"),
    (GOOD.replace("data_dir", "datadir"), "agent.toml: agent.datadir: unknown key"),
    (
        GOOD.replace("address = 2", 'address = "two"'),
        "agent.toml: climate.sensors[1].address: must be a whole number (got 'two')",
    ),
    (GOOD.replace('kind = "tcp"', 'kind = "udp"'), "agent.toml: buses[0]: "),
    (
        GOOD.replace(
            'storeroom = "no1"\nbus = "bus1"\naddress = 2',
            'storeroom = "no4"\nbus = "bus1"\naddress = 2',
        ),
        "agent.toml: climate.sensors[1].storeroom: unknown storeroom 'no4' (known: no1)",
    ),
    (
        GOOD.replace("address = 3", "address = 2"),
        "agent.toml: climate.sensors[2].address: address 2 on bus 'bus1' is already used by "
        "climate.sensors[1]",
    ),
    (
        GOOD.replace('id = "s3"', 'id = "s1"'),
        "agent.toml: climate.sensors[2].id: duplicate id 's1'",
    ),
    (
        GOOD.replace(
            'profile = "rh-t-holding-x10"\n\n[[climate.sensors]]\nid = "s3"',
            'profile = "acme"\n\n[[climate.sensors]]\nid = "s3"',
        ),
        "agent.toml: climate.sensors[1]: unknown profile 'acme'",
    ),
    (
        GOOD.replace('id = "station-1"', 'id = "Station 1"'),
        "agent.toml: agent.id: 'Station 1' is not a valid identifier",
    ),
    (GOOD + "\n[mqtt\nport = 1", "agent.toml: invalid TOML: "),
    (GOOD + "\n[mqtt]\nport = 70000\n", "agent.toml: mqtt.port: must be 1..65535"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_AGENT)
def test_bad_agent_config_names_file_path_and_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value).replace(str(tmp_path) + "/", "")
    assert message.splitlines()[0].startswith(expected), message


def test_all_problems_are_listed_one_per_line(tmp_path: Path) -> None:
    text = GOOD.replace("address = 3", "address = 0").replace("data_dir", "datadir")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(str(tmp_path / "agent.toml") + ": ") for line in lines)


def test_field_errors_and_cross_section_problems_come_together(tmp_path: Path) -> None:
    """A bad sensor's problems are all reported in one run, not one per run."""
    text = (
        GOOD.replace(
            'id = "s3"\nstoreroom = "no1"\nbus = "bus1"\naddress = 3\nprofile = "rh-t-holding-x10"',
            'id = "s3"\nstoreroom = "no9"\nbus = "bus9"\naddress = 2\nprofile = "acme"',
        )
        + '\n[mqtt]\nhost = ""\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    for part in (
        "climate.sensors[2]: unknown profile 'acme'",
        "climate.sensors[2].storeroom: unknown storeroom 'no9'",
        "climate.sensors[2].bus: unknown Modbus bus 'bus9'",
        "mqtt.host: ",
    ):
        assert part in message, message


def test_an_empty_broker_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.host: "):
        load_config(write(tmp_path, GOOD + '\n[mqtt]\nhost = ""\n'))


def test_a_file_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_config(path).agent.id == "station-1"


def test_devices_on_a_shared_bus_must_not_share_an_address(tmp_path: Path) -> None:
    relay = (
        '\n[climate.storerooms.alarm_output]\nbus = "bus1"\naddress = {address}\ncoil = {coil}\n'
    )
    rooms = GOOD.replace(
        'product_group = "condoms"\n',
        'product_group = "condoms"\n' + relay.format(address=9, coil=0),
    )
    two_coils = rooms + (
        '\n[[climate.storerooms]]\nid = "no2"\nname = "二号库"\nproduct_group = "pills"\n'
        + relay.format(address=9, coil=1)
    )
    assert load_config(write(tmp_path, two_coils)).climate.storerooms[1].alarm_output
    with pytest.raises(ConfigError, match=r"coil 0 at address 9 on bus 'bus1' is already used"):
        load_config(write(tmp_path, two_coils.replace("coil = 1", "coil = 0")))
    with pytest.raises(ConfigError, match=r"alarm_output.address: address 2 on bus 'bus1'"):
        load_config(write(tmp_path, rooms.replace("address = 9", "address = 2")))


def test_buses_under_climate_are_still_read(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD.replace("[[buses]]", "[[climate.buses]]")))
    assert [b.id for b in config.buses] == ["bus1"]


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe[agent]")
    with pytest.raises(ConfigError, match=r"bin\.toml: not UTF-8 text"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[server]\ntimezone = "Mars/Olympus"\n',
            "server.toml: server.timezone: unknown time zone",
        ),
        (
            '[database]\nurl = "mysql://x"\n',
            "server.toml: database.url: must be sqlite:////absolute/path/server.db or postgresql",
        ),
        (
            '[server]\nlanguage = "fr"\n',
            "server.toml: server.language: input should be 'zh' or 'en' (got 'fr')",
        ),
    ],
)
def test_bad_server_config(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_server_config(write(tmp_path, text, "server.toml"))
    assert str(info.value).replace(str(tmp_path) + "/", "").startswith(expected)


def test_cli_check_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("address = 3", "address = 300"))
    result = subprocess.run(
        [str(BIN / "edge-agent"), "--config", "agent.toml", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == "agent.toml: climate.sensors[2].address: must be 1..247\n"
    assert "Traceback" not in result.stdout + result.stderr
    assert path.exists()


def test_cli_check_accepts_good_config_and_warns_on_one_sensor(tmp_path: Path) -> None:
    text = GOOD.replace(
        'storeroom = "no1"\nbus = "bus1"\naddress = 3',
        'storeroom = "no2"\nbus = "bus1"\naddress = 3',
    )
    text += '\n[[climate.storerooms]]\nid = "no2"\nname = "二号库"\nproduct_group = "pills"\n'
    write(tmp_path, text)
    result = subprocess.run(
        [str(BIN / "edge-agent"), "--config", "agent.toml", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert "storeroom no2 has 1 sensor(s)" in result.stderr


def test_server_cli_bad_config_exits_2(tmp_path: Path) -> None:
    write(tmp_path, "[mqtt]\nport = 0\n", "server.toml")
    result = subprocess.run(
        [str(BIN / "edge-server"), "--config", "server.toml", "climate", "latest"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == "server.toml: mqtt.port: must be 1..65535\n"


def test_example_sensor_simulation_is_valid() -> None:
    from simulators.sensors import load_sensors_config

    config = load_sensors_config(EXAMPLES / "sensors.toml")
    assert config.rtu[0].relays[0].unit == 9
    assert {e.kind for e in config.scenario} == {"ac_failure", "silent"}


def test_a_custom_float32_word_swapped_map_from_the_config() -> None:
    from edge_agent.climate.service import climate_map
    from edge_agent.drivers.registers import ByteOrder, DataType, decode

    text = GOOD.replace(
        'address = 3\nprofile = "rh-t-holding-x10"',
        "address = 3\n"
        'registers.temperature = { function = 3, address = 16, type = "float32", '
        'byte_order = "CDAB" }\n'
        'registers.humidity = { function = 3, address = 18, type = "float32", '
        'byte_order = "CDAB" }',
    )
    sensor = loads(text, AgentConfig).climate.sensors[2]
    cmap = climate_map(sensor)
    assert (cmap.temperature.type, cmap.temperature.byte_order) == (
        DataType.FLOAT32,
        ByteOrder.CDAB,
    )
    assert decode(cmap.temperature, [0x0000, 0x41AC]) == 21.5
