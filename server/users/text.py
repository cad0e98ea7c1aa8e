"""What people read about accounts and logins, in Simplified Chinese (default) and English."""

from __future__ import annotations

from server.i18n import Language, render

TEXTS: dict[str, dict[Language, str]] = {
    "role.keeper": {"zh": "保管员", "en": "keeper"},
    "role.technician": {"zh": "技术员", "en": "technician"},
    "role.admin": {"zh": "管理员", "en": "administrator"},
    "role.viewer": {"zh": "查看者", "en": "viewer"},
    "scope.*": {"zh": "全部", "en": "everywhere"},
    "user.bad_name": {
        "zh": "用户名“{name}”不可用：小写字母开头，2–64 个小写字母、数字或 . _ -",
        "en": "user name {name!r} is not usable: 2–64 lower-case letters, digits, . _ -, "
        "starting with a letter",
    },
    "user.short_password": {
        "zh": "密码太短：至少 {n} 个字符",
        "en": "the password is too short: at least {n} characters",
    },
    "user.bad_role": {
        "zh": "没有“{role}”这个角色：keeper、technician、admin 或 viewer",
        "en": "no role {role!r}: keeper, technician, admin or viewer",
    },
    "user.unknown_scope": {
        "zh": "没有站点“{scope}”（先用 edge-server site add 建立，或用 * 表示全部）",
        "en": "no site {scope!r} (enter it with edge-server site add, or use * for everywhere)",
    },
    "user.exists": {"zh": "用户“{name}”已存在", "en": "user {name!r} exists already"},
    "user.unknown": {"zh": "没有用户“{name}”", "en": "no user {name!r}"},
    "user.added": {
        "zh": "已添加用户 {name}（{role}，范围 {scope}）",
        "en": "user {name} added ({role}, scope {scope})",
    },
    "user.password_set": {
        "zh": "已为 {name} 设置新密码，其登录会话已全部结束",
        "en": "new password set for {name}; their sessions have ended",
    },
    "user.disabled": {"zh": "已停用 {name}", "en": "{name} disabled"},
    "user.enabled": {"zh": "已启用 {name}", "en": "{name} enabled"},
    "user.none": {"zh": "还没有用户。", "en": "No users yet."},
    "token.made": {
        "zh": "API 令牌（只显示这一次，请妥善保存）：",
        "en": "API token (shown this once; keep it safe):",
    },
    "token.revoked": {"zh": "已吊销 {n} 个令牌", "en": "{n} tokens revoked"},
    "password.prompt": {"zh": "密码", "en": "Password"},
    "password.again": {"zh": "再输一次", "en": "Again"},
    "password.mismatch": {"zh": "两次输入不一致", "en": "the two entries differ"},
    "password.empty_stdin": {
        "zh": "标准输入中没有密码",
        "en": "no password on standard input",
    },
    "login.refused": {"zh": "用户名或密码不对", "en": "wrong user name or password"},
    "login.locked": {
        "zh": "登录失败次数过多，请 {minutes} 分钟后再试",
        "en": "too many failed logins; try again in {minutes} minutes",
    },
    "db.failed": {
        "zh": "数据库出错，操作未完成（详见服务器日志）",
        "en": "database error; nothing was done (see the server's log)",
    },
    "col.name": {"zh": "用户名", "en": "name"},
    "col.display": {"zh": "姓名", "en": "shown as"},
    "col.role": {"zh": "角色", "en": "role"},
    "col.scope": {"zh": "范围", "en": "scope"},
    "col.state": {"zh": "状态", "en": "state"},
    "state.active": {"zh": "启用", "en": "active"},
    "state.disabled": {"zh": "停用", "en": "disabled"},
}


def say(lang: Language, key: str, /, **fields: object) -> str:
    return render(TEXTS, lang, key, fields, named=("role",))
