"""Composing in the console: the form (with a live preview and counts by script), the review that
states how many people the warning reaches, and the confirmed submission.

The confirmation carries an idempotency key made when the review is shown, so a double click or a
resubmitted page gives one alert, never two.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from audiences.areas import AreaTree
from audiences.groups import custom_groups
from broadcast import alerts
from broadcast.console.access import Forbidden, Permission, can_see, require, require_areas, require_referenced
from broadcast.console.actions import compose_as
from broadcast.console.briefing import messages, reach
from broadcast.console.compose_form import (
    CHANNEL_NAMES,
    LANGUAGE_NAMES,
    catalogue_view,
    draft_data,
    form_values,
    groups_view,
)
from broadcast.console.guard import principal
from broadcast.console.render import console_page, message_page
from broadcast.models import AlertDraft, MessageType
from broadcast.web import CTX

LEVEL_NAMES = {"blue": "蓝色 blue", "yellow": "黄色 yellow", "orange": "橙色 orange", "red": "红色 red"}


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, message) for each thing wrong with a submitted draft."""
    return [(".".join(str(p) for p in e["loc"]) or "form", e["msg"]) for e in exc.errors()]


async def compose_form(
    request: web.Request, data: dict[str, Any] | None, problems: list[tuple[str, str]], status: int = 200
) -> web.Response:
    ctx, user = request.app[CTX], principal(request).user
    tree = await asyncio.to_thread(AreaTree.current, ctx.redis, ctx.keys)
    custom = await asyncio.to_thread(custom_groups, ctx.redis, ctx.keys)
    values = form_values(data)
    return console_page(
        request,
        "console/compose.html",
        status=status,
        events=catalogue_view(ctx.settings),
        levels=LEVEL_NAMES,
        groups=groups_view({name: group.title for name, group in custom.items()}),
        channels=CHANNEL_NAMES,
        languages=LANGUAGE_NAMES,
        values=values,
        chosen=[(code, tree.areas[code].name if code in tree else code) for code in values["areas"]],
        roots=[(code, tree.areas[code].name if code in tree else code) for code in user.areas],
        problems=problems,
    )


async def show_compose(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX], principal(request).user
    require(user, Permission.compose)
    data: dict[str, Any] | None = None
    update = request.query.get("update", "")
    if update:
        alert = await asyncio.to_thread(alerts.get_alert, ctx, update) if update.isdigit() else None
        if alert is None or not can_see(user, alert):
            return message_page(request, 404, f"没有这条预警 No alert with id {update}")
        data = alert.model_dump(mode="json")
        data.update({"msg_type": MessageType.update.value, "references": alert.id})
    elif request.query.get("drill"):
        data = {"exercise": True}
    return await compose_form(request, data, [])


async def review(request: web.Request) -> web.Response:
    """The confirmation: the warning as residents will read it, and how many people it reaches."""
    ctx, found = request.app[CTX], principal(request)
    require(found.user, Permission.compose)
    data = draft_data(await request.post(), found.user.name)
    try:
        draft = AlertDraft.model_validate(data)
        require_areas(found.user, draft.target.areas)
        referenced = await asyncio.to_thread(alerts.check_draft, ctx, draft)
        if referenced is not None:
            require_referenced(found.user, referenced)
        texts = await messages(request, draft)
    except ValidationError as exc:
        return await compose_form(request, data, problems_of(exc), 422)
    except (alerts.AlertError, Forbidden) as exc:
        return await compose_form(request, data, [(exc.field or "form", exc.message)], 422)
    counts = await asyncio.to_thread(reach, ctx, draft)
    pending = alerts.needs_approval(ctx, draft, referenced)
    return console_page(
        request,
        "console/confirm.html",
        heading="确认 Confirm",
        action="/console/alerts",
        draft=draft,
        draft_json=draft.model_dump_json(),
        request_id=secrets.token_hex(12),
        reached=counts["targeted"],
        reach=counts,
        texts=texts["messages"],
        channel_names=CHANNEL_NAMES,
        needs_approval=pending,
        button=("提交审批 Submit for approval" if pending else "立即签发 Issue now")
        if draft.msg_type is not MessageType.cancel
        else "发送解除 Send the cancellation",
        what={"alert": "新预警 New warning", "update": "更新 Update", "cancel": "解除 Cancel"}[draft.msg_type.value],
    )


async def submit(request: web.Request) -> web.Response:
    """The confirmed draft, composed (and issued when it needs no approval)."""
    ctx, found = request.app[CTX], principal(request)
    form = await request.post()
    try:
        data = json.loads(str(form.get("draft", "")))
        draft = AlertDraft.model_validate(
            {**data, "composed_by": found.user.name, "request_id": str(form.get("request_id", ""))}
        )
        alert = await asyncio.to_thread(compose_as, ctx, found.user, draft, found.origin)
    except (ValueError, ValidationError):
        return message_page(request, 422, "确认表单已损坏，请重新拟稿。The confirmation was damaged; compose again.")
    except alerts.AlertError as exc:
        return message_page(request, exc.status, exc.message)
    raise web.HTTPSeeOther(f"/console/alerts/{alert.id}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/compose", show_compose)
    app.router.add_post("/console/compose", review)
    app.router.add_post("/console/alerts", submit)
