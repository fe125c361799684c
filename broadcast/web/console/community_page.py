"""The community worker's view: for each live or recent alert in their committees, the committee's
roll-up, and per grid who is still unconfirmed and which volunteers follow up there."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from audiences.areas import AreaLevel, AreaTree
from audiences.volunteers import Volunteer
from broadcast.core.context import Context
from broadcast.core.keys import as_bytes, as_text
from broadcast.core.models import Alert
from broadcast.following.progress import alert_progress
from broadcast.web.base import CTX, REDIS
from broadcast.web.console.access import scoped_progress
from broadcast.web.console.alert_list import all_sent, visible_alerts
from broadcast.web.console.principal import principal
from broadcast.web.console.render import console_page
from broadcast.web.console.users import Role, User
from broadcast.web.pages.display import display

ALERTS_SHOWN = 5
VOLUNTEER_ROLES = {
    "grid_worker": "网格员 grid worker",
    "building_leader": "楼组长 building leader",
    "community_worker": "居委社工 community worker",
    "volunteer": "志愿者 volunteer",
}


def bits_set(raw: bytes, base_byte: int, start: int, end: int) -> int:
    """How many ordinals in [start, end) are set in a bitmap slice that begins at ``base_byte``."""
    return sum(
        1
        for ordinal in range(start, end)
        if ordinal // 8 - base_byte < len(raw) and raw[ordinal // 8 - base_byte] & (0x80 >> (ordinal % 8))
    )


def grid_rows(ctx: Context, tree: AreaTree, alert: Alert, community: str) -> list[dict[str, Any]]:
    """Per grid of the committee: targeted, confirmed, asked for help, and its volunteers."""
    grids = [area for area in tree.children(community) if area.level is AreaLevel.grid]
    if not grids:
        return []
    spans = ctx.redis.hmget(ctx.keys.ranges(alert.id), [g.code for g in grids])
    rows = []
    for grid, span in zip(grids, spans, strict=True):
        start, end = (int(x) for x in as_text(span).split(":")) if span else (0, 0)
        counts = {}
        for state in ("acknowledged", "needs_help"):
            raw = as_bytes(ctx.redis.getrange(ctx.keys.bits(alert.id, state), start // 8, max(start, end - 1) // 8))
            counts[state] = bits_set(raw, start // 8, start, end) if end > start else 0
        ids = sorted(as_text(v) for v in ctx.redis.smembers(ctx.keys.grid_volunteers(grid.code)))
        records = ctx.redis.hmget(ctx.keys.volunteers, ids) if ids else []
        volunteers = [Volunteer.model_validate_json(r) for r in records if r]
        rows.append(
            {
                "code": grid.code,
                "name": grid.name,
                "targeted": end - start,
                "acknowledged": counts["acknowledged"],
                "needs_help": counts["needs_help"],
                "unconfirmed": end - start - counts["acknowledged"],
                "volunteers": [
                    {"name": v.name, "role": VOLUNTEER_ROLES.get(v.role.name, v.role.value), "phone": v.phone}
                    for v in volunteers
                ],
            }
        )
    return rows


async def community_view(request: web.Request, user: User) -> list[dict[str, Any]]:
    ctx = request.app[CTX]
    tree = await asyncio.to_thread(AreaTree.current, ctx.redis, ctx.keys)
    shown = (await asyncio.to_thread(visible_alerts, ctx.redis, ctx.keys, user))[:ALERTS_SHOWN]
    sent = await asyncio.to_thread(all_sent, ctx.redis, ctx.keys, shown)
    show, now = display(ctx.settings), ctx.clock.now()
    cards = []
    for alert in shown:
        progress = scoped_progress(user, await alert_progress(request.app[REDIS], ctx.keys, alert))
        committees = [
            {**row, "grids": await asyncio.to_thread(grid_rows, ctx, tree, alert, row["code"])}
            for row in progress["areas"]["community"]
        ]
        cards.append(
            {"alert": alert, "committees": committees, "phase": show.phase(alert, now, sent.get(alert.id, False))}
        )
    return cards


async def show_community(request: web.Request) -> web.Response:
    user = principal(request).user
    if user.role is not Role.community_worker:
        raise web.HTTPSeeOther("/console")
    return console_page(request, "console/community.html", cards=await community_view(request, user))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/community", show_community)
