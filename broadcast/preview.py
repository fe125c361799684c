"""The preview a duty officer sees before issuing: every channel's message in every language the
alert uses, with what it costs (SMS parts, push bytes, screen pages). Nothing is stored.

``POST /api/v1/alerts/preview`` takes the same body as ``POST /api/v1/alerts``; the area facts
(committee name, shelter, hotline) are those of the first committee the target covers.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from aiohttp import web

from audiences.areas import AreaLevel, AreaTree
from broadcast import alerts
from broadcast.compose import AreaFacts, change_of, draft_problems, level_problem, render_problems, worded_level
from broadcast.context import Context
from broadcast.deliver import area_facts
from broadcast.models import AlertDraft, ChannelKind
from broadcast.settings import Settings
from broadcast.shapes import Rendered, push_bytes
from broadcast.web import CTX, REDIS, read_model

PREVIEW_PATH = "/api/v1/alerts/preview"


def rendered_json(channel: ChannelKind, rendered: Rendered) -> dict[str, Any]:
    """One channel's message as JSON: its text and the fields that channel adds."""
    if channel is ChannelKind.sms:
        return {
            "text": rendered.text,
            "segments": rendered.parts,
            "encoding": rendered.encoding,
            "characters": len(rendered.text),
        }
    if channel is ChannelKind.push:
        size = push_bytes(rendered.extra["title"], rendered.text, rendered.extra["data"])
        return {"title": rendered.extra["title"], "text": rendered.text, "data": rendered.extra["data"], "bytes": size}
    return {"text": rendered.text, **rendered.extra}


def preview(
    draft: AlertDraft,
    settings: Settings,
    area: AreaFacts,
    referenced: AlertDraft | None,
    issued_at: datetime,
) -> dict[str, Any]:
    """Every channel's message for ``draft``; an AlertError (422) naming each problem otherwise."""
    problems = draft_problems(draft, settings)
    if problems:
        raise alerts.AlertError("; ".join(problems), status=422, field="params")
    messages: dict[str, dict[str, Any]] = {}
    for channel in ChannelKind:
        for language in draft.languages:
            rendered, problems = render_problems(draft, language, channel, settings, referenced, area, issued_at)
            if rendered is None or problems:
                raise alerts.AlertError("; ".join(problems), status=422, field="params")
            messages.setdefault(channel.value, {})[language.value] = rendered_json(channel, rendered)
    level = worded_level(draft, referenced)
    return {
        "event": draft.event.value,
        "level": level.value,
        "severity": level.cap_severity,
        "msg_type": draft.msg_type.value,
        "change": change_of(draft, referenced).value,
        "exercise": draft.exercise,
        "area": asdict(area),
        "messages": messages,
        "cost": {"sms_segments": {lang: sms["segments"] for lang, sms in messages[ChannelKind.sms.value].items()}},
    }


def first_committee(tree: AreaTree, code: str) -> str | None:
    """The committee whose facts a preview shows: the first under ``code``, or the one containing it."""
    area = tree.get(code)
    if area.level in (AreaLevel.grid, AreaLevel.building):
        committee = tree.at_level(code, AreaLevel.community)
        return committee.code if committee else None
    return next((a.code for a in tree.descendants(code, AreaLevel.community)), None)


def _checked_committee(ctx: Context, draft: AlertDraft) -> str | None:
    """Check the target and level as issuing would; the committee whose facts to show."""
    tree = AreaTree.load(ctx.redis, ctx.keys)
    unknown = tree.unknown([*draft.target.areas, *draft.target.exclude])
    if unknown:
        raise alerts.AlertError(f"unknown area code(s): {', '.join(unknown)}", status=422, field="target.areas")
    problem = level_problem(draft, ctx.settings)
    if problem:
        raise alerts.AlertError(problem, status=422, field="level")
    return first_committee(tree, draft.target.areas[0])


async def preview_alert(request: web.Request) -> web.Response:
    """POST /api/v1/alerts/preview: the officer's draft, rendered for every channel and language.

    The caller may preview only what they could compose: areas inside their own, and an update or
    cancel of an alert they may change; otherwise the referenced alert's words would show."""
    from broadcast.console.access import Permission, require, require_areas, require_referenced
    from broadcast.console.alerts_api import draft_of
    from broadcast.console.guard import principal
    from broadcast.console.schemas import AlertRequest

    ctx, found = request.app[CTX], principal(request)
    require(found.user, Permission.preview)
    draft = draft_of(await read_model(request, AlertRequest), found)
    require_areas(found.user, draft.target.areas)
    committee = await asyncio.to_thread(_checked_committee, ctx, draft)
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
