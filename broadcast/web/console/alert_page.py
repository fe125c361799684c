"""One alert in the console: what it says, who acted on it, its live progress, and the actions the
user may take (approve, update, cancel), each behind a confirmation that says how many people it
reaches."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from broadcast.core.models import Alert, AlertDraft, AlertStatus, MessageType
from broadcast.delivering.ledger import roster_index
from broadcast.following.progress import alert_progress, confirmation_curve
from broadcast.issuing import alerts
from broadcast.issuing.alerts import load_alert_async
from broadcast.web.base import CTX, REDIS
from broadcast.web.console.access import Forbidden, Permission, can_see, may, outside, scoped_progress
from broadcast.web.console.actions import LIVE, approve_as, cancel_as, lift_draft
from broadcast.web.console.alert_list import all_sent, recent_alerts
from broadcast.web.console.audit_log import AuditReader
from broadcast.web.console.briefing import brief, messages, reach, roster_reach, validity
from broadcast.web.console.help_cases import HelpState, HelpUpdate, help_cases, mark_help
from broadcast.web.console.principal import principal
from broadcast.web.console.progress_stream import snapshot
from broadcast.web.console.render import console_page, message_page, names_of
from broadcast.web.console.users import User
from broadcast.web.pages.display import display

HELP_PAGE = 200


def allowed_actions(user: User, alert: Alert, now: datetime) -> dict[str, bool]:
    """Which buttons the user gets on this alert."""
    inside = not outside(user, alert.target.areas)
    pending = alert.status is AlertStatus.pending_approval
    # A cancellation is not a warning of its own: nothing to update or lift; an expired one is over.
    standing = alert.status in LIVE and alert.msg_type is not MessageType.cancel and now < alert.expires_at
    return {
        "approve": inside and pending and may(user, Permission.approve) and alert.composed_by != user.name,
        "own_alert": pending and alert.composed_by == user.name,
        "update": inside and standing and may(user, Permission.compose),
        "cancel": inside and (pending or standing) and may(user, Permission.cancel),
        "help": may(user, Permission.compose) or may(user, Permission.approve),
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


async def briefing_of(request: web.Request, alert: Alert, draft: AlertDraft | None = None) -> dict[str, Any]:
    """What the review, the approval and the cancellation show: the facts and every ticked channel's text."""
    ctx = request.app[CTX]
    draft = draft or alert
    counts = await asyncio.to_thread(reach, ctx, draft)
    facts = await asyncio.to_thread(brief, ctx, draft, counts)
    texts = await messages(request, draft)
    return {"facts": facts, "texts": texts["messages"], "reached": counts["targeted"]}


async def show_alert(request: web.Request) -> web.Response:
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    alert, user, ctx = found, principal(request).user, request.app[CTX]
    now = ctx.clock.now()
    progress = await snapshot(request, alert, user)
    trail = await asyncio.to_thread(AuditReader(ctx.redis, ctx.keys, user).page, 50, None, alert.id)
    sent = await asyncio.to_thread(all_sent, ctx.redis, ctx.keys, [alert])
    names = await names_of(request, alert.target.areas)
    show = display(ctx.settings, names)
    pending = alert.status is AlertStatus.pending_approval
    briefing = await briefing_of(request, alert) if pending else None
    texts = briefing["texts"] if briefing else (await messages(request, alert))["messages"]
    return console_page(
        request,
        "console/alert.html",
        names=names,
        alert=alert,
        phase=show.phase(alert, now, sent.get(alert.id, False)),
        texts=texts,
        briefing=briefing,
        until=validity(alert, show),
        progress=progress,
        trail=trail,
        actions=allowed_actions(user, alert, now),
        related=await asyncio.to_thread(related, ctx.redis, ctx.keys, alert),
        referenced=alert.references,
    )


async def confirm_approve(request: web.Request) -> web.Response:
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    ctx, user = request.app[CTX], principal(request).user
    if not allowed_actions(user, found, ctx.clock.now())["approve"]:
        return message_page(request, 403, "您不能审批这条预警 You cannot approve this alert")
    names = await names_of(request, found.target.areas)
    return console_page(
        request,
        "console/act.html",
        names=names,
        alert=found,
        heading=f"审批并签发 Approve and issue #{found.id}",
        briefing=await briefing_of(request, found),
        until=validity(found, display(ctx.settings, names)),
        explanation=(
            f"由 {found.composed_by} 拟稿。批准后立即按下列内容发出。"
            f"Composed by {found.composed_by}; approving sends exactly this now."
        ),
        button="批准并签发 Approve and issue",
        button_class="go",
        action=f"/console/alerts/{found.id}/approve",
        other=("撤回 Withdraw…", f"/console/alerts/{found.id}/cancel")
        if allowed_actions(user, found, ctx.clock.now())["cancel"]
        else None,
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
    ctx, user = request.app[CTX], principal(request).user
    if not allowed_actions(user, found, ctx.clock.now())["cancel"]:
        return message_page(request, 403, "您不能取消这条预警 You cannot cancel this alert")
    live = found.status in LIVE
    reached = roster_reach(found) if live else 0
    names = await names_of(request, found.target.areas)
    # What residents will read: the 解除 message, worded as it will go out.
    lifting = (await messages(request, lift_draft(found, user)))["messages"] if live else {}
    explanation = (
        f"向已收到预警的 {reached:,} 人发送下面的解除通知，并停止尚未发出的消息。"
        f"Sends the {reached:,} people it reached the cancellation below, and stops messages not yet sent."
        if live
        else "这条预警尚未发出，撤回后不会通知任何人。It has not been sent; withdrawing it tells nobody."
    )
    return console_page(
        request,
        "console/act.html",
        names=names,
        alert=found,
        heading=(f"解除预警 Cancel warning #{found.id}" if live else f"撤回 Withdraw #{found.id}"),
        reached=reached,
        lifting=lifting,
        languages=found.languages,
        explanation=explanation,
        button="确认解除 Cancel the warning" if live else "确认撤回 Withdraw",
        button_class="danger",
        action=f"/console/alerts/{found.id}/cancel",
        other=None,
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


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


async def mark_help_case(request: web.Request) -> web.Response:
    """A duty officer marks a request for help assigned (to whom) or handled."""
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    ctx, who = request.app[CTX], principal(request)
    ordinal = request.match_info["ordinal"]
    form = await request.post()
    try:
        update = HelpUpdate.model_validate({k: str(form.get(k, "")) for k in ("state", "assignee", "note")})
        if not ordinal.isdigit():
            raise alerts.AlertError("no such resident", status=404, field="ordinal")
        saved = await asyncio.to_thread(mark_help, ctx, who.user, found.id, int(ordinal), update, who.origin)
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return refused(request, 422, f"无法保存 Not saved: {problem}", "state")
    except (alerts.AlertError, Forbidden) as exc:
        status = exc.status if isinstance(exc, alerts.AlertError) else 403
        return refused(request, status, exc.message, exc.field or "form")
    if wants_json(request):
        return web.json_response({"saved": saved})
    raise web.HTTPSeeOther(f"/console/alerts/{found.id}#help")


def refused(request: web.Request, status: int, message: str, field: str) -> web.Response:
    """A marking refused: JSON naming the field for the page's script, else a page saying why."""
    if wants_json(request):
        return web.json_response({"error": {"message": message, "field": field}}, status=status)
    return message_page(request, status, message)


async def all_help_cases(request: web.Request) -> web.Response:
    """Every request for help in the user's areas, newest first, a page at a time."""
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    ctx, user = request.app[CTX], principal(request).user
    page_no = int(request.query["page"]) if request.query.get("page", "").isdigit() else 0
    progress = scoped_progress(user, await alert_progress(request.app[REDIS], ctx.keys, found))
    cases = await help_cases(
        request.app[REDIS],
        ctx.keys,
        found.id,
        progress["areas"]["community"],
        everywhere=not outside(user, found.target.areas),
        limit=HELP_PAGE,
        skip=page_no * HELP_PAGE,
        scan=None,
    )
    return console_page(
        request,
        "console/help.html",
        alert=found,
        help=cases,
        page_no=page_no,
        states=list(HelpState),
        can_mark=allowed_actions(user, found, ctx.clock.now())["help"],
    )


async def curve(request: web.Request) -> web.Response:
    """The confirmation curve: sent, delivered and confirmed people against minutes since issue."""
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    ctx = request.app[CTX]
    index = await roster_index(request.app[REDIS], ctx.keys, found.id)
    if index is None or found.issued_at is None:
        return web.json_response({"minutes": [], "sent": [], "delivered": [], "confirmed": [], "sampled": False})
    body = await confirmation_curve(request.app[REDIS], ctx.keys, found, index.size, ctx.clock.now())
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/alerts/{id}", show_alert)
    app.router.add_get("/console/alerts/{id}/approve", confirm_approve)
    app.router.add_post("/console/alerts/{id}/approve", approve)
    app.router.add_get("/console/alerts/{id}/cancel", confirm_cancel)
    app.router.add_post("/console/alerts/{id}/cancel", cancel)
    app.router.add_get("/console/alerts/{id}/help", all_help_cases)
    app.router.add_post("/console/alerts/{id}/help/{ordinal}", mark_help_case)
    app.router.add_get("/console/alerts/{id}/curve.json", curve)
