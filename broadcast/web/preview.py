"""``POST /api/v1/alerts/preview``: the officer's draft, rendered for every channel and language
(``broadcast.composing.preview``), for a caller who could compose it. It takes the same body as
``POST /api/v1/alerts``. Nothing is stored."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from broadcast.composing.compose import AreaFacts
from broadcast.composing.facts import area_facts
from broadcast.composing.preview import checked_committee, preview
from broadcast.issuing import alerts
from broadcast.web.base import CTX, REDIS, read_model
from broadcast.web.console.access import Permission, require, require_areas, require_referenced
from broadcast.web.console.alerts_api import draft_of
from broadcast.web.console.principal import principal
from broadcast.web.console.schemas import AlertRequest

PREVIEW_PATH = "/api/v1/alerts/preview"


async def preview_alert(request: web.Request) -> web.Response:
    """POST /api/v1/alerts/preview: the officer's draft, rendered for every channel and language.

    The caller may preview only what they could compose: areas inside their own, and an update or
    cancel of an alert they may change; otherwise the referenced alert's words would show."""
    ctx, found = request.app[CTX], principal(request)
    require(found.user, Permission.preview)
    draft = draft_of(await read_model(request, AlertRequest), found)
    require_areas(found.user, draft.target.areas)
    committee = await asyncio.to_thread(checked_committee, ctx, draft)
    referenced = await asyncio.to_thread(alerts.referenced_alert, ctx, draft)
    if referenced is not None:
        require_referenced(found.user, referenced)
    facts = AreaFacts(hotline=ctx.settings.hotline)
    if committee:
        facts = (await area_facts(request.app[REDIS], ctx.keys, [committee], ctx.settings.hotline))[committee]
    body = preview(draft, ctx.settings, facts, referenced, ctx.clock.now())
    return web.json_response(body, dumps=lambda value: json.dumps(value, ensure_ascii=False))


def add_routes(app: web.Application) -> None:
    """Mount the preview route."""
    app.router.add_post(PREVIEW_PATH, preview_alert)
