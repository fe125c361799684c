"""One alert in the console: what it says, who acted on it, its live progress, and the actions the
user may take (approve, update, cancel), each behind a confirmation that says how many people it
reaches."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from broadcast import alerts
from broadcast.console.access import Permission, can_see, may, outside
from broadcast.console.actions import LIVE, approve_as, cancel_as
from broadcast.console.alert_list import recent_alerts
from broadcast.console.audit_log import AuditReader
from broadcast.console.briefing import messages, reach, roster_reach
from broadcast.console.guard import principal
from broadcast.console.progress_stream import snapshot
from broadcast.console.render import console_page, message_page
from broadcast.console.users import User
from broadcast.deliver import load_alert_async
from broadcast.models import Alert, AlertStatus
from broadcast.web import CTX, REDIS

STATUS_NAMES = {
    "pending_approval": "待审批 waiting for approval",
    "issued": "已签发 issued",
    "sending": "发送中 sending",
    "cancelled": "已取消 cancelled",
    "superseded": "已更新 superseded",
    "expired": "已过期 expired",
}


def allowed_actions(user: User, alert: Alert) -> dict[str, bool]:
    """Which buttons the user gets on this alert."""
    inside = not outside(user, alert.target.areas)
    pending = alert.status is AlertStatus.pending_approval
    return {
        "approve": inside and pending and may(user, Permission.approve) and alert.composed_by != user.name,
        "own_alert": pending and alert.composed_by == user.name,
        "update": inside and alert.status in LIVE and may(user, Permission.compose),
        "cancel": inside and (pending or alert.status in LIVE) and may(user, Permission.cancel),
    }


async def load_visible(request: web.Request) -> Alert | web.Response:
    ctx, user = request.app[CTX], principal(request).user
    alert_id = request.match_info["id"]
    alert = await load_alert_async(request.app[REDIS], ctx.keys, alert_id) if alert_id.isdigit() else None
    if alert is None:
        return message_page(request, 404, f"没有这条预警 No alert with id {alert_id}")
    if not can_see(user, alert):
        return message_page(request, 403, f"预警 {alert_id} 不在您的辖区 Alert {alert_id} is outside your areas")
    return alert


def related(client: Any, keys: Any, alert: Alert) -> list[Alert]:
    """Updates and cancellations that reference this alert."""
    return [other for other in recent_alerts(client, keys) if other.references == alert.id]


async def show_alert(request: web.Request) -> web.Response:
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    alert, user, ctx = found, principal(request).user, request.app[CTX]
    progress = await snapshot(request, alert, user)
    trail = await asyncio.to_thread(AuditReader(ctx.redis, ctx.keys, user).page, 50, None, alert.id)
    texts = await messages(request, alert)
    return console_page(
        request,
        "console/alert.html",
        alert=alert,
        status_name=STATUS_NAMES[alert.status.value],
        texts=texts["messages"],
        progress=progress,
        trail=trail,
        actions=allowed_actions(user, alert),
        related=await asyncio.to_thread(related, ctx.redis, ctx.keys, alert),
        referenced=alert.references,
    )


async def confirm_approve(request: web.Request) -> web.Response:
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    ctx, user = request.app[CTX], principal(request).user
    if not allowed_actions(user, found)["approve"]:
        return message_page(request, 403, "您不能审批这条预警 You cannot approve this alert")
    counts = await asyncio.to_thread(reach, ctx, found)
    return console_page(
        request,
        "console/act.html",
        alert=found,
        heading=f"审批并签发 Approve and issue #{found.id}",
        reached=counts["targeted"],
        explanation=(
            f"由 {found.composed_by} 拟稿。批准后立即发出。Composed by {found.composed_by}; approving issues it now."
        ),
        button="批准并签发 Approve and issue",
        action=f"/console/alerts/{found.id}/approve",
        danger=found.level.value == "red",
    )


async def approve(request: web.Request) -> web.Response:
    ctx, found = request.app[CTX], principal(request)
    try:
        alert = await asyncio.to_thread(approve_as, ctx, found.user, request.match_info["id"], found.origin)
    except alerts.AlertError as exc:
        return message_page(request, exc.status, exc.message)
    raise web.HTTPSeeOther(f"/console/alerts/{alert.id}")


async def confirm_cancel(request: web.Request) -> web.Response:
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    if not allowed_actions(principal(request).user, found)["cancel"]:
        return message_page(request, 403, "您不能取消这条预警 You cannot cancel this alert")
    live = found.status in LIVE
    reached = roster_reach(found) if live else 0
    explanation = (
        f"向已收到预警的 {reached:,} 人发送解除通知，并停止尚未发出的消息。"
        f"Tells the {reached:,} people it was sent to that it is lifted, and stops messages not yet sent."
        if live
        else "这条预警尚未发出，撤回后不会通知任何人。It has not been sent; withdrawing it tells nobody."
    )
    return console_page(
        request,
        "console/act.html",
        alert=found,
        heading=(f"解除预警 Cancel warning #{found.id}" if live else f"撤回 Withdraw #{found.id}"),
        reached=reached,
        explanation=explanation,
        button="确认解除 Cancel the warning" if live else "确认撤回 Withdraw",
        action=f"/console/alerts/{found.id}/cancel",
        danger=True,
    )


async def cancel(request: web.Request) -> web.Response:
    ctx, found = request.app[CTX], principal(request)
    alert_id = request.match_info["id"]
    try:
        current = await asyncio.to_thread(alerts.get_alert, ctx, alert_id)
        await asyncio.to_thread(cancel_as, ctx, found.user, alert_id, found.origin, notify=current.status in LIVE)
    except alerts.AlertError as exc:
        return message_page(request, exc.status, exc.message)
    raise web.HTTPSeeOther(f"/console/alerts/{alert_id}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/alerts/{id}", show_alert)
    app.router.add_get("/console/alerts/{id}/approve", confirm_approve)
    app.router.add_post("/console/alerts/{id}/approve", approve)
    app.router.add_get("/console/alerts/{id}/cancel", confirm_cancel)
    app.router.add_post("/console/alerts/{id}/cancel", cancel)
