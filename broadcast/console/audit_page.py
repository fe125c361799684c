"""The audit log in the console: newest first, a page at a time, and the whole of it as CSV."""

from __future__ import annotations

import asyncio

from aiohttp import web

from broadcast.console.access import Permission, require
from broadcast.console.audit_log import AuditReader, as_csv, is_entry_id
from broadcast.console.guard import principal
from broadcast.console.render import console_page
from broadcast.web import CTX

PAGE_SIZE = 100


async def show_audit(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX], principal(request).user
    require(user, Permission.audit)
    before = request.query.get("before") or None
    if before is not None and not is_entry_id(before):
        before = None
    entries = await asyncio.to_thread(AuditReader(ctx.redis, ctx.keys, user).page, PAGE_SIZE, before, None)
    older = entries[-1].id if len(entries) == PAGE_SIZE else None
    return console_page(request, "console/audit.html", entries=entries, older=older)


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
