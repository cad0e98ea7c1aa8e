"""The ledger's commands as county staff use them: master data, a receipt through inspection to
a township and a technician, a stocktake, the stock table, and every refusal in one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from server.clisupport import parse_time
from server.ingest.core import Ingestor
from server.ledger import queries
from server.store.db import make_engine
from server.store.schema import commands
from tests.test_boxes_projection import dispense, ev, restock
from tests.test_ledger import send_at
from tests.test_server_cli import cli

BY = ("--by", "王会计")


MASTER = (
    ("product", "add", "condom-a", "--name-zh", "避孕套", "--name-en", "Condoms",
     "--storeroom", "no1", "--group", "condoms"),
    ("site", "add", "city", "--name", "市", "--level", "city"),
    ("site", "add", "county", "--name", "县站", "--level", "county", "--parent", "city"),
    ("site", "add", "town", "--name", "镇站", "--level", "township", "--parent", "county"),
)  # fmt: skip


def county_store(root: Path, *entries: tuple[str, ...]) -> Path:
    """A created store with the county's master data and ``entries``, each entered by BY."""
    config = root / "server.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{root / "server.db"}"\n')
    assert cli(config, "db", "upgrade").returncode == 0
    for args in (*MASTER, *entries):
        done = cli(config, *args, *BY)
        assert done.returncode == 0, done.stderr
        assert "已记账" in done.stdout
    return config


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return county_store(
        tmp_path_factory.mktemp("ledger-cli"),
        ("receive", "county", "no1", "condom-a", "B5", "20", "--expiry", "2030-01-31"),
        ("inspect", "county", "no1", "condom-a", "B5", "20", "--result", "qualified"),
    )


def ok(config: Path, *args: str) -> str:
    done = cli(config, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused(config: Path, *args: str) -> str:
    done = cli(config, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.strip()


def test_a_receipt_is_inspected_moved_and_counted(store: Path) -> None:
    # The server's today is its zone's (Asia/Shanghai by default), not this machine's.
    soon = (datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=60)).isoformat()
    ok(store, "receive", "county", "no1", "condom-a", "B7", "100", "--expiry", soon, *BY)
    assert "待验" in ok(store, "stock", "--site", "county")
    ok(store, "inspect", "county", "no1", "condom-a", "B7", "100", "--result", "qualified", *BY)
    ok(store, "transfer", "county:no1", "town:no1", "condom-a", "B7", "40", *BY)
    ok(store, "transfer", "town:no1", "town:transit", "condom-a", "B7", "10", *BY)
    counted = ok(store, "stocktake", "town:no1", "--line", "condom-a:B7:29", *BY)
    assert "1 个批号有差异" in counted
    table = ok(store, "stock", "--site", "county")
    assert "90 天内过期" in table
    rows = {tuple(line.split()[:2]): line.split() for line in table.splitlines()[1:]
            if " B7 " in line}  # fmt: skip
    assert rows[("county", "no1")][-3] == "60"
    assert rows[("town", "no1")][-3] == "29"
    assert rows[("town", "transit")][-3] == "10"
    exported = store.parent / "movements.csv"
    said = ok(store, "movements", "--out", str(exported), "--site", "town")
    text = exported.read_bytes()
    assert text.startswith("\ufeff".encode())
    lines = text.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("序号,时间（UTC）")
    kinds = [line.split(",")[3] for line in lines[1:]]
    assert kinds == ["调拨", "调拨", "盘点"], "the township's movements only, in order"
    assert f"已写出 3 条流水到 {exported}" in said
    suggested = ok(store, "suggest", "county:no1", "condom-a", "100")
    assert [line.split()[0] for line in suggested.splitlines()[1:3]] == ["B7", "B5"], "FEFO"
    assert "还缺 20 个" in suggested
    report = [line.split() for line in ok(store, "stock", "--by-batch").splitlines()]
    assert report[0][:3] == ["品种", "批号", "有效期"]
    assert [r[1] for r in report[1:]] == ["B7", "B5"], "the soonest expiry first"
    assert report[1][2:6] == [soon, "60", "99", "3"], "one lost at the count; three places"
    assert report[1][6] == "90"
    english = ok(store, "stock", "--site", "town", "--lang", "en")
    assert "qualified" in english
    assert "county" not in english, "a township's stock is its own and its villages'"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("transfer", "county:no1", "town:no1", "condom-a", "B5", "1000", *BY), "不能取 1000 个"),
        (("transfer", "county:no1", "town", "condom-a", "B5", "1", *BY), "无法识别的位置"),
        (("receive", "county", "no1", "pill-x", "B1", "5", *BY), "没有品种 pill-x"),
        (("receive", "county", "no1", "condom-a", "B99", "5", *BY), "没有批号 B99"),
        (("receive", "county", "no1", "condom-a", "B0", "5", "--expiry", "2020-01-01", *BY),
         "已于 2020-01-01 过期"),
        (("dispose", "county", "no1", "condom-a", "B5", "1", "--reason", "破损", *BY),
         "不合格区只有"),
        (("stocktake", "town:no1", "--line", "condom-a:B5:x", *BY), "无法识别的盘点行"),
        (("adjust", "town:box-1", "condom-a", "B5", "1", "--reason", "found", *BY),
         "发放柜要写货道"),
        (("site", "add", "v", "--name", "村", "--level", "county", "--parent", "town", *BY),
         "级别应低于"),
        (("movements", "--out", "/nonexistent/dir/m.csv"), "无法写入 /nonexistent/dir/m.csv"),
        (("return", "town:box-1#1", "county:no1", "condom-a", "B5", "1", *BY), "退回只能从"),
        (("return", "town:box-1", "county:no1", "condom-a", "B5", "1", *BY), "退回只能从"),
        (("return", "county:no1", "county:no1", "condom-a", "B5", "1", *BY), "同一处"),
        (("restock", "approve", "town:box-1#1", "B5", "1", "--from", "county:transit", *BY),
         "补货要从库房的合格区调出"),
        (("return", "town:no1/awaiting", "county:no1", "condom-a", "B5", "1", *BY),
         "退回只能从"),
        (("return", "town:transit", "county:transit", "condom-a", "B5", "1", *BY),
         "退回要进库房的退货区"),
        (("return", "town:transit", "county:no1", "condom-a", "B5", "1", *BY),
         "town:transit 的退货区只有批号 B5 0 个"),
    ],
)  # fmt: skip
def test_what_the_books_forbid_is_refused_in_one_line(
    store: Path, args: tuple[str, ...], said: str
) -> None:
    assert said in refused(store, *args)


def village_box(root: Path) -> Path:
    """The village's box loads 6 of the town's and gives out 4, three days ago: 2 left, 4 in
    the last 30 days."""
    config = county_store(
        root,
        ("site", "add", "village", "--name", "村", "--level", "village", "--parent", "town"),
        ("receive", "town", "no1", "condom-a", "B1", "50", "--expiry", "2029-06-30"),
        ("inspect", "town", "no1", "condom-a", "B1", "50", "--result", "qualified"),
        ("transfer", "town:no1", "village:transit", "condom-a", "B1", "6"),
    )
    engine = make_engine(f"sqlite:///{root / 'server.db'}")
    # Within the rate's window, whenever the test runs.
    days_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    events = [ev(1, "cabinet.restock", restock(1, 6), agent="box-agent", occurred_at=days_ago)]
    events += [ev(2 + i, "cabinet.dispense", dispense(1, 5 - i), agent="box-agent",
                  occurred_at=days_ago) for i in range(4)]  # fmt: skip
    send_at(Ingestor(engine, "fp"), events, "box-agent")
    engine.dispose()
    return config


def test_restock_is_proposed_from_the_rate_and_approved_as_an_order(tmp_path: Path) -> None:
    config = village_box(tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    proposed = ok(config, "restock", "propose", "--below", "30", "--cover", "60")
    [row] = [line.split() for line in proposed.splitlines()[1:]]
    assert row[:3] == ["village", "box-1#1", "condom-a"]
    assert row[6:] == ["6", "town:no1", "B1×6"], "60 days at 4 in 30 days, less the 2 left"
    assert "没有需要补货" in ok(config, "restock", "propose", "--below", "5")
    ok(config, "restock", "approve", "village:box-1#1", "B1", "6", "--from", "town:no1", *BY)
    with engine.connect() as conn:
        [(kind, message)] = conn.execute(sa.select(commands.c.kind, commands.c.message)).all()
        transit = queries.stock(conn, site="village", place="transit")
    assert kind == "restock.order"
    assert json.loads(message)["body"]["quantity"] == 6
    assert [line.quantity for line in transit] == [6], "with the technician now"
    said = refused(config, "restock", "approve", "village:box-9#1", "B1", "5", "--from",
                   "town:no1", *BY)  # fmt: skip
    assert "没有货道 village:box-9#1" in said
    engine.dispose()


def test_restock_is_proposed_as_of_the_time_given(tmp_path: Path) -> None:
    config = village_box(tmp_path)
    propose = ("restock", "propose", "--below", "30", "--cover", "60")
    now = datetime.now(UTC)
    today = ok(config, *propose)
    assert "village" in today
    assert ok(config, *propose, "--now", now.isoformat()) == today
    later = (now + timedelta(days=40)).astimezone(ZoneInfo("Asia/Shanghai"))
    assert "没有需要补货" in ok(config, *propose, "--now", later.strftime("%Y-%m-%d %H:%M")), (
        "4 given out 43 days ago"
    )
    assert refused(config, *propose, "--now", "tomorrow") == (
        "--now：无法识别的时间“tomorrow”（应为 2026-01-31、2026-01-31 08:00 或 2026-01）"
    )


@pytest.mark.parametrize("written", [
    "2026-10-10T00:00:00+00:00", "2026-10-10T08:00:00+08:00", "2026-10-10T08:00",
    "2026-10-10 08:00",
])  # fmt: skip
def test_a_time_is_read_as_a_script_or_a_person_writes_it(written: str) -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    assert parse_time(written, shanghai) == datetime(2026, 10, 10, tzinfo=UTC)


@pytest.mark.parametrize("written", ["tomorrow", "2026-13-01", ""])
def test_what_is_not_a_time_is_refused(written: str) -> None:
    with pytest.raises(ValueError, match=r"isoformat|month must be"):
        parse_time(written, ZoneInfo("Asia/Shanghai"))


def test_stock_at_a_site_outside_the_levels_is_pointed_out(tmp_path: Path) -> None:
    config = county_store(tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'server.db'}")
    send_at(Ingestor(engine, "fp"), [ev(1, "cabinet.dispense", dispense(1, 3), agent="box-x")],
            "box-x", site="hamlet")  # fmt: skip
    engine.dispose()
    done = cli(config, "stock", "--site", "city")
    assert done.returncode == 0, done.stderr
    assert "站点 hamlet 有库存，但不在站点层级中" in done.stderr
