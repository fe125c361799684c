"""What each role may do, and where: permissions by role, and areas by the user's scope.

An area code is a prefix of every code below it once its trailing zero groups are dropped
(district 310115, street 310115005, committee 310115005001, grid and building codes as they are),
so "is this area inside the user's areas" is a prefix test, with no tree walk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

from broadcast.core.models import Alert
from broadcast.web.console.users import Role, User


class Permission(str, Enum):
    compose = "compose"  # compose, issue, update and run drills
    approve = "approve"
    cancel = "cancel"
    view_alerts = "view_alerts"
    preview = "preview"
    audit = "audit"
    manage_users = "manage_users"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.duty_officer: frozenset(
        {Permission.compose, Permission.cancel, Permission.view_alerts, Permission.preview, Permission.audit}
    ),
    # Whoever may approve a warning may also stop one.
    Role.approver: frozenset(
        {Permission.approve, Permission.cancel, Permission.view_alerts, Permission.preview, Permission.audit}
    ),
    Role.community_worker: frozenset({Permission.view_alerts}),
    Role.volunteer: frozenset(),
    Role.admin: frozenset({Permission.manage_users, Permission.view_alerts, Permission.audit}),
}


class Forbidden(Exception):
    """The signed-in user may not do this; nothing was changed."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def may(user: User, permission: Permission) -> bool:
    return permission in GRANTS[user.role]


def require(user: User, permission: Permission) -> None:
    """Raise Forbidden unless the user's role grants ``permission``."""
    if not may(user, permission):
        raise Forbidden(f"a {user.role.value} may not {permission.value.replace('_', ' ')}")


def area_prefix(code: str) -> str:
    """The digits every area inside ``code`` starts with."""
    if len(code) != 12:
        return code
    if code[2:] == "0" * 10:
        return code[:2]
    if code[4:] == "0" * 8:
        return code[:4]
    if code[6:] == "0" * 6:
        return code[:6]
    if code[9:] == "000":
        return code[:9]
    return code


def city_wide(user: User) -> bool:
    """Admins read everything (they act on no alert)."""
    return user.role is Role.admin


def covers(user: User, code: str) -> bool:
    """True when ``code`` lies inside one of the user's areas."""
    return city_wide(user) or any(code.startswith(area_prefix(scope)) for scope in user.areas)


def touches(user: User, codes: Iterable[str]) -> bool:
    """True when any of ``codes`` lies inside the user's areas or contains one of them."""
    if city_wide(user):
        return True
    return any(covers(user, code) or any(scope.startswith(area_prefix(code)) for scope in user.areas) for code in codes)


def outside(user: User, codes: Sequence[str]) -> list[str]:
    """The codes that are not inside the user's areas."""
    return [code for code in codes if not covers(user, code)]


def require_areas(user: User, codes: Sequence[str], field: str = "target.areas") -> None:
    """Raise Forbidden naming the areas outside the user's own."""
    beyond = outside(user, codes)
    if beyond:
        mine = ", ".join(user.areas) or "none"
        raise Forbidden(f"area(s) {', '.join(beyond)} are outside your areas ({mine})", field)


def require_referenced(user: User, alert: Alert) -> None:
    """An update or cancel may name only an alert wholly inside the user's areas (its areas unsaid)."""
    if outside(user, alert.target.areas):
        raise Forbidden(f"alert {alert.id} is outside your areas", "references")


def can_see(user: User, alert: Alert) -> bool:
    return may(user, Permission.view_alerts) and touches(user, alert.target.areas)


def require_alert(user: User, alert: Alert, permission: Permission) -> None:
    """Acting on an alert needs the permission and every one of its areas inside the user's own."""
    require(user, permission)
    require_areas(user, alert.target.areas, "id")


def scoped_rows(user: User, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a per-area table the user may see: areas inside theirs, or containing them."""
    if city_wide(user):
        return rows
    return [row for row in rows if touches(user, [row["code"]])]


def scoped_progress(user: User, progress: dict[str, Any]) -> dict[str, Any]:
    """A progress document with its area tables cut to the user's areas (totals stay the alert's)."""
    areas = {level: scoped_rows(user, rows) for level, rows in progress["areas"].items()}
    if not city_wide(user) and "community" in areas:
        # A community worker sees their committees, not their neighbours'.
        areas["community"] = [row for row in areas["community"] if covers(user, row["code"])]
    return {**progress, "areas": areas}
