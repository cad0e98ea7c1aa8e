"""What the box's small display says: two short, kind lines in Simplified Chinese (or English).

A line holds 16 half-width or 8 Chinese characters. The remaining quota, the date one may
take again, and why a card was refused; never a card number, never an error's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from edge_agent.cabinet.quota import Allowance

Language = Literal["zh", "en"]

_TEXTS: dict[str, dict[Language, tuple[str, str]]] = {
    "welcome": {
        "zh": ("请刷卡领取", "免费 按需取用"),
        "en": ("Swipe your card", "free, as needed"),
    },
    "welcome_open": {
        "zh": ("请按键领取", "按需所取避免浪费"),
        "en": ("Press a button", "Take only needs"),
    },
    "choose": {
        "zh": ("请按键选择", "按键1-{count}"),
        "en": ("Choose a product", "buttons 1-{count}"),
    },
    "vending": {"zh": ("正在出货", "请稍候"), "en": ("Dispensing", "please wait")},
    "take": {"zh": ("请取货", ""), "en": ("Please take it", "")},
    "take_left": {"zh": ("请取货", "本期还可领{n}"), "en": ("Please take it", "{n} more allowed")},
    "take_next": {"zh": ("请取货", "下次{date}可领"), "en": ("Please take it", "next from {date}")},
    "quota": {"zh": ("本期已领过", "{date}起可再领"), "en": ("Already taken", "next: {date}")},
    "unregistered": {
        "zh": ("此卡未登记", "请到服务站办理"),
        "en": ("Card unknown", "ask the station"),
    },
    "lost": {"zh": ("此卡已挂失", "请联系服务站"), "en": ("Card is lost", "ask the station")},
    "revoked": {"zh": ("此卡已停用", "请联系服务站"), "en": ("Card withdrawn", "ask the station")},
    "not_allowed": {
        "zh": ("此卡不能领取", "请联系服务站"),
        "en": ("Card cannot take", "ask the station"),
    },
    "age": {
        "zh": ("年龄不在范围内", "请到服务站咨询"),
        "en": ("Age not eligible", "ask the station"),
    },
    "misread": {"zh": ("读卡失败", "请重新刷卡"), "en": ("Card not read", "please try again")},
    "empty": {"zh": ("暂时无货", "请到服务站领取"), "en": ("Out of stock", "ask the station")},
    "expired": {"zh": ("暂停发放", "请到服务站领取"), "en": ("Not available", "ask the station")},
    "out_of_service": {
        "zh": ("设备维护中", "请到服务站领取"),
        "en": ("Out of service", "ask the station"),
    },
    "failed": {"zh": ("出货失败", "未计入领取次数"), "en": ("Vend failed", "not counted")},
    "unknown": {"zh": ("出货异常", "未计入领取次数"), "en": ("Dispense unclear", "not counted")},
    "pause": {"zh": ("请稍后再按", ""), "en": ("Please wait", "a moment")},
    "hourly_cap": {
        "zh": ("本时段已取完", "请稍后再来"),
        "en": ("Limit this hour", "come back later"),
    },
    "door_open": {"zh": ("设备维护中", "请稍候"), "en": ("In service", "please wait")},
    "busy": {"zh": ("设备忙", "请稍后再试"), "en": ("Box busy", "try again soon")},
    "service": {"zh": ("维护中", ""), "en": ("Service", "")},
    "unlocked": {"zh": ("门已开锁", "请补货"), "en": ("Door unlocked", "restock")},
    "unlocked_order": {
        "zh": ("请补{slot}号槽", "{product}{quantity}盒"),
        "en": ("Load slot {slot}", "{quantity} x {product}"),
    },
    "confirm": {"zh": ("补货已完成?", "确认键/取消键"), "en": ("Restock done?", "OK / Cancel")},
    "restocked": {"zh": ("补货已记录", "谢谢"), "en": ("Restock recorded", "thank you")},
    "difference": {
        "zh": ("已记录差异", "请盘点后上报"),
        "en": ("Difference noted", "please count"),
    },
}


def lines(
    message: str,
    params: Mapping[str, object],
    language: Language,
    zone: ZoneInfo,
) -> tuple[str, str]:
    """The display's two lines for a message of the take machine."""
    key = message
    values: dict[str, object] = {k: v for k, v in params.items() if v is not None}
    after = params.get("after")
    if message == "take" and isinstance(after, Allowance):
        if after.remaining:
            key, values = "take_left", {"n": after.remaining}
        elif after.next_at is not None:
            key, values = "take_next", {"date": _date(after.next_at, zone, language)}
    next_at = params.get("next_at")
    if isinstance(next_at, datetime):
        values["date"] = _date(next_at, zone, language)
    elif message == "quota":
        key = "not_allowed"
    texts = _TEXTS.get(key) or _TEXTS["welcome"]
    first, second = texts[language]
    return first.format(**values), second.format(**values)


def _date(at: datetime, zone: ZoneInfo, language: Language) -> str:
    local = at.astimezone(zone)
    return f"{local.month}月{local.day}日" if language == "zh" else local.strftime("%d %b")
