"""The card registry as an operator uses it (``edge-server cards ...`` on a real SQLite file):
cards kept by pseudonym only, holders apart, rules and guest policy, one line for every
mistake, and no raw card number anywhere (database, output, log). Versions stay distinct when
two writers issue at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from edge_agent.pseudonym import PseudonymError, load_key, normalise_id_number, of_id_number, of_uid
from edge_agent.wire import GuestPolicy, QuotaRule
from server.cards import queries, registry
from server.cards.reader import Format, ReaderError, read_card
from server.cards.registry import Issue
from server.store.schema import card_changes, cards
from tests.support import BIN, PtyPair
from tests.test_server_cli import cli

UID = "04A1B2C3"
UID_LONG = "04A1B2C3D4E5F6"
ID_NUMBER = "11010519491231002X"


def with_check(first17: str) -> str:
    """An ID number whose check character is right."""
    for check in "0123456789X":
        try:
            return normalise_id_number(first17 + check)
        except PseudonymError:
            continue
    raise AssertionError("no check character fits")


#: Another valid ID number, used only in an import.
ID_OTHER = with_check("44030619850512003")
NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def raw_forms() -> list[bytes]:
    """Every way a raw number could have been written down."""
    forms = []
    for value in (UID, UID_LONG, ID_NUMBER, ID_NUMBER[:17]):
        forms += [value.encode(), value.lower().encode()]
    forms += [bytes.fromhex(UID), bytes.fromhex(UID_LONG), bytes.fromhex(UID)[::-1]]
    forms.append(":".join(UID[i : i + 2] for i in range(0, 8, 2)).encode())
    return forms


def _write_config(root: Path) -> Path:
    config = root / "server.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{root / "data" / "server.db"}"\n'
        f'[cards]\nkey_file = "{root / "keys" / "card.key"}"\n'
    )
    return config


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A created store and a key made by ``make-key``, once: each test gets a copy."""
    root = tmp_path_factory.mktemp("cards-template")
    (root / "keys").mkdir()
    config = _write_config(root)
    assert cli(config, "db", "upgrade").returncode == 0
    made = cli(config, "cards", "make-key", "--out", str(root / "keys" / "card.key"))
    assert made.returncode == 0, made.stderr
    return root


@pytest.fixture
def store(tmp_path: Path, template: Path) -> Path:
    """A server.toml with a SQLite store (created) and a card key made by ``make-key``."""
    for part in ("keys", "data"):
        shutil.copytree(template / part, tmp_path / part)
    return _write_config(tmp_path)


def key_of(config: Path) -> Path:
    return config.parent / "keys" / "card.key"


def ok(config: Path, *args: str) -> str:
    out = cli(config, "--log-level", "DEBUG", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_key_is_private_says_its_id_and_never_overwrites(store: Path) -> None:
    path = key_of(store)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_key(path)
    again = cli(store, "cards", "make-key", "--out", str(path))
    assert again.returncode == 2
    assert again.stderr.strip() == f"{path} 已存在，未覆盖"
    assert load_key(path) == key
    fresh = cli(store, "cards", "make-key", "--out", str(path.parent / "other.key"))
    assert "密钥编号" in fresh.stdout
    assert load_key(path.parent / "other.key").key_id in fresh.stdout


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("", "未配置卡密钥"),
        ('key_file = "/nonexistent/card.key"', "无法读取卡密钥文件 /nonexistent/card.key"),
        ("bad", "应只有 64 个十六进制数字"),
    ],
)
def test_hashing_needs_a_readable_key(tmp_path: Path, setting: str, message: str) -> None:
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key\n")
    line = f'key_file = "{bad_key}"' if setting == "bad" else setting
    config = tmp_path / "server.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "server.db"}"\n[cards]\n{line}\n')
    assert cli(config, "db", "upgrade").returncode == 0
    for args in (("issue", "--uid", UID), ("lost", "--id-number", ID_NUMBER)):
        out = cli(config, "cards", *args)
        assert out.returncode == 2
        assert message in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_issue_lost_revoke_list_and_holder(store: Path) -> None:
    key = load_key(key_of(store))
    card = of_uid(key, UID)
    issued = ok(store, "cards", "issue", "--uid", UID, "--name", "张三", "--phone", "13800000000")
    assert f"已登记卡 {card[:12]}：村民，分组 default（登记册版本 1）" in issued
    assert "已登记，没有变化（版本 1）" in ok(store, "cards", "issue", "--uid", UID)
    tech = ok(store, "cards", "issue", "--id-number", ID_NUMBER, "--role", "technician",
              "--group", "staff")  # fmt: skip
    assert "技术员，分组 staff（登记册版本 2）" in tech
    assert "已挂失（登记册版本 3）" in ok(store, "cards", "lost", "--uid", UID)
    assert "已是挂失状态" in ok(store, "cards", "lost", "--card", card[:10])
    staff = of_id_number(key, ID_NUMBER)
    assert "已注销（登记册版本 4）" in ok(store, "cards", "revoke", "--card", staff[:12])
    listing = ok(store, "cards", "list").splitlines()
    assert listing[0].split() == ["卡（代号）", "状态", "角色", "分组", "版本", "更新时间"]
    assert listing[1].split()[:5] == [card[:12], "挂失", "村民", "default", "3"]
    assert listing[2].split()[:5] == [staff[:12], "注销", "技术员", "staff", "4"]
    assert listing[-1] == "共 2 张；登记册版本 4"
    assert ok(store, "cards", "list", "--status", "lost").count("挂失") == 1
    assert "没有符合条件的卡" in ok(store, "cards", "list", "--group", "nobody")
    again = ok(store, "cards", "issue", "--uid", UID)
    assert "已重新启用：村民，分组 default（登记册版本 5）" in again, "role and group kept"
    assert ok(store, "cards", "holder", card[:12]).splitlines() == [
        "持卡人：张三", "电话：13800000000", "备注：-",
    ]  # fmt: skip
    assert ok(store, "cards", "holder", staff[:12]).strip() == "未保存此卡的持卡人信息。"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("issue", "--uid", "04A1B2"), "卡号格式不对"),
        (("issue", "--id-number", "110105194912310021"), "身份证号校验码不对"),
        (("issue", "--id-number", "12345"), "身份证号格式不对"),
        (("issue",), "请只给出 --uid, --id-number, --reader 之一"),
        (("issue", "--uid", UID, "--id-number", ID_NUMBER), "之一"),
        (("issue", "--uid", UID, "--group", "Big Group"), "--group 应为小写字母"),
        (("lost", "--uid", UID), "此卡未登记"),
        (("revoke", "--card", "zz"), "卡代号应为十六进制数字"),
        (("holder", "0123456789"), "此卡未登记"),
        (("rule", "set", "default", "condoms", "20000", "30"), "QUANTITY 应在 0 到 10000 之间"),
        (("rule", "set", "default", "condoms", "1", "0"), "PERIOD_DAYS 应在 1 到 366 之间"),
        (("rule", "set", "x y", "condoms", "1", "30"), "GROUP 应为小写字母"),
        (("guest", "quota", "1", "400"), "PERIOD_DAYS"),
        (("issue", "--reader", "/nonexistent/ttyUSB9"), "无法打开读卡器 /nonexistent/ttyUSB9"),
    ],
)
def test_mistakes_get_one_line_and_never_the_number(
    store: Path, args: tuple[str, ...], message: str
) -> None:
    out = cli(store, "cards", *args)
    assert out.returncode in (1, 2), out.stderr
    assert message in out.stderr
    said = [line for line in out.stderr.strip().splitlines() if "命令历史" not in line]
    assert len(said) == 1, out.stderr
    for number in ("04A1B2", "110105194912310021", "12345"):
        assert number not in out.stderr


def test_import_hashes_each_line_and_reports_bad_ones_by_number_only(store: Path) -> None:
    bad = store.parent / "bad.csv"
    bad.write_text(
        "uid,id_number,role,group,name,phone\n"
        f"{UID_LONG},,villager,default,李四,13900000000\n"
        "04A1B2,,villager,default,,\n"
        f"{UID_LONG},,villager,default,,\n"
        f",{ID_NUMBER[:17]}9,villager,default,,\n"
        f"0411223344,,chief,,,\n"
        ",,villager,,,\n",
        encoding="utf-8",
    )
    out = cli(store, "cards", "import", str(bad))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "第 3 行：卡号格式不对：应为 4、7、8 或 10 个字节的十六进制数",
        "第 4 行：与第 2 行是同一张卡",
        "第 5 行：身份证号校验码不对（读错或输错？）",
        "第 6 行：角色应为 villager 或 technician",
        "第 7 行：没有卡号（uid 或 id_number）",
        "有 5 行有误，没有导入任何卡；改正后请重新导入",
    ]
    assert "共 0 张" in ok(store, "cards", "list")
    good = store.parent / "good.csv"
    good.write_bytes(
        (
            f"uid,id_number,role,group,name\n{UID_LONG},,,,李四\n,{ID_NUMBER},technician,staff,\n"
        ).encode("gb18030")
    )
    done = ok(store, "cards", "import", str(good))
    assert "已导入 2 张卡：新登记 2，重新启用 0，更新 0，无变化 0；登记册版本 2" in done
    assert "请删除或妥善保管" in done
    card = of_uid(load_key(key_of(store)), UID_LONG)
    assert ok(store, "cards", "holder", card[:12]).splitlines()[0] == "持卡人：李四"


def test_rules_and_guest_policy(store: Path) -> None:
    assert "尚未设置规则" in ok(store, "cards", "rule", "list")
    assert "未登记的卡：拒绝领取" in ok(store, "cards", "rule", "list")
    out = ok(store, "cards", "rule", "set", "default", "condoms", "1", "30")
    assert (
        out.strip() == "规则已设置：default 组每 30 天最多领取 1 件 condoms，全县（登记册版本 1）"
    )
    out = ok(store, "cards", "rule", "set", "youth", "condoms", "2", "22", "--site", "town-a")
    assert "仅限 town-a（登记册版本 2）" in out
    ok(store, "cards", "rule", "set", "default", "condoms", "2", "30")
    assert "未登记的卡：每 30 天最多 1 件（登记册版本 4）" in ok(
        store, "cards", "guest", "quota", "1", "30"
    )
    rows = [line.split() for line in ok(store, "cards", "rule", "list").splitlines()]
    assert rows[1] == ["default", "condoms", "2", "30", "3", "全县"]
    assert rows[2] == ["youth", "condoms", "2", "22", "2", "town-a"]
    assert rows[3] == ["未登记的卡：每", "30", "天最多", "1", "件"]
    assert "拒绝领取（登记册版本 5）" in ok(store, "cards", "guest", "refuse")


def test_english_when_the_server_speaks_it(store: Path) -> None:
    store.write_text(store.read_text() + '[server]\nlanguage = "en"\n')
    out = ok(store, "cards", "issue", "--uid", UID, "--role", "technician")
    assert "registered: technician, group default (registry version 1)" in out
    assert "1 cards; registry version 1" in ok(store, "cards", "list")
    assert "this card is not registered" in cli(store, "cards", "lost", "--uid", UID_LONG).stderr


def test_no_raw_number_reaches_the_database_the_output_or_the_log(store: Path) -> None:
    csv = store.parent / "cards.csv"
    csv.write_text(f"uid,id_number\n{UID_LONG},\n,{ID_OTHER}\n")
    seen = []
    for args in (
        ("issue", "--uid", UID, "--name", "王五"),
        ("issue", "--id-number", ID_NUMBER),
        ("lost", "--uid", UID),
        ("revoke", "--id-number", ID_NUMBER),
        ("issue", "--uid", UID),
        ("import", str(csv)),
        ("list",),
        ("issue", "--uid", "04A1B2C3D4"),
    ):
        out = cli(store, "--log-level", "DEBUG", "cards", *args)
        seen += [out.stdout.encode(), out.stderr.encode()]
    csv.unlink()
    assert any(b"card registry version 1: issued" in text for text in seen), "the log was on"
    data = b"".join(p.read_bytes() for p in (store.parent / "data").iterdir())
    assert data, "the store was written"
    for form in [*raw_forms(), b"04A1B2C3D4", ID_OTHER.encode()]:
        assert form not in data, f"{form!r} is in the database file"
        for text in seen:
            assert form not in text, f"{form!r} was printed or logged"


def test_two_writers_at_once_get_distinct_versions(engine: sa.Engine) -> None:
    start = threading.Barrier(2)
    versions: list[list[int]] = [[], []]
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(15):
                card = f"{n:02x}{i:02x}" + "0" * 60
                [done] = registry.issue(engine, [Issue(card)], NOW)
                versions[n].append(done.version)
                if i % 5 == 0:
                    rule = QuotaRule(group=f"g{n}", product_group="condoms", quantity=i,
                                     period_days=30)  # fmt: skip
                    versions[n].append(registry.set_rule(engine, rule, NOW))
        except BaseException as exc:
            failures.append(exc)
            raise

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    every = sorted(versions[0] + versions[1])
    assert every == list(range(1, 37)), "distinct and without holes"
    assert versions[0] == sorted(versions[0])
    assert versions[1] == sorted(versions[1])
    with engine.connect() as conn:
        logged = conn.execute(sa.select(card_changes.c.version).order_by(card_changes.c.version))
        assert list(logged.scalars()) == every
        top = conn.execute(sa.select(sa.func.max(cards.c.version))).scalar_one()
    assert queries.registry_head(engine).version == 36
    assert top <= 36
    registry.set_guest(engine, GuestPolicy(mode="quota", quantity=1, period_days=30), NOW)
    assert queries.registry_head(engine).guest_version == 37


def test_a_desk_reader_card_is_issued(store: Path, pty_pair: PtyPair) -> None:
    proc = subprocess.Popen(
        [str(BIN / "edge-server"), "--config", str(store), "cards", "issue",
         "--reader", pty_pair.device, "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    while "请在读卡器上放卡" not in proc.stderr.readline():
        assert proc.poll() is None, "the command ended before asking for the card"
    os.write(pty_pair.controller_fd, f"{UID}\r\n".encode())
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    card = of_uid(load_key(key_of(store)), UID)
    assert f"已登记卡 {card[:12]}" in stdout
    assert UID not in stdout + stderr


def test_reader_formats(store: Path, pty_pair: PtyPair) -> None:
    """Binary frames (also least significant byte first) and ID lines, straight to a pseudonym."""
    key = load_key(key_of(store))

    def swipe(data: bytes, fmt: Format, reversed_uid: bool = False) -> str:
        def present() -> None:
            os.write(pty_pair.controller_fd, data)

        return read_card(pty_pair.device, fmt, key, 10, reversed_uid=reversed_uid, on_open=present)

    frame = bytes.fromhex("02 05 01 04 A1 B2 C3 D0 03")
    assert swipe(b"\x55" + frame, "binary") == of_uid(key, UID), "garbage before STX is skipped"
    backwards = bytes.fromhex("02 05 01 C3 B2 A1 04 D0 03")
    assert swipe(backwards, "binary", reversed_uid=True) == of_uid(key, UID)
    assert swipe(f"{ID_NUMBER}\r\n".encode(), "id-line") == of_id_number(key, ID_NUMBER)
    with pytest.raises(ReaderError) as bcc:
        swipe(bytes.fromhex("02 05 01 04 A1 B2 C3 00 03"), "binary")
    assert bcc.value.key == "reader.bad"
    with pytest.raises(ReaderError) as misread:
        swipe(b"110105194912310021\n", "id-line")
    assert misread.value.key == "id.check"


@pytest.mark.parametrize("given", [("--uid",), ("--uid", "-")])
def test_a_number_is_asked_for_unless_written_on_the_command_line(
    store: Path, given: tuple[str, ...]
) -> None:
    out = subprocess.run(
        [str(BIN / "edge-server"), "--config", str(store), "cards", "issue", *given, "--role",
         "technician"],
        input=f"{UID}\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert of_uid(load_key(key_of(store)), UID)[:12] in out.stdout
    assert UID not in out.stdout + out.stderr
    assert "命令历史" not in out.stderr


def test_a_number_written_on_the_command_line_is_taken_with_a_warning(store: Path) -> None:
    out = cli(store, "cards", "issue", "--uid", UID)
    assert out.returncode == 0, out.stderr
    assert "命令历史" in out.stderr
