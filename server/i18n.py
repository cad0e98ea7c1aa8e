"""Texts people read, in Simplified Chinese (default) and English."""

from __future__ import annotations

import unicodedata
from typing import Literal

Language = Literal["zh", "en"]

_TEXTS: dict[str, dict[Language, str]] = {
    "site": {"zh": "站点", "en": "site"},
    "agent": {"zh": "终端", "en": "agent"},
    "storeroom": {"zh": "库房", "en": "storeroom"},
    "sensor": {"zh": "传感器", "en": "sensor"},
    "temperature": {"zh": "温度(°C)", "en": "temp (°C)"},
    "humidity": {"zh": "湿度(%RH)", "en": "RH (%)"},
    "time": {"zh": "时间", "en": "time"},
    "clock_unsynced": {"zh": "时钟未同步", "en": "clock not synced"},
    "no_readings": {"zh": "暂无温湿度记录。", "en": "No climate records yet."},
    "state.normal": {"zh": "✓ 恢复正常", "en": "✓ back to normal"},
    "state.warning": {"zh": "△ 接近限值（预警）", "en": "△ near a limit (warning)"},
    "state.alarm": {"zh": "⚠ 超出限值（报警）", "en": "⚠ out of limits (ALARM)"},
    "sensor_fault": {"zh": "✗ 传感器故障", "en": "✗ sensor fault"},
    "sensor_recovered": {"zh": "✓ 传感器恢复", "en": "✓ sensor recovered"},
    "alarm_silenced": {"zh": "声光报警已由现场静音", "en": "alarm silenced on site"},
    "disagreement": {"zh": "两个传感器读数相差过大", "en": "two sensors disagree"},
    # Why a sensor gave no valid reading (SensorFault.reason); never the library's error text.
    "fault.no_response": {
        "zh": "无应答（检查接线和供电）",
        "en": "no response (check wiring and power)",
    },
    "fault.exception": {
        "zh": "设备返回异常码 {code}",
        "en": "device returned exception code {code}",
    },
    "fault.exception_nocode": {"zh": "设备返回异常应答", "en": "device returned an exception"},
    # A Modbus TCP gateway answers for the RS485 device behind it (exception codes 0x0A, 0x0B).
    "fault.exception.10": {
        "zh": "网关无法连到设备（检查网关设置）",
        "en": "gateway cannot reach the device (check the gateway's settings)",
    },
    "fault.exception.11": {
        "zh": "网关报告设备无应答（检查接线和供电）",
        "en": "gateway reports no response (check wiring and power)",
    },
    "fault.bad_answer": {"zh": "应答错误（校验失败）", "en": "bad answer (checksum failed)"},
    "fault.bus_unavailable": {
        "zh": "总线不可用（检查串口适配器或网关）",
        "en": "bus unavailable (check the serial adapter or gateway)",
    },
    "fault.implausible": {"zh": "读数不合理", "en": "implausible reading"},
    "fault.unknown": {"zh": "读数失败", "en": "reading failed"},
    "calibration.due": {"zh": "传感器校准即将到期", "en": "sensor calibration due"},
    "calibration.expired": {"zh": "传感器校准已过期（不合规）", "en": "sensor calibration expired"},
}


def t(key: str, lang: Language) -> str:
    return _TEXTS[key][lang]


def fault_text(reason: object, code: object, lang: Language) -> str:
    """What people read about a sensor fault, by its reason code. An event without a known
    reason (from an agent older than the codes) reads "reading failed": the technical
    ``error`` text is never shown to a keeper."""
    if reason == "exception":
        if isinstance(code, int) and not isinstance(code, bool):
            special = f"fault.exception.{code}"
            if special in _TEXTS:
                return t(special, lang)
            return t("fault.exception", lang).format(code=code)
        return t("fault.exception_nocode", lang)
    key = f"fault.{reason}"
    return t(key if isinstance(reason, str) and key in _TEXTS else "fault.unknown", lang)


def width(text: str) -> int:
    """Columns a text takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(width(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(pad(c, w) for c, w in zip(cells, widths, strict=True))

    return "\n".join(line(r).rstrip() for r in [header, *rows])
