"""Composing in the console: the form (with a live preview and counts by script), the review that
states how many people the warning reaches, and the confirmed submission.

The confirmation carries an idempotency key made when the review is shown, so a double click or a
resubmitted page gives one alert, never two.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from audiences.areas import AreaTree
from audiences.groups import custom_groups
from broadcast.core.models import AlertDraft, MessageType
from broadcast.issuing import alerts
from broadcast.web.base import CTX
from broadcast.web.console.access import Forbidden, Permission, can_see, require, require_areas, require_referenced
from broadcast.web.console.actions import compose_as
from broadcast.web.console.briefing import brief, messages, reach, validity
from broadcast.web.console.compose_form import (
    CHANNEL_NAMES,
    LANGUAGE_NAMES,
    catalogue_view,
    draft_data,
    form_values,
    groups_view,
)
from broadcast.web.console.principal import principal
from broadcast.web.console.render import console_page, message_page
from broadcast.web.pages.display import display

LEVEL_NAMES = {"blue": "蓝色 blue", "yellow": "黄色 yellow", "orange": "橙色 orange", "red": "红色 red"}


# Where each problem is shown: the form control a field's error sits beside.
FIELD_OF = {
    "event": "event",
    "level": "level",
    "target": "areas",
    "target.areas": "areas",
    "target.groups": "groups",
    "target.exclude": "areas",
    "channels": "channels",
    "languages": "languages",
    "valid_minutes": "valid_minutes",
    "references": "form",
    "id": "form",
}
SAID_IN_CHINESE = {
    "event": "请选择预警类型",
    "level": "请选择这个预警类型有的级别",
    "areas": "请至少选择一个有效区域",
    "groups": "人群不存在",
    "channels": "请至少勾选一个渠道",
    "languages": "请至少勾选一种语言",
    "valid_minutes": "有效时间应为 5 至 10080 分钟",
}
_PARAM = re.compile(r"parameter (\w+)")


def _param_problem(message: str) -> tuple[str, str]:
    """(form field, Chinese words) for one parameter problem of the catalogue."""
    found = _PARAM.search(message)
    if found is None or "takes no parameter" in message:
        return "form", "参数有误"
    key = found.group(1)
    if "needs parameter" in message:
        words = "必填"
    elif "characters long" in message:
        words = "太长，消息放不下"
    elif "control characters" in message:
        words = "不能换行或含控制字符"
    else:
        words = "格式不对"
    return f"param:{key}", words


def problems_of(exc: ValidationError | alerts.AlertError | Forbidden) -> list[tuple[str, str]]:
    """(form field, Chinese and English message) for each thing wrong with a submitted draft."""
    if isinstance(exc, ValidationError):
        out = []
        for error in exc.errors():
            loc = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
            field = FIELD_OF.get(loc, FIELD_OF.get(loc.split(".")[0], "form"))
            out.append((field, f"{SAID_IN_CHINESE.get(field, '有误')} · {loc or 'form'}: {error['msg']}"))
        return out
    if isinstance(exc, alerts.AlertError) and exc.field == "params":
        return [
            (field, f"{words} · {message}")
            for message in exc.message.split("; ")
            for field, words in [_param_problem(message)]
        ]
    field = FIELD_OF.get(exc.field or "form", "form")
    return [(field, f"{SAID_IN_CHINESE.get(field, '无法提交')} · {exc.message}")]


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
        group_titles={name: group.title for name, group in custom.items()},
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
    except (ValidationError, alerts.AlertError, Forbidden) as exc:
        return await compose_form(request, data, problems_of(exc), 422)
    counts = await asyncio.to_thread(reach, ctx, draft)
    pending = alerts.needs_approval(ctx, draft, referenced)
    facts = await asyncio.to_thread(brief, ctx, draft, counts)
    return console_page(
        request,
        "console/confirm.html",
        heading="确认 Confirm",
        action="/console/alerts",
        draft=draft,
        draft_json=draft.model_dump_json(),
        request_id=secrets.token_hex(12),
        reached=counts["targeted"],
        facts=facts,
        texts=texts["messages"],
        until=validity(draft, display(ctx.settings)),
        needs_approval=pending,
        button=("提交审批 Submit for approval" if pending else "立即签发 Issue now")
        if draft.msg_type is not MessageType.cancel
        else "发送解除 Send the cancellation",
        what={"alert": "新预警 New warning", "update": "更新 Update", "cancel": "解除 Cancel"}[draft.msg_type.value],
    )


async def back_to_form(request: web.Request) -> web.Response:
    """Back from the review to the form, with everything the officer filled in still there."""
    found = principal(request)
    require(found.user, Permission.compose)
    form = await request.post()
    try:
        data = json.loads(str(form.get("draft", "")))
    except ValueError:
        data = None
    return await compose_form(request, data if isinstance(data, dict) else None, [])


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
    app.router.add_post("/console/compose/back", back_to_form)
    app.router.add_post("/console/alerts", submit)
