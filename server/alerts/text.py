"""What people read about alerts, in Simplified Chinese (default) and English: short enough for
one SMS."""

from __future__ import annotations

from typing import Any

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
    "rule.box.shared": {"zh": "箱号重复，账目混淆", "en": "box id used twice"},
    "rule.agent.storage": {"zh": "终端存储告警", "en": "agent storage"},
    "rule.agent.offline": {"zh": "终端离线", "en": "agent offline"},
    "rule.agent.gap": {"zh": "数据缺失", "en": "data missing"},
    "rule.agent.messages": {"zh": "消息无法处理", "en": "messages not usable"},
    "rule.agent.commands": {"zh": "命令无应答", "en": "commands unanswered"},
    "rule.climate.exposure": {"zh": "累计高温", "en": "heat exposure"},
    "rule.stock.expiry": {"zh": "近效期或过期", "en": "expiring or expired"},
    "rule.ledger.discrepancy": {"zh": "账实不符", "en": "books short"},
    "rule.ledger.variance": {"zh": "盘点差异", "en": "count variance"},
    "rule.alerts.channel": {"zh": "通知渠道故障", "en": "channel failing"},
    "reason.fired": {"zh": "【告警】", "en": "[ALERT] "},
    "reason.fired.critical": {"zh": "【紧急】", "en": "[URGENT] "},
    "reason.renotify": {"zh": "【仍未处理】", "en": "[STILL OPEN] "},
    "reason.escalated": {"zh": "【升级】", "en": "[ESCALATED] "},
    "reason.acknowledged": {"zh": "【已确认】", "en": "[ACKED] "},
    "reason.resolved": {"zh": "【已解除】", "en": "[RESOLVED] "},
    "notice": {
        "zh": "{prefix}{site} {subject} {rule}{detail}（编号{id}）",
        "en": "{prefix}{site} {subject} {rule}{detail} (#{id})",
    },
    "notice.acked": {"zh": "，{by}：{action}", "en": ", {by}: {action}"},
    "room.no1": {"zh": "1号库", "en": "store 1"},
    "room.no2": {"zh": "2号库", "en": "store 2"},
    "room.no3": {"zh": "3号库", "en": "store 3"},
    "state.pending": {"zh": "待定", "en": "pending"},
    "state.firing": {"zh": "告警中", "en": "firing"},
    "state.acknowledged": {"zh": "已确认", "en": "acknowledged"},
    "state.resolved": {"zh": "已解除", "en": "resolved"},
    "severity.critical": {"zh": "紧急", "en": "critical"},
    "severity.warning": {"zh": "一般", "en": "warning"},
    "col.no": {"zh": "编号", "en": "no."},
    "col.key": {"zh": "告警", "en": "alert"},
    "col.told": {"zh": "通知时间", "en": "told"},
    "col.level": {"zh": "级别", "en": "level"},
    "col.reason": {"zh": "原因", "en": "why"},
    "col.channel": {"zh": "渠道", "en": "channel"},
    "col.recipient": {"zh": "接收人", "en": "to"},
    "col.delivery": {"zh": "送达", "en": "delivery"},
    "why.fired": {"zh": "告警", "en": "fired"},
    "why.renotify": {"zh": "重复通知", "en": "again"},
    "why.escalated": {"zh": "升级", "en": "escalated"},
    "why.acknowledged": {"zh": "已确认", "en": "acknowledged"},
    "why.resolved": {"zh": "已解除", "en": "resolved"},
    "delivery.pending": {"zh": "待发送", "en": "pending"},
    "delivery.sent": {"zh": "已送达", "en": "sent"},
    "delivery.failed": {"zh": "发送失败", "en": "failed"},
    "delivery.unreachable": {"zh": "无人可达", "en": "nobody reachable"},
    "told.none": {"zh": "尚未通知任何人", "en": "nobody told yet"},
    "ack.invalid": {
        "zh": "--by 须为 1–64 个字，--action 至多 200 个字",
        "en": "--by must be 1-64 characters, --action at most 200",
    },
    "silence.duration": {
        "zh": "时长 {given} 无效：写作 30m、2h 或 3d，最长 30d",
        "en": "duration {given} is not valid: write 30m, 2h or 3d, at most 30d",
    },
    "silence.invalid": {
        "zh": "无法静默：须为告警编号、告警或以类别开头、以 : 结尾的前缀；"
        "--by 1–64 字，--reason 至多 200 字",
        "en": "cannot silence: give an alert's number, its key, or a prefix that starts with a "
        "rule and ends in ':'; --by 1-64 characters, --reason at most 200",
    },
    "silenced": {
        "zh": "已静默 {match} 至 {until}（当前 {n} 条未解除告警）",
        "en": "silenced {match} until {until} ({n} open alerts now)",
    },
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


#: One SMS of Chinese text.
SMS_CHARS = 70


def notice_text(lang: Language, live: Any, reason: str, site_name: str | None, alert_id: int
                ) -> str:  # fmt: skip
    """What a person is told of an alert, in one SMS: what, where, the values, the alert's
    number (``alerts ack`` takes it)."""
    alert, sig = live.alert, live.signal
    critical = reason == "fired" and sig.severity == "critical"
    prefix = TEXTS[f"reason.{reason}.critical" if critical else f"reason.{reason}"][lang]
    room, _, rest = sig.subject.partition("/")
    subject = (
        TEXTS[f"room.{room}"][lang] + (f"/{rest}" if rest else "")
        if (f"room.{room}" in TEXTS)
        else sig.subject
    )
    detail = values_text(sig.detail)
    if reason == "acknowledged" and alert.acked_by:
        detail += TEXTS["notice.acked"][lang].format(by=alert.acked_by, action=alert.action or "-")
    rule = rule_text(lang, sig.rule)
    parts = {"site": (site_name or sig.site)[:12], "subject": subject[:24], "detail": detail}

    def text() -> str:
        return TEXTS["notice"][lang].format(prefix=prefix, rule=rule, id=alert_id, **parts)

    # Too long for one SMS: the values go first, then the subject, then the site; the rule and
    # the alert's number (what a person acknowledges by) stay.
    for part in ("detail", "subject", "site"):
        over = len(text()) - SMS_CHARS
        if over > 0:
            kept = parts[part][: max(0, len(parts[part]) - over - 1)]
            parts[part] = kept + "…" if kept else ""
    return text()


def rule_text(lang: Language, rule: str) -> str:
    return TEXTS.get(f"rule.{rule}", {}).get(lang, rule)


def values_text(detail: dict[str, Any]) -> str:
    if "temperature_c" in detail:
        return f" {detail['temperature_c']:.1f}°C/{detail.get('humidity_pct', 0):.0f}%"
    if "hours" in detail:
        return f" ≥{detail['threshold_c']:g}°C {detail['hours']:g}h/{detail['days']}d"
    if "expiry" in detail:
        return f" {detail['expiry']} ×{detail['quantity']}"
    if "state" in detail:
        return f" {detail['state']}"
    if "difference" in detail:
        return f" {detail['difference']:+d}"
    if "short" in detail:
        return f" -{detail['short']}"
    if "agents" in detail:
        return " " + "/".join(detail["agents"])
    if "unanswered" in detail:
        return f" ×{detail['unanswered']}"
    return ""


def say(lang: Language, key: str, /, **fields: object) -> str:
    """The text for ``key``; a field that is itself a state is shown as the state's name."""
    return render(TEXTS, lang, key, fields, named=("state",))
