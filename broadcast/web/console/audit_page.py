"""The audit log in the console: newest first, a page at a time, and the whole of it as CSV."""

from __future__ import annotations

import asyncio

from aiohttp import web

from broadcast.web.base import CTX
from broadcast.web.console.access import Permission, require
from broadcast.web.console.audit_log import AuditReader, as_csv, is_entry_id
from broadcast.web.console.principal import principal
from broadcast.web.console.render import console_page, names_of

PAGE_SIZE = 100
DETAIL_NAMES = {
    "level": "级别 level",
    "event": "类型 event",
    "areas": "区域 areas",
    "exercise": "演练 drill",
    "state": "状态 state",
    "assignee": "指派给 assigned to",
    "note": "备注 note",
    "ordinal": "居民序号 resident",
    "msg_type": "类别 type",
    "references": "针对 about",
}


async def show_audit(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX], principal(request).user
    require(user, Permission.audit)
    before = request.query.get("before") or None
    if before is not None and not is_entry_id(before):
        before = None
    entries = await asyncio.to_thread(AuditReader(ctx.redis, ctx.keys, user).page, PAGE_SIZE, before, None)
    older = entries[-1].id if len(entries) == PAGE_SIZE else None
    codes = [code for entry in entries for code in entry.detail.get("areas", []) if isinstance(code, str)]
    return console_page(
        request,
        "console/audit.html",
        names=await names_of(request, codes),
        entries=entries,
        older=older,
        detail_names=DETAIL_NAMES,
    )


async def export_audit(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX], principal(request).user
    require(user, Permission.audit)
    reader = AuditReader(ctx.redis, ctx.keys, user)
    text = await asyncio.to_thread(lambda: as_csv(reader.entries()))
    stamp = ctx.clock.now().strftime("%Y%m%d-%H%M%S")
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"', "Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/audit", show_audit)
    app.router.add_get("/console/audit.csv", export_audit)
