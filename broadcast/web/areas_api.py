"""The audiences' API: areas with their census, and target preview."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import ConfigDict, Field

from audiences.areas import AreaTree
from audiences.census import area_report
from audiences.preview import preview
from audiences.residents import PERSONAL_CHANNELS
from audiences.targeting import TargetError
from broadcast.core.models import ChannelKind, Level, Target
from broadcast.web.base import CTX, error, read_model
from broadcast.web.console.access import Permission, covers, require, require_areas
from broadcast.web.console.principal import principal


class PreviewRequest(Target):
    """A target, and optionally the channels and level of the alert it is for."""

    model_config = ConfigDict(extra="forbid")

    channels: list[ChannelKind] = Field(default_factory=lambda: list(PERSONAL_CHANNELS), min_length=1)
    level: Level | None = None


async def area_stats(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    tree = await asyncio.to_thread(AreaTree.current, ctx.redis, ctx.keys)
    return web.json_response(tree.stats())


async def get_area(request: web.Request) -> web.Response:
    """An area's census, for areas inside the caller's own (a committee's people are its own business)."""
    ctx, user = request.app[CTX], principal(request).user
    code = request.match_info["code"]
    tree = await asyncio.to_thread(AreaTree.current, ctx.redis, ctx.keys)
    if code not in tree:
        return error(404, f"unknown area code {code}", "code")
    if not covers(user, code):
        return error(403, f"area {code} is outside your areas", "code")
    return web.json_response(await asyncio.to_thread(area_report, ctx.redis, ctx.keys, tree, code))


async def preview_target(request: web.Request) -> web.Response:
    """Who a target reaches: for those who may compose or approve, inside their own areas."""
    ctx, user = request.app[CTX], principal(request).user
    require(user, Permission.preview)
    body: PreviewRequest = await read_model(request, PreviewRequest)
    require_areas(user, body.areas, "areas")
    tree = await asyncio.to_thread(AreaTree.current, ctx.redis, ctx.keys)
    target = Target(areas=body.areas, groups=body.groups, exclude=body.exclude)
    try:
        counts = await asyncio.to_thread(
            preview, ctx.redis, ctx.keys, tree, target, body.channels, body.level, ctx.settings.opt_out_override_levels
        )
    except TargetError as exc:
        return error(422, str(exc), exc.field)
    return web.json_response(counts)


def add_routes(app: web.Application) -> None:
    """Mount the audiences' routes."""
    app.router.add_get("/api/v1/areas", area_stats)
    app.router.add_get("/api/v1/areas/{code}", get_area)
    app.router.add_post("/api/v1/targets/preview", preview_target)
