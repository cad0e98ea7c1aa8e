"""What people read about alerts, in Simplified Chinese (default) and English: short enough for
one SMS."""

from __future__ import annotations

from server.i18n import Language, render

TEXTS: dict[str, dict[Language, str]] = {
    "rule.climate.range": {"zh": "温湿度超限", "en": "out of range"},
    "rule.climate.room": {"zh": "库房报警", "en": "storeroom alarm"},
    "rule.climate.sensor": {"zh": "传感器故障", "en": "sensor fault"},
    "rule.climate.calibration": {"zh": "传感器校准", "en": "calibration"},
    "rule.box.slot": {"zh": "货道", "en": "slot"},
    "rule.box.jam": {"zh": "卡货", "en": "jam"},
    "rule.box.tamper": {"zh": "箱门异常", "en": "door tampered"},
    "rule.box.offline": {"zh": "主板离线", "en": "board offline"},
    "rule.agent.storage": {"zh": "终端存储告警", "en": "agent storage"},
    "state.pending": {"zh": "待定", "en": "pending"},
    "state.firing": {"zh": "告警中", "en": "firing"},
    "state.acknowledged": {"zh": "已确认", "en": "acknowledged"},
    "state.resolved": {"zh": "已解除", "en": "resolved"},
    "severity.critical": {"zh": "紧急", "en": "critical"},
    "severity.warning": {"zh": "一般", "en": "warning"},
    "col.key": {"zh": "告警", "en": "alert"},
    "col.rule": {"zh": "类别", "en": "rule"},
    "col.severity": {"zh": "级别", "en": "severity"},
    "col.state": {"zh": "状态", "en": "state"},
    "col.since": {"zh": "开始", "en": "since"},
    "col.by": {"zh": "确认人", "en": "by"},
    "col.action": {"zh": "调控措施", "en": "action"},
    "none": {"zh": "没有未解除的告警", "en": "no open alerts"},
    "acked": {
        "zh": "已确认告警 {key}（第 {n} 条记录）",
        "en": "alert {key} acknowledged (entry {n})",
    },
    "alert.unknown": {"zh": "没有告警 {alert}", "en": "no alert {alert}"},
    "alert.not_open": {
        "zh": "告警 {alert} {state}，无需确认",
        "en": "alert {alert} is {state}: nothing to acknowledge",
    },
    "db.failed": {"zh": "数据库出错，详见日志", "en": "database error: see the log"},
}


def say(lang: Language, key: str, /, **fields: object) -> str:
    """The text for ``key``; a field that is itself a state is shown as the state's name."""
    return render(TEXTS, lang, key, fields, named=("state",))
