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

#: The card registry (``edge-server cards``). A text never holds a card number: only its
#: shortened pseudonym, or the line of a file it was on.
_TEXTS |= {
    "key.not_configured": {
        "zh": "未配置卡密钥：请在 server.toml 的 [cards] 中设置 key_file"
        "（密钥文件用 edge-server cards make-key 生成）",
        "en": "no card key configured: set key_file in [cards] of server.toml "
        "(edge-server cards make-key makes the file)",
    },
    "key.unreadable": {
        "zh": "无法读取卡密钥文件 {path}",
        "en": "cannot read the card key file {path}",
    },
    "key.invalid": {
        "zh": "卡密钥文件 {path} 的内容不对：应只有 64 个十六进制数字",
        "en": "the card key file {path} must hold exactly 64 hex digits",
    },
    "key.exists": {"zh": "{path} 已存在，未覆盖", "en": "{path} exists; not overwritten"},
    "key.unwritable": {"zh": "无法写入 {path}", "en": "cannot write {path}"},
    "key.made": {
        "zh": "卡密钥已写入 {path}（仅本用户可读），密钥编号 {key_id}。"
        "请把同一个文件安全地交给各终端，切勿外传。",
        "en": "card key written to {path} (readable by you alone), key id {key_id}. "
        "Give the same file to every agent, safely; never share it otherwise.",
    },
    "uid.bad": {
        "zh": "卡号格式不对：应为 4、7、8 或 10 个字节的十六进制数",
        "en": "not a card UID: 4, 7, 8 or 10 bytes written in hex",
    },
    "id.bad": {
        "zh": "身份证号格式不对：应为 17 位数字加一位校验码（数字或 X）",
        "en": "not an ID number: 17 digits and a check digit or X",
    },
    "id.check": {
        "zh": "身份证号校验码不对（读错或输错？）",
        "en": "the ID number's check character is wrong (misread or mistyped?)",
    },
    "prompt.uid": {"zh": "卡号（输入时不显示）", "en": "card UID (not shown)"},
    "prompt.id": {"zh": "身份证号（输入时不显示）", "en": "ID number (not shown)"},
    "card.number_in_history": {
        "zh": "注意：写在命令行上的号码会留在命令历史和进程列表里；"
        "以后只写 --uid 或 --id-number，按提示输入",
        "en": "note: a number on the command line stays in the shell history and the process "
        "list; next time give --uid or --id-number alone and type it when asked",
    },
    "card.one_of": {"zh": "请只给出 {options} 之一", "en": "give exactly one of {options}"},
    "card.unknown": {"zh": "此卡未登记", "en": "this card is not registered"},
    "card.twice": {"zh": "同一张卡出现了两次", "en": "the same card is given twice"},
    "card.ambiguous": {
        "zh": "{prefix} 对应多张卡，请多给几位",
        "en": "{prefix} matches several cards; give more of its digits",
    },
    "card.bad_pseudonym": {
        "zh": "卡代号应为十六进制数字，至少 {digits} 位（见 cards list）",
        "en": "a card pseudonym is hex digits, at least {digits} (see cards list)",
    },
    "card.issued": {
        "zh": "已登记卡 {card}：{role}，分组 {group}（登记册版本 {version}）",
        "en": "card {card} registered: {role}, group {group} (registry version {version})",
    },
    "card.reissued": {
        "zh": "卡 {card} 已重新启用：{role}，分组 {group}（登记册版本 {version}）",
        "en": "card {card} active again: {role}, group {group} (registry version {version})",
    },
    "card.updated": {
        "zh": "卡 {card} 已更新：{role}，分组 {group}（登记册版本 {version}）",
        "en": "card {card} updated: {role}, group {group} (registry version {version})",
    },
    "card.unchanged": {
        "zh": "卡 {card} 已登记，没有变化（版本 {version}）",
        "en": "card {card} is registered already; nothing changed (version {version})",
    },
    "card.status_set": {
        "zh": "卡 {card} 已{status}（登记册版本 {version}），各药具箱将随下次同步拒绝此卡",
        "en": "card {card} marked {status} (registry version {version}); the boxes refuse it "
        "from their next sync",
    },
    "card.status_same": {
        "zh": "卡 {card} 已是{status}状态",
        "en": "card {card} is {status} already",
    },
    "card.holder_kept": {"zh": "持卡人信息已保存", "en": "holder details kept"},
    "status.active": {"zh": "有效", "en": "active"},
    "status.lost": {"zh": "挂失", "en": "lost"},
    "status.revoked": {"zh": "注销", "en": "revoked"},
    "role.villager": {"zh": "村民", "en": "villager"},
    "role.technician": {"zh": "技术员", "en": "technician"},
    "col.card": {"zh": "卡（代号）", "en": "card (pseudonym)"},
    "col.status": {"zh": "状态", "en": "status"},
    "col.role": {"zh": "角色", "en": "role"},
    "col.group": {"zh": "分组", "en": "group"},
    "col.version": {"zh": "版本", "en": "version"},
    "col.updated": {"zh": "更新时间", "en": "updated"},
    "col.product_group": {"zh": "药具类别", "en": "product group"},
    "col.quantity": {"zh": "数量", "en": "quantity"},
    "col.period": {"zh": "周期（天）", "en": "period (days)"},
    "cards.none": {"zh": "没有符合条件的卡。", "en": "No cards match."},
    "cards.total": {
        "zh": "共 {n} 张；登记册版本 {version}",
        "en": "{n} cards; registry version {version}",
    },
    "holder.none": {"zh": "未保存此卡的持卡人信息。", "en": "No holder is kept for this card."},
    "holder.shown": {
        "zh": "持卡人：{name}\n电话：{phone}\n备注：{note}",
        "en": "holder: {name}\nphone: {phone}\nnote: {note}",
    },
    "holder.denied": {
        "zh": "无权读取持卡人信息：只有管理员的数据库账号可以",
        "en": "not allowed to read card holders: the administrators' database account only",
    },
    "db.failed": {
        "zh": "数据库出错，未完成（详情见日志）",
        "en": "database error; nothing done (details in the log)",
    },
    "bad.ident": {
        "zh": "{what} 应为小写字母、数字或 - _ .（最多 64 个）",
        "en": "{what} must be lower-case letters, digits, '-', '_', '.' (at most 64)",
    },
    "bad.phone": {
        "zh": "电话号码太长（最多 {most} 个字符）",
        "en": "phone too long (at most {most})",
    },
    "bad.range": {"zh": "{what} 应在 {lo} 到 {hi} 之间", "en": "{what} must be {lo}..{hi}"},
    "rule.set": {
        "zh": "规则已设置：{group} 组每 {period} 天最多领取 {quantity} 件 {product}，{where}"
        "（登记册版本 {version}）",
        "en": "rule set: group {group} may take {quantity} of {product} per {period} days, "
        "{where} (registry version {version})",
    },
    "rule.county": {"zh": "全县", "en": "county-wide"},
    "rule.site": {"zh": "仅限 {site}", "en": "at {site} only"},
    "rules.none": {
        "zh": "尚未设置规则：各药具箱按自己配置的默认规则。",
        "en": "No rules set: the boxes keep the defaults in their configuration.",
    },
    "guest.refuse": {"zh": "未登记的卡：拒绝领取", "en": "unregistered cards: refused"},
    "guest.quota": {
        "zh": "未登记的卡：每 {period} 天最多 {quantity} 件",
        "en": "unregistered cards: at most {quantity} per {period} days",
    },
    "guest.set": {
        "zh": "{policy}（登记册版本 {version}）",
        "en": "{policy} (registry version {version})",
    },
    "import.unreadable": {"zh": "无法读取 {path}", "en": "cannot read {path}"},
    "import.header": {
        "zh": "第一行应为列名，含 uid 或 id_number（以及 role、group，可选 name、phone）",
        "en": "the first line must name the columns: uid or id_number (and role, group; "
        "name, phone optional)",
    },
    "import.line": {"zh": "第 {line} 行：{why}", "en": "line {line}: {why}"},
    "import.no_card": {"zh": "没有卡号（uid 或 id_number）", "en": "no uid or id_number"},
    "import.both": {"zh": "uid 和 id_number 只能填一个", "en": "give uid or id_number, not both"},
    "import.role": {
        "zh": "角色应为 villager 或 technician",
        "en": "role must be villager or technician",
    },
    "import.same_card": {"zh": "与第 {other} 行是同一张卡", "en": "the same card as line {other}"},
    "import.refused": {
        "zh": "有 {n} 行有误，没有导入任何卡；改正后请重新导入",
        "en": "{n} lines are wrong; no card was imported. Correct them and import again",
    },
    "import.empty": {"zh": "文件中没有卡", "en": "the file holds no cards"},
    "import.done": {
        "zh": "已导入 {n} 张卡：新登记 {issued}，重新启用 {reissued}，更新 {updated}，"
        "无变化 {unchanged}；登记册版本 {version}",
        "en": "{n} cards imported: {issued} new, {reissued} active again, {updated} updated, "
        "{unchanged} unchanged; registry version {version}",
    },
    "import.wipe": {
        "zh": "文件中有原始卡号，导入后请删除或妥善保管。",
        "en": "The file holds the cards' numbers: delete it or lock it away now.",
    },
    "reader.wait": {"zh": "请在读卡器上放卡……", "en": "Present the card to the reader…"},
    "reader.open_failed": {
        "zh": "无法打开读卡器 {device}",
        "en": "cannot open the card reader {device}",
    },
    "reader.timeout": {"zh": "{seconds} 秒内没有读到卡", "en": "no card read within {seconds} s"},
    "reader.bad": {
        "zh": "读卡器发来的数据不是卡号（格式 {format} 对吗？）",
        "en": "the reader sent something that is not a card (is the format {format} right?)",
    },
}

#: Dispensing boxes (``edge-server boxes``).
_TEXTS |= {
    "boxes.none": {"zh": "暂无药具箱数据。", "en": "No dispensing boxes yet."},
    "box.title": {"zh": "{site} / {agent} / 药具箱 {box}", "en": "{site} / {agent} / box {box}"},
    "colon": {"zh": "：", "en": ": "},
    "semicolon": {"zh": "；", "en": "; "},
    "box.board": {"zh": "主板", "en": "board"},
    "box.door": {"zh": "箱门", "en": "door"},
    "box.tamper": {"zh": "最近一次箱门报警", "en": "last tamper"},
    "box.unknown": {"zh": "未知", "en": "unknown"},
    "box.faults": {"zh": "未处理的故障：", "en": "open faults:"},
    "box.no_faults": {"zh": "无未处理的故障", "en": "no open faults"},
    "box.days": {"zh": "近 {n} 天：", "en": "last {n} days:"},
    "box.day": {
        "zh": "{day}  发放 {dispensed}  拒绝 {refused}  故障 {failed}",
        "en": "{day}  {dispensed} dispensed  {refused} refused  {failed} failed",
    },
    "board.online": {"zh": "在线", "en": "online"},
    "board.offline": {"zh": "离线", "en": "offline"},
    "board.power_up": {"zh": "刚重启", "en": "restarted"},
    "board.drop_sensor_fault": {"zh": "掉货检测故障", "en": "drop sensor faulty"},
    "door.opened": {"zh": "开", "en": "open"},
    "door.closed": {"zh": "关", "en": "closed"},
    "door.by_technician": {"zh": "技术员刷卡", "en": "technician's card"},
    "col.slot": {"zh": "货道", "en": "slot"},
    "col.product": {"zh": "药具", "en": "product"},
    "col.count": {"zh": "数量", "en": "count"},
    "col.state": {"zh": "状态", "en": "state"},
    "col.batch": {"zh": "批号", "en": "batch"},
    "col.expiry": {"zh": "有效期至", "en": "expiry"},
    "col.changed": {"zh": "更新时间", "en": "changed"},
    "slot.ok": {"zh": "正常", "en": "ok"},
    "slot.low": {"zh": "库存偏少", "en": "low"},
    "slot.empty": {"zh": "缺货", "en": "empty"},
    "slot.faulty": {"zh": "故障", "en": "faulty"},
    "slot.expired": {"zh": "已过期（停用）", "en": "expired (blocked)"},
    "slot.count_needed": {"zh": "需盘点", "en": "count needed"},
    "fault.vend_failed": {
        "zh": "货道 {slot} 出货失败：{reason}",
        "en": "slot {slot} vend failed: {reason}",
    },
    "fault.vend_unknown": {
        "zh": "货道 {slot} 出货结果不明：{reason}（需盘点）",
        "en": "slot {slot} vend outcome unknown: {reason} (count needed)",
    },
    "fault.tamper": {"zh": "箱门报警：{reason}", "en": "tamper: {reason}"},
    "fault.board_offline": {"zh": "主板无应答", "en": "main board not answering"},
    "fault.drop_sensor": {"zh": "掉货检测器故障", "en": "drop sensor faulty"},
    "why.jammed": {"zh": "卡货", "en": "jammed"},
    "why.motor_fault": {"zh": "电机故障", "en": "motor fault"},
    "why.no_drop": {"zh": "未检测到掉货", "en": "no drop detected"},
    "why.drop_sensor_fault": {"zh": "掉货检测器故障", "en": "drop sensor fault"},
    "why.refused_by_board": {"zh": "主板拒绝", "en": "refused by the board"},
    "why.no_answer": {"zh": "主板无应答", "en": "board did not answer"},
    "why.board_busy": {"zh": "主板忙", "en": "board busy"},
    "why.door_open": {"zh": "柜门未关", "en": "door open"},
    "why.interrupted": {"zh": "出货时断电", "en": "power lost during the vend"},
    "why.forgotten": {"zh": "主板无此记录", "en": "the board has no record of it"},
    "why.door_without_card": {"zh": "未刷技术员卡开门", "en": "door opened without a card"},
    "why.door_left_open": {"zh": "箱门长时间未关", "en": "door left open"},
}

#: What ``edge-server boxes tail`` (and the demo) prints as box events arrive. Never a card.
_TEXTS |= {
    "tail.box": {"zh": "药具箱 {box}", "en": "box {box}"},
    "tail.dispense": {
        "zh": "✓ 发放 {product} {quantity} 件：货道 {slot}，批号 {batch}，剩 {count}",
        "en": "✓ dispensed {product} x{quantity}: slot {slot}, batch {batch}, {count} left",
    },
    "tail.state_note": {"zh": "（{state}）", "en": " ({state})"},
    "tail.restock": {
        "zh": "货道 {slot} 装入 {product} {quantity} 件，批号 {batch}，有效期至 {expiry}，"
        "现有 {count}",
        "en": "slot {slot} loaded: {product} x{quantity}, batch {batch}, expiry {expiry}; "
        "{count} in it",
    },
    "tail.remove": {
        "zh": "货道 {slot} 取出 {quantity} 件，剩 {count}",
        "en": "{quantity} taken out of slot {slot}, {count} left",
    },
    "tail.count": {"zh": "货道 {slot} 盘点：{count} 件", "en": "slot {slot} counted: {count}"},
    "tail.not_ready": {
        "zh": "✗ 货道 {slot} 未出货：{reason}（货道正常，不计入领取次数）",
        "en": "✗ slot {slot} not vended: {reason} (the slot is fine; not counted)",
    },
    "tail.vend_failed": {
        "zh": "✗ 货道 {slot} 出货失败：{reason}，货道已标为{state}（不计入领取次数）",
        "en": "✗ slot {slot} vend failed: {reason}; the slot is marked {state} (not counted)",
    },
    "tail.vend_unknown": {
        "zh": "？货道 {slot} 出货结果不明：{reason}，需盘点（不计入领取次数）",
        "en": "? slot {slot} vend outcome unknown: {reason}; count needed (not counted)",
    },
    "tail.slot": {
        "zh": "货道 {slot}（{product}）：{state}，剩 {count}",
        "en": "slot {slot} ({product}): {state}, {count} left",
    },
    "tail.refused": {"zh": "拒绝：{reason}", "en": "refused: {reason}"},
    "tail.refused_group": {"zh": "拒绝（{group}）：{reason}", "en": "refused ({group}): {reason}"},
    "tail.by_technician": {"zh": "（技术员刷卡）", "en": " (technician's card)"},
    # Why a take was refused (TakeRefused.reason), as the display said it.
    "refusal.unregistered": {"zh": "此卡未登记", "en": "card not registered"},
    "refusal.lost": {"zh": "此卡已挂失", "en": "card reported lost"},
    "refusal.revoked": {"zh": "此卡已注销", "en": "card revoked"},
    "refusal.not_allowed": {"zh": "此卡不能领取", "en": "card may not take"},
    "refusal.quota": {"zh": "本期已领完", "en": "quota used up for this period"},
    "refusal.age": {"zh": "年龄不在范围内", "en": "age not eligible"},
    "refusal.misread": {"zh": "读卡失败", "en": "card not read"},
    "refusal.empty": {"zh": "无货", "en": "out of stock"},
    "refusal.expired": {"zh": "药具过期，暂停发放", "en": "stock expired, blocked"},
    "refusal.out_of_service": {"zh": "设备维护中", "en": "out of service"},
    "refusal.pause": {"zh": "离上次出货太近，请稍候", "en": "too soon after the last take"},
    "refusal.hourly_cap": {"zh": "本小时已达上限", "en": "hourly limit reached"},
    "refusal.door_open": {"zh": "箱门未关", "en": "door open"},
}

#: Climate history (``edge-server climate series|mkt|export``).
_TEXTS |= {
    "hist.bad_time": {
        "zh": "{option}：无法识别的时间“{value}”（应为 2026-01-31、2026-01-31 08:00 或 2026-01）",
        "en": "{option}: not a time: '{value}' (write 2026-01-31, 2026-01-31 08:00 or 2026-01)",
    },
    "hist.bad_order": {"zh": "--from 应早于 --to", "en": "--from must be before --to"},
    "hist.bad_bucket": {
        "zh": "--bucket 应为 auto、raw、15m、1h、6h、1d 或 7d",
        "en": "--bucket must be auto, raw, 15m, 1h, 6h, 1d or 7d",
    },
    "hist.unknown_site": {"zh": "没有站点 {site} 的数据", "en": "unknown site {site}"},
    "hist.unknown_room": {
        "zh": "站点 {site} 没有库房 {room}（已有：{known}）",
        "en": "site {site} has no storeroom {room} (it has: {known})",
    },
    "hist.empty": {
        "zh": "{what} 在 {start} 至 {end}（{zone}）之间没有记录",
        "en": "{what}: no records between {start} and {end} ({zone})",
    },
    "hist.unwritable": {"zh": "无法写入 {path}", "en": "cannot write {path}"},
    "sheet.bad_month": {
        "zh": "月份 {value} 无效：写作 2026-10",
        "en": "month {value} is not valid: write 2026-10",
    },
    "sheet.title": {
        "zh": "库房温湿度记录表　{site} {room}　{year}年{month}月（{zone}）",
        "en": "Temperature and humidity record: {site} {room}, {year}-{month:02d} ({zone})",
    },
    "sheet.limits": {
        "zh": "适宜温度 {t0:g}–{t1:g} °C，相对湿度 {h0:g}–{h1:g} %RH",
        "en": "Allowed {t0:g}–{t1:g} °C, {h0:g}–{h1:g} %RH",
    },
    "sheet.date": {"zh": "日期", "en": "date"},
    "sheet.time": {"zh": "时间", "en": "time"},
    "sheet.t": {"zh": "温度°C", "en": "°C"},
    "sheet.h": {"zh": "湿度%RH", "en": "%RH"},
    "sheet.ok": {"zh": "是否合格", "en": "in range"},
    "sheet.action": {"zh": "调控措施", "en": "action"},
    "sheet.after_t": {"zh": "调控后°C", "en": "after °C"},
    "sheet.after_h": {"zh": "调控后%RH", "en": "after %RH"},
    "sheet.recorder": {"zh": "记录人", "en": "recorder"},
    "sheet.day_range": {"zh": "当日最低/最高", "en": "day min/max"},
    "sheet.yes": {"zh": "合格", "en": "yes"},
    "sheet.no": {"zh": "超限", "en": "NO"},
    "sheet.none": {"zh": "无记录", "en": "no record"},
    "sheet.auto": {"zh": "自动", "en": "automatic"},
    "sheet.excursions": {"zh": "超限记录：", "en": "Excursions:"},
    "sheet.no_excursions": {"zh": "本月无超限。", "en": "No excursion this month."},
    "sheet.excursion": {
        "zh": "  {start} 至 {end}，历时 {duration}，"
        "温度 {t0:.1f}–{t1:.1f} °C，湿度 {h0:.0f}–{h1:.0f} %RH",
        "en": "  {start} to {end}, {duration}, {t0:.1f}–{t1:.1f} °C, {h0:.0f}–{h1:.0f} %RH",
    },
    "sheet.ongoing": {"zh": "（未结束）", "en": "(ongoing)"},
    "sheet.mkt": {
        "zh": "本月平均动力学温度（MKT）：{mkt}",
        "en": "Mean kinetic temperature: {mkt}",
    },
    "sheet.reviewer": {
        "zh": "审核人：__________　日期：__________",
        "en": "Reviewed by: __________  date: __________",
    },
    "sheet.written": {"zh": "记录表已写入 {path}", "en": "record sheet written to {path}"},
    "hist.title": {
        "zh": "{site} / {room}：{start} 至 {end}（{zone}）",
        "en": "{site} / {room}: {start} to {end} ({zone})",
    },
    "hist.step_raw": {
        "zh": "逐条记录，共 {records} 条",
        "en": "every record, {records} in all",
    },
    "hist.step": {
        "zh": "每 {step}一个点，共 {points} 个点、{records} 条记录",
        "en": "one point per {step}: {points} points, {records} records",
    },
    "hist.minutes": {"zh": "{n} 分钟", "en": "{n} min"},
    "hist.hours": {"zh": "{n} 小时", "en": "{n} h"},
    "hist.days": {"zh": "{n} 天", "en": "{n} days"},
    "hist.raw_values": {
        "zh": "显示传感器原始读数（未经校准修正）；终端汇总的记录没有原始读数，未计入。",
        "en": "Transmitters' own values (before calibration); records an agent folded into "
        "summaries have none and are left out.",
    },
    "hist.summarised": {
        "zh": "其中 {n} 条记录由终端汇总（只有最低、平均、最高值）。",
        "en": "{n} of the records came folded by the agent (min, mean, max only).",
    },
    "hist.col.time": {"zh": "时间", "en": "time"},
    "hist.col.records": {"zh": "记录数", "en": "records"},
    "hist.col.t_min": {"zh": "最低°C", "en": "min °C"},
    "hist.col.t_mean": {"zh": "平均°C", "en": "mean °C"},
    "hist.col.t_max": {"zh": "最高°C", "en": "max °C"},
    "hist.col.h_min": {"zh": "最低%RH", "en": "min %RH"},
    "hist.col.h_mean": {"zh": "平均%RH", "en": "mean %RH"},
    "hist.col.h_max": {"zh": "最高%RH", "en": "max %RH"},
    "hist.col.note": {"zh": "备注", "en": "note"},
    "hist.summary_note": {
        "zh": "汇总 {n} 条，{lo:.1f}～{hi:.1f} °C",
        "en": "summary of {n}, {lo:.1f} to {hi:.1f} °C",
    },
    "hist.mkt": {
        "zh": "平均动力学温度（MKT）：{mkt:.2f} °C（ΔH/R = {a:g} K）",
        "en": "mean kinetic temperature (MKT): {mkt:.2f} °C (ΔH/R = {a:g} K)",
    },
    "hist.mean": {"zh": "平均温度：{mean:.2f} °C", "en": "mean temperature: {mean:.2f} °C"},
    "hist.range": {
        "zh": "最低 / 最高：{lo:.1f} / {hi:.1f} °C",
        "en": "min / max: {lo:.1f} / {hi:.1f} °C",
    },
    "hist.records": {"zh": "记录数：{n}", "en": "records: {n}"},
    "hist.exported": {
        "zh": "已导出 {records} 条记录和 {summaries} 条汇总到 {path}",
        "en": "{records} records and {summaries} summaries written to {path}",
    },
    "csv.kind": {"zh": "类型", "en": "kind"},
    "csv.record": {"zh": "记录", "en": "record"},
    "csv.summary": {"zh": "汇总", "en": "summary"},
    "csv.site": {"zh": "站点", "en": "site"},
    "csv.storeroom": {"zh": "库房", "en": "storeroom"},
    "csv.sensor": {"zh": "传感器", "en": "sensor"},
    "csv.serial": {"zh": "传感器编号", "en": "serial"},
    "csv.time_utc": {"zh": "时间（UTC）", "en": "time (UTC)"},
    "csv.time_local": {"zh": "时间（{zone}）", "en": "time ({zone})"},
    "csv.until_local": {"zh": "汇总至（{zone}）", "en": "summary until ({zone})"},
    "csv.records": {"zh": "记录数", "en": "records"},
    "csv.temperature": {"zh": "温度(°C)", "en": "temperature (°C)"},
    "csv.humidity": {"zh": "湿度(%RH)", "en": "humidity (%RH)"},
    "csv.raw_temperature": {"zh": "原始温度(°C)", "en": "raw temperature (°C)"},
    "csv.raw_humidity": {"zh": "原始湿度(%RH)", "en": "raw humidity (%RH)"},
    "csv.t_min": {"zh": "最低温度(°C)", "en": "min temperature (°C)"},
    "csv.t_max": {"zh": "最高温度(°C)", "en": "max temperature (°C)"},
    "csv.h_min": {"zh": "最低湿度(%RH)", "en": "min humidity (%RH)"},
    "csv.h_max": {"zh": "最高湿度(%RH)", "en": "max humidity (%RH)"},
    "csv.quality": {"zh": "质量标记", "en": "quality"},
    "csv.clock_synced": {"zh": "终端时钟已同步", "en": "clock synced"},
    "csv.agent": {"zh": "终端", "en": "agent"},
    "csv.seq": {"zh": "序号", "en": "seq"},
    "yes": {"zh": "是", "en": "yes"},
    "no": {"zh": "否", "en": "no"},
}


#: Tamper evidence and backups (``edge-server verify``, ``edge-server backup``).
_TEXTS |= {
    "verify.ok": {"zh": "{agent}：完好，共 {n} 条记录", "en": "{agent}: intact, {n} records"},
    "verify.altered.hash": {
        "zh": "{agent}：第 {position} 条记录（消息 {message}）被改动：内容与其哈希不符",
        "en": "{agent}: record {position} (message {message}) was altered: its content no "
        "longer matches its hash",
    },
    "verify.altered.stream": {
        "zh": "{agent}：第 {position} 条记录（消息 {message}）被改动："
        "它所属的数据流不存在或属于另一终端",
        "en": "{agent}: record {position} (message {message}) was altered: its stream is gone "
        "or belongs to another agent",
    },
    "verify.missing.gap": {
        "zh": "{agent}：缺少第 {position} 条记录（在消息 {message} 之前）：已被删除",
        "en": "{agent}: record {position} is missing (before message {message}): deleted",
    },
    "verify.missing.end": {
        "zh": "{agent}：缺少第 {position} 至 {head} 条记录：链尾被删除",
        "en": "{agent}: records {position} to {head} are missing: the chain's end was deleted",
    },
    "verify.inserted.duplicate": {
        "zh": "{agent}：第 {position} 条记录（消息 {message}）是插入的：同一位置有两条记录",
        "en": "{agent}: record {position} (message {message}) was inserted: two records hold "
        "that position",
    },
    "verify.inserted.beyond_head": {
        "zh": "{agent}：第 {position} 条记录（消息 {message}）是插入的："
        "终端行上记的链尾是第 {head} 条",
        "en": "{agent}: record {position} (message {message}) was inserted: the agent's row "
        "ends the chain at {head}",
    },
    "verify.inserted.link": {
        "zh": "{agent}：第 {position} 条记录（消息 {message}）是插入的：它与前一条记录接不上"
        "（或前一条被改动后重算了哈希）",
        "en": "{agent}: record {position} (message {message}) was inserted: it does not link "
        "to the record before it (or that one was altered and its hash recomputed)",
    },
    "verify.head.hash": {
        "zh": "{agent}：终端行上记的链尾哈希与第 {position} 条记录不符：被改动",
        "en": "{agent}: the chain's last hash on the agent's row does not match record "
        "{position}: altered",
    },
    "verify.head.no_agent": {
        "zh": "{agent}：有 {position} 条记录，但终端行已不存在：被删除",
        "en": "{agent}: {position} records but no agent row: deleted",
    },
    "verify.journal.event": {
        "zh": "{agent}：索引中数据流 {epoch} 的第 {seq} 号事件指向消息 {message}，"
        "该消息不存在或属于另一数据流",
        "en": "{agent}: the journal's event {seq} of stream {epoch} points to message "
        "{message}, which is gone or another stream's",
    },
    "verify.journal.conflict": {
        "zh": "{agent}：数据流 {epoch} 第 {seq} 号的冲突记录指向消息 {message}，"
        "该消息不存在或属于另一数据流",
        "en": "{agent}: the conflict kept at seq {seq} of stream {epoch} points to message "
        "{message}, which is gone or another stream's",
    },
    "verify.all_ok": {
        "zh": "全部 {n} 个终端的记录链完整。",
        "en": "All {n} agents' record chains are intact.",
    },
    "verify.broken": {
        "zh": "{bad} 个终端的记录链有问题（共 {n} 个），见上。",
        "en": "{bad} of {n} agents' record chains are broken (see above).",
    },
    "verify.none": {"zh": "还没有任何记录。", "en": "No records yet."},
    "verify.unknown_agent": {"zh": "没有终端 {agent}", "en": "no agent {agent}"},
    "backup.done": {
        "zh": "备份完成：{path}（{size} 字节，{n} 条记录校验无误）",
        "en": "backup made: {path} ({size} bytes, {n} records verified)",
    },
    "backup.removed": {
        "zh": "已删除 {n} 份超过 {days} 天的旧备份",
        "en": "{n} backups older than {days} days deleted",
    },
    "backup.broken": {
        "zh": "备份已保存：{path}，但其中 {bad} 个终端的记录链有问题；旧备份全部保留。"
        "请运行 edge-server verify",
        "en": "backup kept: {path}, but {bad} agents' record chains in it are broken; every "
        "older backup is kept. Run edge-server verify",
    },
    "backup.postgresql": {
        "zh": "PostgreSQL 数据库请用 pg_dump 备份（例如 pg_dump -Fc），"
        "方法见 deploy/README.md 的 “Backups and restore” 一节",
        "en": "a PostgreSQL database is backed up with pg_dump (e.g. pg_dump -Fc): see "
        '"Backups and restore" in deploy/README.md',
    },
    "backup.no_directory": {
        "zh": "未指定备份目录：请用 --to 目录，或在 server.toml 的 [backup] 中设置 directory",
        "en": "no backup directory: give --to DIR or set directory in [backup] of server.toml",
    },
    "backup.unwritable": {
        "zh": "无法写入备份目录 {path}",
        "en": "cannot write to the backup directory {path}",
    },
    "backup.no_database": {
        "zh": "数据库文件 {path} 不存在",
        "en": "the database file {path} does not exist",
    },
    "backup.exists": {
        "zh": "{path} 已存在，未覆盖（请稍后再试）",
        "en": "{path} exists; not overwritten (try again in a second)",
    },
    "backup.corrupt": {
        "zh": "备份副本未通过完整性检查，已删除（详情见日志）",
        "en": "the copy failed SQLite's integrity check and was deleted (details in the log)",
    },
    "backup.failed": {
        "zh": "备份失败，没有留下副本（详情见日志；磁盘满了吗？）",
        "en": "backup failed; no copy left (details in the log; is the disk full?)",
    },
}


def t(key: str, lang: Language) -> str:
    return _TEXTS[key][lang]


def t_or(key: str, fallback: str, lang: Language) -> str:
    """The text for ``key``, or ``fallback`` as it is when there is none (a code from a newer
    agent): never an error for people to read."""
    return _TEXTS[key][lang] if key in _TEXTS else fallback


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


def render(
    texts: dict[str, dict[Language, str]],
    lang: Language,
    key: str,
    fields: dict[str, object],
    named: tuple[str, ...] = (),
) -> str:
    """A domain's text for ``key`` with ``fields``; a field listed in ``named`` whose value has
    a text of its own (``zone`` → ``zone.returned``) is shown as that text."""
    shown = {
        k: texts[f"{k}.{v}"][lang] if k in named and f"{k}.{v}" in texts else v
        for k, v in fields.items()
    }
    return texts[key][lang].format(**shown)
