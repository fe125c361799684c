"""The console's first page, by role: officers and approvers see what waits for them and what is
live; community workers go to their committee; volunteers see only their own work lists."""

from __future__ import annotations

import asyncio

from aiohttp import web

from audiences.volunteers import Volunteer
from broadcast.core.context import Context
from broadcast.core.models import Alert
from broadcast.core.tokens import volunteer_token
from broadcast.web.base import CTX
from broadcast.web.console.access import Permission, may, touches
from broadcast.web.console.actions import LIVE
from broadcast.web.console.alert_list import all_sent, recent_alerts, visible_alerts
from broadcast.web.console.principal import principal
from broadcast.web.console.render import console_page, names_of
from broadcast.web.console.users import Role, User
from broadcast.web.pages.display import display

WORK_LIST_PATH = "/v/{token}"  # the volunteers' signed work-list pages


def work_lists(ctx: Context, user: User) -> tuple[Volunteer | None, list[tuple[Alert, str]]]:
    """The volunteer behind the account, and a work-list link for each live alert in their committee."""
    raw = ctx.redis.hget(ctx.keys.volunteers, user.volunteer_id or "")
    if raw is None:
        return None, []
    volunteer = Volunteer.model_validate_json(raw)
    links = [
        (alert, WORK_LIST_PATH.format(token=volunteer_token(ctx.secret, volunteer.id, alert.id)))
        for alert in recent_alerts(ctx.redis, ctx.keys)
        if alert.status in LIVE
        and touches(user.model_copy(update={"areas": [volunteer.community]}), alert.target.areas)
    ]
    return volunteer, links


async def home(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX], principal(request).user
    if user.role is Role.community_worker:
        raise web.HTTPSeeOther("/console/community")
    if user.role is Role.volunteer:
        volunteer, links = await asyncio.to_thread(work_lists, ctx, user)
        return console_page(request, "console/volunteer.html", volunteer=volunteer, links=links)
    shown = await asyncio.to_thread(visible_alerts, ctx.redis, ctx.keys, user)
    sent = await asyncio.to_thread(all_sent, ctx.redis, ctx.keys, [a for a in shown if a.status in LIVE])
    now = ctx.clock.now()
    names = await names_of(request, [code for alert in shown for code in alert.target.areas])
    show = display(ctx.settings, names)
    rows = [(alert, show.phase(alert, now, sent.get(alert.id, False))) for alert in shown]
    # A warning in force is one that still asks something of people: not a cancellation, not finished.
    return console_page(
        request,
        "console/home.html",
        names=names,
        pending=[(a, p) for a, p in rows if p.key == "pending"],
        live=[(a, p) for a, p in rows if p.key in ("live", "sent")],
        past=[(a, p) for a, p in rows if p.key not in ("pending", "live", "sent")][:30],
        can_compose=may(user, Permission.compose),
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console", home)
