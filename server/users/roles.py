"""Roles and what each may do: pure, so that every check on the dashboard and the API asks the
same table."""

from __future__ import annotations

from enum import StrEnum

#: The scope of someone who sees the whole service (the city, or the county where it is the top).
EVERYWHERE = "*"


class Role(StrEnum):
    #: 保管员: the storerooms' climate record, their alarms, the station's stock movements.
    KEEPER = "keeper"
    #: 技术员: the boxes: restocking, their faults and alarms.
    TECHNICIAN = "technician"
    #: 管理员: everything within the scope, the card registry and people included.
    ADMIN = "admin"
    #: 查看: reads everything within the scope, changes nothing.
    VIEWER = "viewer"


class Permission(StrEnum):
    VIEW = "view"
    ALERTS_ACK = "alerts.ack"
    ALERTS_SILENCE = "alerts.silence"
    STOCK_MOVE = "stock.move"
    RESTOCK_APPROVE = "restock.approve"
    CARDS_ADMIN = "cards.admin"
    USERS_ADMIN = "users.admin"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.KEEPER: frozenset(
        {Permission.VIEW, Permission.ALERTS_ACK, Permission.ALERTS_SILENCE, Permission.STOCK_MOVE}
    ),
    Role.TECHNICIAN: frozenset(
        {Permission.VIEW, Permission.ALERTS_ACK, Permission.RESTOCK_APPROVE}
    ),
    Role.ADMIN: frozenset(Permission),
}


def can(role: Role | str, permission: Permission) -> bool:
    try:
        return permission in GRANTS[Role(role)]
    except ValueError:
        return False
