"""The ledger as people read it: refusals, confirmations and tables, in Simplified Chinese by
default and English; codes (zones, reasons) become words, never a library's text."""

from __future__ import annotations

from server.i18n import Language, render

TEXTS: dict[str, dict[Language, str]] = {
    "stock.short": {
        "zh": "{place} 的{zone}区只有批号 {batch} {have} 个，不能取 {quantity} 个",
        "en": "{place} holds only {have} of batch {batch} in its {zone} zone, not {quantity}",
    },
    "product.unknown": {
        "zh": "没有品种 {product}（先用 product add 登记）",
        "en": "no product {product} (register it with product add)",
    },
    "product.storeroom": {
        "zh": "品种 {product} 存放在 {storeroom} 库房",
        "en": "product {product} is kept in storeroom {storeroom}",
    },
    "batch.unknown": {
        "zh": "品种 {product} 没有批号 {batch}（入库时用 --expiry 登记）",
        "en": "product {product} has no batch {batch} (give --expiry to register it)",
    },
    "batch.expired": {
        "zh": "批号 {batch} 已于 {expiry} 过期，不能入库或调拨",
        "en": "batch {batch} expired on {expiry}: it is neither received nor moved",
    },
    "batch.expiry_differs": {
        "zh": "批号 {batch} 已登记的有效期是 {expiry}",
        "en": "batch {batch} is registered with expiry {expiry}",
    },
    "site.unknown": {
        "zh": "没有站点 {site}（先用 site add 登记）",
        "en": "no site {site} (register it with site add)",
    },
    "site.level": {
        "zh": "站点 {site} 的级别应低于上级 {parent}",
        "en": "site {site} must be a level below its parent {parent}",
    },
    "zone.storerooms_only": {
        "zh": "{place} 没有{zone}区：分区只在库房里",
        "en": "{place} has no {zone} zone: zones are in storerooms only",
    },
    "transfer.same_place": {"zh": "调出和调入是同一处", "en": "from and to are the same place"},
    "place.slot": {"zh": "{place} 没有货道", "en": "{place} has no slots"},
    "place.box_needs_slot": {
        "zh": "发放柜要写货道，如 {place}#1",
        "en": "a box needs its slot, e.g. {place}#1",
    },
    "stock.unplaced": {
        "zh": "注意：站点 {sites} 有库存，但不在站点层级中（用 site add 登记），不计入上级汇总",
        "en": "note: sites {sites} hold stock but are not in the levels (site add): they roll up "
        "nowhere",
    },
    "restock.no_agent": {
        "zh": "发放柜的终端 {agent} 未登记，补货单无法下发",
        "en": "the box's agent {agent} is not registered: the order cannot be sent",
    },
    "restock.from": {
        "zh": "补货要从库房的合格区调出，如 站点:no1，不是“{value}”",
        "en": "a restock comes from a storeroom's qualified zone, e.g. site:no1: not '{value}'",
    },
    "return.from": {
        "zh": "退回只能从库房或在途的合格区、退货区调出，不是“{value}”",
        "en": "a return comes from a storeroom or transit, qualified or returned: not '{value}'",
    },
    "return.to": {
        "zh": "退回要进库房的退货区，如 站点:no1，不是“{value}”",
        "en": "a return goes into a storeroom's returned zone, e.g. site:no1: not '{value}'",
    },
    "place.bad": {
        "zh": "无法识别的位置“{value}”（应为 站点:no1、站点:transit 或 站点:柜号#货道）",
        "en": "not a place: '{value}' (site:no1, site:transit or site:box#slot)",
    },
    "line.bad": {
        "zh": "无法识别的盘点行“{value}”（应为 品种:批号:数量[:分区]）",
        "en": "not a count line: '{value}' (product:batch:quantity[:zone])",
    },
    "count.twice": {
        "zh": "{product} 批号 {batch} 在盘点中出现了两次",
        "en": "{product} batch {batch} is counted twice",
    },
    "entered": {"zh": "已记账（第 {first} 条）", "en": "entered (entry {first})"},
    "entered_many": {
        "zh": "已记账（第 {first}–{last} 条）",
        "en": "entered (entries {first}-{last})",
    },
    "stocktake.done": {
        "zh": "盘点已记账：{n} 个批号有差异",
        "en": "stocktake entered: {n} batches differ",
    },
    "stocktake.zeroed": {
        "zh": "（账上有而未列出的批号按 0 计）",
        "en": "(batches on the books but not listed were counted 0)",
    },
    "stock.none": {"zh": "没有库存", "en": "no stock"},
    "db.failed": {"zh": "数据库出错，详情见日志", "en": "database error; see the log"},
    "col.site": {"zh": "站点", "en": "site"},
    "col.place": {"zh": "位置", "en": "place"},
    "col.zone": {"zh": "分区", "en": "zone"},
    "col.product": {"zh": "品种", "en": "product"},
    "col.batch": {"zh": "批号", "en": "batch"},
    "col.expiry": {"zh": "有效期", "en": "expiry"},
    "col.quantity": {"zh": "数量", "en": "quantity"},
    "col.warning": {"zh": "提示", "en": "note"},
    "col.days_to_expiry": {"zh": "距过期天数", "en": "days to expiry"},
    "col.places": {"zh": "存放位置数", "en": "places"},
    "zone.awaiting": {"zh": "待验", "en": "awaiting inspection"},
    "zone.qualified": {"zh": "合格", "en": "qualified"},
    "zone.dispatch": {"zh": "发货", "en": "dispatch"},
    "zone.unqualified": {"zh": "不合格", "en": "unqualified"},
    "zone.returned": {"zh": "退货", "en": "returned"},
    "expiry.0": {"zh": "已过期", "en": "expired"},
    "expiry.30": {"zh": "30 天内过期", "en": "expires within 30 days"},
    "expiry.90": {"zh": "90 天内过期", "en": "expires within 90 days"},
    "expiry.180": {"zh": "180 天内过期", "en": "expires within 180 days"},
    "negative": {"zh": "账实不符", "en": "books below zero"},
    "suggest.short": {
        "zh": "还缺 {missing} 个：在期的合格库存不够",
        "en": "{missing} short: not enough qualified stock in date",
    },
    "restock.none": {
        "zh": "没有需要补货的货道（按近期发放速度，{below} 天内都不会取空）",
        "en": "no slot needs restocking (none empties within {below} days at its recent rate)",
    },
    "restock.no_slot": {
        "zh": "没有货道 {where}（该柜尚未上报）",
        "en": "no slot {where} (the box has not reported it)",
    },
    "restock.too_many": {
        "zh": "一次补货最多 {most} 件",
        "en": "one restock order loads at most {most}",
    },
    "col.slot": {"zh": "货道", "en": "slot"},
    "col.per_day": {"zh": "日均发放", "en": "per day"},
    "col.days_left": {"zh": "可用天数", "en": "days left"},
    "col.propose": {"zh": "建议补货", "en": "propose"},
    "col.from": {"zh": "调出", "en": "from"},
    "col.batches": {"zh": "批号（先到期先出）", "en": "batches (FEFO)"},
    "csv.written": {"zh": "已写出 {n} 条流水到 {path}", "en": "{n} movements written to {path}"},
    "csv.unwritable": {"zh": "无法写入 {path}", "en": "cannot write {path}"},
    "csv.id": {"zh": "序号", "en": "id"},
    "csv.utc": {"zh": "时间（UTC）", "en": "time (UTC)"},
    "csv.local": {"zh": "时间（本地）", "en": "time (local)"},
    "csv.kind": {"zh": "类别", "en": "kind"},
    "csv.product": {"zh": "品种", "en": "product"},
    "csv.batch": {"zh": "批号", "en": "batch"},
    "csv.quantity": {"zh": "数量", "en": "quantity"},
    "csv.from": {"zh": "调出", "en": "from"},
    "csv.to": {"zh": "调入", "en": "to"},
    "csv.reason": {"zh": "原因", "en": "reason"},
    "csv.by": {"zh": "经办人", "en": "entered by"},
    "csv.source": {"zh": "来源", "en": "source"},
    "kind.receipt": {"zh": "入库", "en": "receipt"},
    "kind.inspection": {"zh": "验收", "en": "inspection"},
    "kind.transfer": {"zh": "调拨", "en": "transfer"},
    "kind.return": {"zh": "退回", "en": "return"},
    "kind.restock": {"zh": "补货", "en": "restock"},
    "kind.dispense": {"zh": "发放", "en": "dispense"},
    "kind.removal": {"zh": "取出", "en": "removal"},
    "kind.adjustment": {"zh": "调整", "en": "adjustment"},
    "kind.disposal": {"zh": "销毁", "en": "disposal"},
    "kind.stocktake": {"zh": "盘点", "en": "stocktake"},
}


def say(lang: Language, key: str, /, **fields: object) -> str:
    """The text for ``key``; a field that is itself a zone is shown as the zone's name."""
    return render(TEXTS, lang, key, fields, named=("zone",))
