"""The demo's two console accounts, with passwords everyone knows: made by ``broadcast demo`` only,
never by the service itself."""

from __future__ import annotations

from audiences.areas import AreaTree
from broadcast.core.context import Context
from broadcast.web.console.users import Role, new_user, store_user

DEMO_DISTRICT = "310115000000"  # 浦东新区
DEMO_ACCOUNTS = {
    "demo-officer": (Role.duty_officer, "typhoon-officer-demo", "演示值班员"),
    "demo-approver": (Role.approver, "typhoon-approver-demo", "演示审批人"),
}


def create_demo_accounts(ctx: Context) -> dict[str, str]:
    """(Re)create the demo officer and approver for 浦东新区; returns name → password."""
    tree = AreaTree.current(ctx.redis, ctx.keys)
    for name, (role, password, display) in DEMO_ACCOUNTS.items():
        user = new_user(name, role, password, tree, now=ctx.clock.now(), areas=[DEMO_DISTRICT], display_name=display)
        store_user(ctx.redis, ctx.keys, user, replace=True)
    return {name: password for name, (_, password, _) in DEMO_ACCOUNTS.items()}
