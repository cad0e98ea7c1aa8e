"""What the dashboard and the API's errors say, in Simplified Chinese (default) and English.
A key not here is looked up in the domains' own texts (alerts, people, the ledger)."""

from __future__ import annotations

from server.alerts.text import TEXTS as ALERT_TEXTS
from server.i18n import Language, t_or
from server.ledger.text import TEXTS as LEDGER_TEXTS
from server.users.text import TEXTS as USER_TEXTS

TEXTS: dict[str, dict[Language, str]] = {
    "app.title": {"zh": "计生药具管理", "en": "Contraceptive logistics"},
    "nav.overview": {"zh": "总览", "en": "Overview"},
    "nav.alerts": {"zh": "告警", "en": "Alerts"},
    "nav.stock": {"zh": "库存", "en": "Stock"},
    "nav.boxes": {"zh": "发放机", "en": "Boxes"},
    "nav.dispensing": {"zh": "发放统计", "en": "Dispensing"},
    "nav.cards": {"zh": "IC 卡", "en": "Cards"},
    "nav.reports": {"zh": "报表", "en": "Reports"},
    "nav.logout": {"zh": "退出", "en": "Log out"},
    "nav.language": {"zh": "English", "en": "中文"},
    "login.title": {"zh": "登录", "en": "Log in"},
    "login.name": {"zh": "用户名", "en": "User name"},
    "login.password": {"zh": "密码", "en": "Password"},
    "login.submit": {"zh": "登录", "en": "Log in"},
    "auth.required": {"zh": "请先登录", "en": "please log in"},
    "auth.forbidden": {"zh": "您的角色不能进行此操作", "en": "your role may not do this"},
    "csrf.missing": {
        "zh": "页面已过期，请刷新后重试",
        "en": "the page has expired; reload it and try again",
    },
    "csrf.origin": {"zh": "请求来源不对，已拒绝", "en": "request from another origin refused"},
    "site.unknown": {"zh": "没有站点“{site}”", "en": "no site {site!r}"},
    "room.unknown": {
        "zh": "站点 {site} 没有库房“{room}”",
        "en": "site {site} has no storeroom {room!r}",
    },
    "alert.unknown": {"zh": "没有编号为 {alert} 的告警", "en": "no alert number {alert}"},
    "bad.input": {"zh": "输入有误：{what}", "en": "invalid input: {what}"},
    "bad.month": {"zh": "月份应写作 2026-11", "en": "a month is written 2026-11"},
    "bad.window": {"zh": "时间范围应为 24h、7d、30d 或 1y", "en": "a window is 24h, 7d, 30d or 1y"},
    "server.error": {
        "zh": "服务器出错，操作未完成（详见服务器日志）",
        "en": "server error; nothing was done (see the server's log)",
    },
    "not.found": {"zh": "没有这个页面", "en": "no such page"},
    "overview.title": {"zh": "各站点现状", "en": "Sites now"},
    "overview.none": {"zh": "还没有站点上报数据。", "en": "No site has reported yet."},
    "overview.storerooms": {"zh": "库房", "en": "Storerooms"},
    "overview.boxes": {"zh": "发放机", "en": "Boxes"},
    "overview.alerts": {"zh": "未处理告警", "en": "open alerts"},
    "overview.agent_offline": {"zh": "终端离线", "en": "agent offline"},
    "overview.agent_online": {"zh": "终端在线", "en": "agent online"},
    "overview.updated": {"zh": "更新于 {at}", "en": "updated {at}"},
    "room.state.ok": {"zh": "正常", "en": "in range"},
    "room.state.alarm": {"zh": "超限", "en": "out of range"},
    "room.state.stale": {"zh": "无新数据", "en": "no recent reading"},
    "room.state.fault": {"zh": "传感器故障", "en": "sensor fault"},
    "box.state.ok": {"zh": "正常", "en": "working"},
    "box.state.fault": {"zh": "故障", "en": "fault"},
    "box.state.empty": {"zh": "有空货道", "en": "a slot is empty"},
    "box.state.offline": {"zh": "主板离线", "en": "board offline"},
    "box.slots": {"zh": "货道", "en": "slots"},
    "box.last_contact": {"zh": "最近联系", "en": "last contact"},
    "box.door": {"zh": "箱门", "en": "door"},
    "box.board": {"zh": "主板", "en": "board"},
    "box.faults": {"zh": "未清除故障", "en": "open faults"},
    "box.today": {"zh": "近 7 日发放", "en": "dispensed, 7 days"},
    "climate.title": {"zh": "{site} {room} 温湿度", "en": "{site} {room} climate"},
    "climate.limits": {
        "zh": "允许范围：温度 {t0}–{t1} °C，湿度 {h0}–{h1} %RH",
        "en": "allowed: {t0}–{t1} °C, {h0}–{h1} %RH",
    },
    "climate.mkt": {
        "zh": "平均动力学温度（MKT）：{mkt} °C",
        "en": "mean kinetic temperature: {mkt} °C",
    },
    "climate.no_mkt": {
        "zh": "此时段无记录，无法计算 MKT",
        "en": "no records in the window: no MKT",
    },
    "climate.excursions": {"zh": "超限时段", "en": "Excursions"},
    "climate.no_excursions": {"zh": "此时段没有超限。", "en": "No excursion in the window."},
    "climate.points": {
        "zh": "{n} 个点（{how}）",
        "en": "{n} points ({how})",
    },
    "climate.raw": {"zh": "逐条记录", "en": "every record"},
    "climate.bucket": {"zh": "每 {minutes} 分钟汇总", "en": "one per {minutes} min"},
    "window.24h": {"zh": "24 小时", "en": "24 h"},
    "window.7d": {"zh": "7 天", "en": "7 days"},
    "window.30d": {"zh": "30 天", "en": "30 days"},
    "window.1y": {"zh": "1 年", "en": "1 year"},
    "col.temperature": {"zh": "温度 °C", "en": "temp °C"},
    "col.humidity": {"zh": "湿度 %RH", "en": "RH %"},
    "col.from": {"zh": "开始", "en": "from"},
    "col.to": {"zh": "结束", "en": "to"},
    "col.duration": {"zh": "持续", "en": "lasted"},
    "col.site": {"zh": "站点", "en": "site"},
    "col.storeroom": {"zh": "库房", "en": "storeroom"},
    "col.sensor": {"zh": "传感器", "en": "sensor"},
    "col.at": {"zh": "时间", "en": "at"},
    "alerts.title": {"zh": "告警", "en": "Alerts"},
    "alerts.none": {"zh": "没有未处理的告警。", "en": "No open alert."},
    "alerts.all": {"zh": "含已解除", "en": "resolved too"},
    "alerts.open": {"zh": "只看未处理", "en": "open only"},
    "alerts.ack": {"zh": "确认", "en": "Acknowledge"},
    "alerts.action": {"zh": "采取的调控措施（如：开启除湿机）", "en": "regulating action taken"},
    "alerts.acked": {
        "zh": "已确认告警 {id}",
        "en": "alert {id} acknowledged",
    },
    "alerts.told": {"zh": "通知记录", "en": "Who was told"},
    "alerts.never_told": {"zh": "尚未通知任何人。", "en": "Nobody was told yet."},
    "ack.invalid": {
        "zh": "确认人或措施不合要求（措施最多 200 字）",
        "en": "the name or action is not acceptable (action at most 200 characters)",
    },
    "stock.product": {"zh": "品种", "en": "product"},
    "stock.batch": {"zh": "批号", "en": "batch"},
    "stock.zone": {"zh": "区域", "en": "zone"},
    "stock.place": {"zh": "位置", "en": "place"},
    "stock.expiry": {"zh": "有效期至", "en": "expires"},
    "stock.quantity": {"zh": "数量", "en": "quantity"},
    "stock.expiring": {"zh": "效期内天数", "en": "expiring within (days)"},
    "stock.filter": {"zh": "筛选", "en": "Filter"},
    "stock.none": {"zh": "没有符合条件的库存。", "en": "No stock matches."},
    "stock.expired": {"zh": "已过期", "en": "expired"},
    "stock.days": {"zh": "天", "en": " days"},
    "pdf.unavailable": {
        "zh": "此服务器未安装 PDF 组件，请用浏览器打印本页，或请管理员安装（见部署说明）。",
        "en": "PDF is not installed on this server: print the page from the browser, or ask "
        "the administrator to install it (see the deployment guide).",
    },
    "restock.title": {"zh": "补货建议", "en": "Restock proposals"},
    "restock.explain": {
        "zh": "按近 30 天的发放速度，{below} 天内将发完的货道；"
        "建议补足 30 天的用量，按近效期先出从上级库房取货。",
        "en": "Box slots that run out within {below} days at the last 30 days' rate; enough for 30 "
        "days, taken from the storeroom above, first expiry first out.",
    },
    "restock.horizon": {"zh": "几天内发完", "en": "running out within (days)"},
    "restock.nothing": {"zh": "目前没有需要补货的货道。", "en": "No slot needs restocking now."},
    "restock.slot": {"zh": "发放机货道", "en": "box slot"},
    "restock.on_hand": {"zh": "现存", "en": "on hand"},
    "restock.per_day": {"zh": "日均发放", "en": "per day"},
    "restock.days_left": {"zh": "可用天数", "en": "days left"},
    "restock.propose": {"zh": "建议补货", "en": "to load"},
    "restock.from_place": {"zh": "取货库房", "en": "from"},
    "restock.batches": {"zh": "批号 × 数量", "en": "batch × quantity"},
    "restock.approve": {"zh": "批准补货", "en": "Approve"},
    "restock.short": {"zh": "库存不足，缺 {missing}", "en": "{missing} short"},
    "restock.bad_input": {
        "zh": "补货数量须为 1 到 10000 的整数。",
        "en": "The quantity must be a whole number from 1 to 10000.",
    },
    "restock.approved": {
        "zh": "已批准：{box} 补 {batch} × {quantity}，货已转为在途，补货单已发往发放机。",
        "en": "Approved: {batch} × {quantity} for {box}; the stock is in transit and the order "
        "is on its way to the box.",
    },
    "sheet.heading": {"zh": "库房温湿度记录表", "en": "Storeroom temperature and humidity record"},
    "sheet.month": {"zh": "月份", "en": "month"},
    "sheet.remarks": {"zh": "备注", "en": "Remarks"},
    "sheet.reviewer_line": {"zh": "审核人：______________", "en": "Reviewed by: ______________"},
    "sheet.date_line": {"zh": "日期：______________", "en": "Date: ______________"},
    "sheet.link": {"zh": "本月温湿度记录表", "en": "this month's record sheet"},
    "report.product": {"zh": "品种", "en": "product"},
    "report.batch": {"zh": "批号", "en": "batch"},
    "report.opening": {"zh": "期初", "en": "opening"},
    "report.received": {"zh": "入库", "en": "received"},
    "report.transferred_in": {"zh": "调入", "en": "transferred in"},
    "report.transferred_out": {"zh": "调出", "en": "transferred out"},
    "report.dispensed": {"zh": "发放", "en": "dispensed"},
    "report.adjusted": {"zh": "调整", "en": "adjusted"},
    "report.closing": {"zh": "期末", "en": "closing"},
    "report.site": {"zh": "站点", "en": "site"},
    "report.box": {"zh": "发放点", "en": "point"},
    "report.books": {"zh": "账面发放", "en": "books"},
    "report.box_records": {"zh": "机器记录", "en": "box records"},
    "report.of_median": {"zh": "与中位数之比", "en": "of median"},
    "report.flag": {"zh": "提示", "en": "flag"},
    "report.stock_title": {
        "zh": "{name}（{site}）{month} 药具进销存月报",
        "en": "{name} ({site}) stock report {month}",
    },
    "report.unbalanced": {
        "zh": "注意：有品种的期初加本月变动不等于期末，请核对账目",
        "en": "Note: a line's opening plus the month does not equal its closing; check the books",
    },
    "report.none": {"zh": "本月无变动、无结存。", "en": "Nothing held or moved this month."},
    "report.dispensing_title": {"zh": "{month} 各发放点发放统计", "en": "Dispensing {month}"},
    "report.median": {
        "zh": "中位数 {median}：低于其 {under} 倍为使用偏少，高于其 {over} 倍为使用偏多",
        "en": "median {median}: below {under}× is under-used, above {over}× over-used",
    },
    "report.differs": {"zh": "账机不符", "en": "books ≠ box"},
    "reports.title": {"zh": "报表", "en": "Reports"},
    "reports.sheets": {"zh": "库房温湿度记录表", "en": "Storeroom climate record sheets"},
    "reports.stock": {"zh": "药具进销存月报", "en": "Monthly stock reports"},
    "reports.dispensing": {"zh": "发放统计", "en": "Dispensing statistics"},
    "reports.month": {"zh": "月份", "en": "Month"},
    "reports.show": {"zh": "显示", "en": "Show"},
    "flag.under": {"zh": "使用偏少", "en": "under-used"},
    "flag.over": {"zh": "使用偏多", "en": "over-used"},
    "boxes.title": {"zh": "发放机", "en": "Dispensing boxes"},
    "boxes.none": {"zh": "还没有发放机上报。", "en": "No box has reported yet."},
    "boxes.count": {"zh": "数量", "en": "count"},
    "boxes.state": {"zh": "状态", "en": "state"},
    "boxes.reason": {"zh": "原因", "en": "reason"},
    "boxes.day": {"zh": "日期", "en": "day"},
    "boxes.refused": {"zh": "拒绝", "en": "refused"},
    "boxes.failed": {"zh": "失败", "en": "failed"},
    "cards.title": {"zh": "IC 卡登记", "en": "Card registry"},
    "cards.none": {"zh": "没有卡。", "en": "No card."},
    "cards.issue": {"zh": "登记新卡", "en": "Register a card"},
    "cards.uid": {
        "zh": "卡号（读卡器显示的十六进制）",
        "en": "card UID (hex, as the reader shows)",
    },
    "cards.group": {"zh": "分组", "en": "group"},
    "cards.role": {"zh": "类别", "en": "kind"},
    "cards.card": {"zh": "卡（化名）", "en": "card (pseudonym)"},
    "cards.lost": {"zh": "挂失", "en": "Lost"},
    "cards.revoke": {"zh": "注销", "en": "Revoke"},
    "cards.privacy": {
        "zh": "只保存卡号的化名，不保存卡号本身，也不显示持卡人。",
        "en": "Only each card's pseudonym is kept: never its number; holders are not shown.",
    },
    "cards.issued": {"zh": "卡 {card}：{change}", "en": "card {card}: {change}"},
    "cards.status_set": {"zh": "卡 {card} 已{status}", "en": "card {card} now {status}"},
    "cards.bad_input": {
        "zh": "卡号应为十六进制数字，分组为小写字母、数字、- 或 _",
        "en": "the UID is hex digits; a group is lower-case letters, digits, - or _",
    },
    "change.issued": {"zh": "已登记", "en": "registered"},
    "change.reissued": {"zh": "已重新启用", "en": "active again"},
    "change.updated": {"zh": "已更新", "en": "updated"},
    "change.unchanged": {"zh": "已登记过，未变", "en": "already registered"},
    "nav.cards.admin": {"zh": "IC 卡", "en": "Cards"},
}

_LOOKUP: tuple[dict[str, dict[Language, str]], ...] = (TEXTS, ALERT_TEXTS, USER_TEXTS, LEDGER_TEXTS)


def text(lang: Language, key: str, /, **fields: object) -> str:
    """The text for ``key`` in ``lang``; the key itself if no domain has it (never an error
    on a page)."""
    for texts in _LOOKUP:
        if key in texts:
            found = texts[key][lang]
            break
    else:
        found = t_or(key, key, lang)
        if found == key:
            return key
    try:
        return found.format(**fields) if fields else found
    except (KeyError, IndexError, ValueError):
        return found
