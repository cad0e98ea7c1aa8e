"""What keepers read about climate events (``climate tail``, the demo): their language, never
a library's error text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.cli import describe_notice
from server.climate.queries import Notice
from server.i18n import Language

LIBRARY_TEXT = "Modbus Error: [Input/Output] No response received after 1 retries"


def fault(**payload: object) -> Notice:
    body: dict[str, object] = {"storeroom": "no1-condoms", "sensor": "no1-b", **payload}
    return Notice(1, "county", "climate.sensor_fault", datetime(2026, 1, 5, tzinfo=UTC), body)


@pytest.mark.parametrize(
    ("reason", "code", "zh", "en"),
    [
        ("no_response", None, "无应答（检查接线和供电）", "no response (check wiring and power)"),
        ("exception", 2, "设备返回异常码 2", "device returned exception code 2"),
        ("exception", None, "设备返回异常应答", "device returned an exception"),
        ("exception", 11, "网关报告设备无应答（检查接线和供电）", "gateway reports no response"),
        ("bad_answer", None, "应答错误（校验失败）", "bad answer (checksum failed)"),
        ("bus_unavailable", None, "总线不可用（检查串口适配器或网关）", "bus unavailable"),
        ("implausible", None, "读数不合理", "implausible reading"),
        (None, None, "读数失败", "reading failed"),
        ("something_newer", None, "读数失败", "reading failed"),
    ],
)
def test_a_fault_reads_as_its_reason_in_the_keepers_language(
    reason: str | None, code: int | None, zh: str, en: str
) -> None:
    notice = fault(error=f"bus rs485 unit 2: {LIBRARY_TEXT}", reason=reason, exception_code=code)
    texts: dict[Language, str] = {"zh": zh, "en": en}
    for lang, expected in texts.items():
        line = describe_notice(notice, lang)
        assert expected in line
        assert "no1-b" in line
        assert "Modbus Error" not in line
        assert "rs485" not in line


def test_an_old_fault_without_a_reason_shows_a_generic_text() -> None:
    """An event from an agent older than the reason codes: only its error text, which stays out."""
    notice = fault(error=LIBRARY_TEXT)
    assert describe_notice(notice, "zh").endswith("✗ 传感器故障 no1-b: 读数失败")
    assert describe_notice(notice, "en").endswith("✗ sensor fault no1-b: reading failed")


def test_a_disagreement_names_its_sensors_plainly() -> None:
    notice = Notice(
        2,
        "county",
        "climate.disagreement",
        datetime(2026, 1, 5, tzinfo=UTC),
        {"storeroom": "no1", "sensors": ["no1-a", "no1-b"], "delta_c": 2.7, "delta_pct": 1.0},
    )
    assert describe_notice(notice, "zh").endswith(
        "两个传感器读数相差过大: no1-a / no1-b Δ2.7 °C Δ1.0 %RH"
    )
