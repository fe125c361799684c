"""The admin's page of accounts: who may sign in, as what, for which areas; disable or enable one.
Accounts are created with ``broadcast users add`` (passwords are never typed into a web form)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from broadcast.issuing.alerts import audit
from broadcast.web.base import CTX
from broadcast.web.console.access import Permission, require
from broadcast.web.console.principal import principal
from broadcast.web.console.render import console_page, message_page, names_of
from broadcast.web.console.users import list_users, load_user, store_user, with_disabled


async def show_users(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX], principal(request).user
    require(user, Permission.manage_users)
    users = await asyncio.to_thread(list_users, ctx.redis, ctx.keys)
    names = await names_of(request, [code for account in users for code in account.areas])
    return console_page(request, "console/users.html", names=names, users=users)


async def set_disabled(request: web.Request) -> web.Response:
    ctx, found = request.app[CTX], principal(request)
    require(found.user, Permission.manage_users)
    name = request.match_info["name"]
    disable = (await request.post()).get("disabled") == "1"
    if name == found.user.name and disable:
        return message_page(request, 409, "不能停用自己的账号 You cannot disable your own account")
    target = await asyncio.to_thread(load_user, ctx.redis, ctx.keys, name)
    if target is None:
        return message_page(request, 404, f"没有用户 {name} No user named {name}")
    changed = with_disabled(target, disable)
    await asyncio.to_thread(store_user, ctx.redis, ctx.keys, changed, replace=True)
    action = "user_disable" if disable else "user_enable"
    await asyncio.to_thread(audit, ctx, found.user.name, action, origin=found.origin, user=name)
    raise web.HTTPSeeOther("/console/users")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/users", show_users)
    app.router.add_post("/console/users/{name}/disabled", set_disabled)
