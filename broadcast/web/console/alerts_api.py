"""The alert routes of the JSON API, acting as the signed-in user (session or bearer token).

GET  /api/v1/alerts                 the newest alerts the caller may see
POST /api/v1/alerts                 compose (orange and red then wait for a second person)
GET  /api/v1/alerts/{id}            progress: totals, channels, areas (cut to the caller's areas)
POST /api/v1/alerts/{id}/approve    approve as the signed-in user, who must not be the composer
POST /api/v1/alerts/{id}/cancel     stop; with {"notify": true}, first tell recipients it is lifted
GET  /api/v1/audit                  the audit log as the caller may read it (?alert=ID&before=…)
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

from broadcast.core.models import Alert, AlertDraft
from broadcast.following.progress import AREA_LEVELS, alert_progress
from broadcast.issuing.alerts import load_alert_async
from broadcast.web.base import CTX, REDIS, error, read_model
from broadcast.web.console.access import Forbidden, Permission, can_see, require, scoped_progress
from broadcast.web.console.actions import approve_as, cancel_as, compose_as
from broadcast.web.console.alert_list import visible_alerts
from broadcast.web.console.audit_log import AuditReader, is_entry_id
from broadcast.web.console.principal import Principal, principal
from broadcast.web.console.schemas import AlertList, AlertRequest, Approval, AuditPage, Cancellation, CancelResult


def acting_name(found: Principal, named: str | None, field: str) -> None:
    """A body may name the acting officer only as the signed-in user."""
    if named is not None and named.strip() != found.user.name:
        raise Forbidden(f"you are signed in as {found.user.name}; you can act only in your own name", field)


def draft_of(body: AlertRequest, found: Principal) -> AlertDraft:
    acting_name(found, body.composed_by, "composed_by")
    return AlertDraft.model_validate({**body.model_dump(), "composed_by": found.user.name})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda value: json.dumps(value, ensure_ascii=False))


async def list_alerts(request: web.Request) -> web.Response:
    ctx, found = request.app[CTX], principal(request)
    require(found.user, Permission.view_alerts)
    shown = await asyncio.to_thread(visible_alerts, ctx.redis, ctx.keys, found.user)
    return _json(AlertList(alerts=shown).model_dump(mode="json"))


async def create_alert(request: web.Request) -> web.Response:
    ctx, found = request.app[CTX], principal(request)
    draft = draft_of(await read_model(request, AlertRequest), found)
    alert = await asyncio.to_thread(compose_as, ctx, found.user, draft, found.origin)
    return _json(alert.model_dump(mode="json"), status=201)


async def visible_alert(request: web.Request) -> Alert | web.Response:
    """The alert the path names, if the caller may see it; otherwise the error to answer."""
    ctx, found = request.app[CTX], principal(request)
    alert_id = request.match_info["id"]
    alert = await load_alert_async(request.app[REDIS], ctx.keys, alert_id) if alert_id.isdigit() else None
    if alert is None:
        return error(404, f"no alert with id {alert_id}", "id")
    if not can_see(found.user, alert):
        return error(403, f"alert {alert_id} is outside your areas", "id")
    return alert


async def get_alert(request: web.Request) -> web.Response:
    found = await visible_alert(request)
    if isinstance(found, web.Response):
        return found
    ctx = request.app[CTX]
    # ?areas=district,street leaves out the committee rows (thousands of them for a citywide alert).
    levels = tuple(filter(None, request.query.get("areas", ",".join(AREA_LEVELS)).split(",")))
    unknown = [level for level in levels if level not in AREA_LEVELS]
    if unknown:
        return error(422, f"unknown area level(s) {', '.join(unknown)}; use {', '.join(AREA_LEVELS)}", "areas")
    progress = await alert_progress(request.app[REDIS], ctx.keys, found, levels)
    return _json(scoped_progress(principal(request).user, progress))


async def approve_alert(request: web.Request) -> web.Response:
    ctx, found = request.app[CTX], principal(request)
    body: Approval = await read_model(request, Approval)
    acting_name(found, body.approved_by, "approved_by")
    alert = await asyncio.to_thread(approve_as, ctx, found.user, request.match_info["id"], found.origin)
    return _json(alert.model_dump(mode="json"))


async def cancel_alert(request: web.Request) -> web.Response:
    ctx, found = request.app[CTX], principal(request)
    body: Cancellation = await read_model(request, Cancellation)
    acting_name(found, body.cancelled_by, "cancelled_by")
    alert, lift = await asyncio.to_thread(
        cancel_as, ctx, found.user, request.match_info["id"], found.origin, notify=body.notify
    )
    return _json(CancelResult(alert=alert, lift=lift).model_dump(mode="json"))


async def read_audit(request: web.Request) -> web.Response:
    ctx, found = request.app[CTX], principal(request)
    require(found.user, Permission.audit)
    limit_text = request.query.get("limit", "100")
    limit = int(limit_text) if re.fullmatch(r"[0-9]{1,4}", limit_text) else 0
    if not 1 <= limit <= 1000:
        return error(422, "limit must be a whole number from 1 to 1000", "limit")
    before = request.query.get("before")
    if before is not None and not is_entry_id(before):
        return error(422, "before must be an audit entry id such as 1700000000000-0", "before")
    alert_id = request.query.get("alert")
    if alert_id is not None and not re.fullmatch(r"[0-9]{1,12}", alert_id):
        return error(422, "alert must be an alert id", "alert")
    reader = AuditReader(ctx.redis, ctx.keys, found.user)
    entries = await asyncio.to_thread(reader.page, limit, before, alert_id)
    next_before = entries[-1].id if len(entries) == limit else None
    return _json(AuditPage(entries=entries, next_before=next_before).model_dump(mode="json"))


def add_routes(app: web.Application) -> None:
    """Mount the alert and audit routes."""
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_post("/api/v1/alerts", create_alert)
    app.router.add_get(r"/api/v1/alerts/{id:\d{1,12}}", get_alert)
    app.router.add_post(r"/api/v1/alerts/{id:\d{1,12}}/approve", approve_alert)
    app.router.add_post(r"/api/v1/alerts/{id:\d{1,12}}/cancel", cancel_alert)
    app.router.add_get("/api/v1/audit", read_audit)
