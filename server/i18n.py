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
    "calibration.due": {"zh": "传感器校准即将到期", "en": "sensor calibration due"},
    "calibration.expired": {"zh": "传感器校准已过期（不合规）", "en": "sensor calibration expired"},
}


def t(key: str, lang: Language) -> str:
    return _TEXTS[key][lang]


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
