"""``edge-server alerts list|ack|silence|told`` as staff type them, and every refusal as one line
in Chinese; ``run`` refuses an ``[alerts]`` section that cannot work, saying where."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.alerts.notify import Notifier
from server.config import load_config
from server.ingest.core import Ingestor
from server.store.db import make_engine
from tests.test_alerts_projection import events, record
from tests.test_ingest import TOPIC
from tests.test_ledger_cli import ok, refused
from tests.test_server_cli import cli

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store where storeroom no2 of the county has been too warm for ten minutes."""
    config = tmp_path / "server.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "server.db"}"\n')
    assert cli(config, "db", "upgrade").returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    hot = [record(31.5, NOW + timedelta(minutes=m)) for m in range(10)]
    Ingestor(engine, "fp").handle(TOPIC, events(1, *hot), NOW)
    engine.dispose()
    return config


def test_list_ack_by_number_and_what_the_record_keeps(store: Path) -> None:
    listed = ok(store, "alerts", "list")
    assert "climate.range:county:no2" in listed
    assert "温湿度超限 31.5 °C 55 %RH" in listed or "温湿度超限 31.5°C/55%" in listed
    assert "告警中" in listed
    assert "firing" in ok(store, "alerts", "list", "--lang", "en")
    said = ok(store, "alerts", "ack", "1", "--by", "李保管", "--action", "开启空调")
    assert "已确认告警 climate.range:county:no2" in said
    listed = ok(store, "alerts", "list")
    assert "已确认" in listed
    assert "李保管" in listed
    assert "开启空调" in listed
    ok(
        store,
        "alerts",
        "ack",
        "climate.range:county:no2",
        "--by",
        "李保管",
        "--action",
        "开启除湿机",
    )
    assert "开启除湿机" in ok(store, "alerts", "list"), "acknowledged again: the newer action"


def test_refusals_are_one_line(store: Path) -> None:
    assert refused(store, "alerts", "ack", "99", "--by", "李") == "没有告警 99"
    assert refused(store, "alerts", "ack", "climate.range:county:no9", "--by", "李") == (
        "没有告警 climate.range:county:no9"
    )
    assert "--by" in refused(store, "alerts", "ack", "1", "--by", "")
    assert "30d" in refused(store, "alerts", "silence", "1", "--for", "2x", "--by", "王")
    assert "30d" in refused(store, "alerts", "silence", "1", "--for", "31d", "--by", "王")
    assert refused(store, "alerts", "silence", "99", "--for", "2h", "--by", "王") == "没有告警 99"
    assert refused(store, "alerts", "told", "x") == "没有告警 x"
    for loose in ("c", "climate", "nothing:county:"):
        assert "须为告警编号" in refused(
            store, "alerts", "silence", loose, "--for", "1h", "--by", "王"
        )


def test_silence_and_who_was_told(store: Path) -> None:
    said = ok(store, "alerts", "silence", "climate.range:county:", "--for", "2h", "--by", "王",
              "--reason", "空调检修")  # fmt: skip
    assert "已静默 climate.range:county:" in said
    assert "当前 1 条未解除告警" in said
    assert ok(store, "alerts", "told", "1").strip() == "尚未通知任何人"
    config = load_config(store)
    engine = make_engine(config.database.url)
    later = NOW + timedelta(hours=3)
    notifier = Notifier(engine, config.alerts, config.server.zone, now=lambda: later)
    notifier.step()
    notifier.close()
    engine.dispose()
    told = ok(store, "alerts", "told", "1")
    assert "log" in told
    assert "已送达" in told, "told once the silence ended"


@pytest.mark.parametrize(
    ("section", "said"),
    [
        ('[[alerts.channels]]\nname = "sms"\nkind = "sms"\nurl = "http://x/"\n', "needs body"),
        ('[alerts]\nquiet_hours = "22-7"\n', "HH:MM-HH:MM"),
        ("[alerts.limits.default]\ntemperature_c = [30, 10]\n", "low < high"),
        ('[[alerts.contacts]]\nsite = "county"\nname = "李"\nphone = "call me"\n', "phone"),
        ('[[alerts.channels]]\nname = "a"\nkind = "log"\n[[alerts.channels]]\nname = "a"\n'
         'kind = "log"\n', "unique"),
        ('[alerts.rules."climate.rnage"]\nfor_s = 1\n', "no rule climate.rnage"),
        ('[[alerts.contacts]]\nsite = "county"\nname = "李"\n', "needs a phone or an email"),
        ('[[alerts.channels]]\nname = "sms"\nkind = "sms"\nurl = "http://x/"\n'
         'body = "to=$mobile&msg=$text"\n', "takes $phone, $text and $key"),
    ],
)  # fmt: skip
def test_an_alerts_section_that_cannot_work_is_refused_saying_where(
    tmp_path: Path, section: str, said: str
) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "s.db"}"\n{section}')
    done = cli(config, "check")
    assert done.returncode == 2, done.stdout
    assert said in done.stderr
    assert "alerts" in done.stderr


def test_the_deployment_example_is_valid() -> None:
    example = Path(__file__).parent.parent / "deploy" / "examples" / "server.toml"
    done = cli(example, "check")
    assert done.returncode == 0, done.stderr
    assert len(load_config(example).alerts.contacts) >= 3
