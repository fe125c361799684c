"""Finding areas by name or code for the compose form, within the areas the user answers for."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from audiences.areas import LEVEL_ORDER, AreaLevel, AreaTree
from broadcast.web.base import CTX, error
from broadcast.web.console.access import covers
from broadcast.web.console.principal import principal

MAX_RESULTS = 20
SPACES = " \t\n\r\f\v"  # what q may be padded with (and /openapi.json says so)
OFFICIAL = (AreaLevel.city, AreaLevel.district, AreaLevel.street, AreaLevel.community)


def search(tree: AreaTree, query: str, allowed: Any) -> list[dict[str, Any]]:
    """Areas whose name contains ``query`` or whose code starts with it, larger areas first."""
    by_code = query.isdigit()
    found = [
        area
        for area in tree.areas.values()
        if (area.code.startswith(query) if by_code else query in area.name)
        and (by_code or area.level in OFFICIAL)
        and allowed(area.code)
    ]
    found.sort(key=lambda area: (LEVEL_ORDER.index(area.level), area.code))
    return [
        {
            "code": area.code,
            "name": area.name,
            "level": area.level.value,
            "parents": [parent.name for parent in tree.ancestors(area.code)[1:]],
        }
        for area in found[:MAX_RESULTS]
    ]


async def search_areas(request: web.Request) -> web.Response:
    """GET /api/v1/search/areas?q=: up to 20 areas inside the caller's own."""
    ctx, user = request.app[CTX], principal(request).user
    raw = request.query.get("q", "")
    query = raw.strip(SPACES)
    if not query or len(raw) > 40:
        return error(422, "q must be 1–40 characters: part of a name, or the start of a code", "q")
    tree = await asyncio.to_thread(AreaTree.current, ctx.redis, ctx.keys)
    areas = await asyncio.to_thread(search, tree, query, lambda code: covers(user, code))
    return web.json_response({"areas": areas})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/search/areas", search_areas)
