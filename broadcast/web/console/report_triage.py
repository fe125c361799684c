"""Field reports in the console: listed live on the alert's page and in full, grouped by street
(a list, no map), and triaged by the duty room: seen, assigned (to a volunteer or a unit), resolved,
with a note, every step audited. A trapped person (被困) is urgent: the live page raises it as it
raises a call for help."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import ValidationError

from broadcast.core.errors import AlertError
from broadcast.following.progress import alert_progress
from broadcast.hearing.field_reports import TriageState, TriageUpdate, load_report, mark_report
from broadcast.web.base import CTX, REDIS
from broadcast.web.console.access import Forbidden, covers, scoped_progress
from broadcast.web.console.alert_page import load_visible, refused, wants_json
from broadcast.web.console.principal import principal
from broadcast.web.console.render import console_page, message_page
from broadcast.web.console.report_list import by_street, may_triage, reports_for
from broadcast.web.report_pages import photo_response

REPORTS_PAGE = 200


async def all_reports(request: web.Request) -> web.Response:
    """Every field report in the user's areas, grouped by street, a page at a time."""
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    ctx, user = request.app[CTX], principal(request).user
    progress = scoped_progress(user, await alert_progress(request.app[REDIS], ctx.keys, found))
    page_no = int(request.query["page"]) if request.query.get("page", "").isdigit() else 0
    listed = await reports_for(
        request, found, user, progress["areas"]["community"], limit=REPORTS_PAGE, skip=page_no * REPORTS_PAGE
    )
    return console_page(
        request,
        "console/reports.html",
        alert=found,
        listed=listed,
        streets=by_street(listed["reports"]),
        page_no=page_no,
        states=list(TriageState),
        can_mark=may_triage(user),
    )


async def triage(request: web.Request) -> web.Response:
    """A duty officer marks a report seen, assigned (to whom) or resolved, with a note."""
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    ctx, who = request.app[CTX], principal(request)
    form = await request.post()
    try:
        if not may_triage(who.user):
            raise Forbidden(f"a {who.user.role.value} may not triage field reports")
        update = TriageUpdate.model_validate({k: str(form.get(k, "")) for k in ("state", "assignee", "note")})
        report = await asyncio.to_thread(load_report, ctx.redis, ctx.keys, found.id, request.match_info["report"])
        if report is None:
            raise AlertError("no such report", status=404, field="report")
        if not covers(who.user, report.community):
            raise Forbidden("this report comes from outside your areas", "report")
        saved = await asyncio.to_thread(mark_report, ctx, found.id, report, update, who.user.name, who.origin)
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return refused(request, 422, f"无法保存 Not saved: {problem}", "state")
    except (AlertError, Forbidden) as exc:
        status = exc.status if isinstance(exc, AlertError) else 403
        return refused(request, status, exc.message, exc.field or "form")
    if wants_json(request):
        return web.json_response({"saved": saved})
    raise web.HTTPSeeOther(f"/console/alerts/{found.id}/reports")


async def photo(request: web.Request) -> web.Response:
    """A report's photo, for a user who may see the report."""
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    ctx, user = request.app[CTX], principal(request).user
    report = await asyncio.to_thread(load_report, ctx.redis, ctx.keys, found.id, request.match_info["report"])
    if report is None or not report.photo or not covers(user, report.community):
        return message_page(request, 404, "没有这张照片 No such photo")
    return await photo_response(request, report)


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/console/alerts/{id}/reports", all_reports)
    app.router.add_post(r"/console/alerts/{id}/reports/{report:\d{1,9}}", triage)
    app.router.add_get(r"/console/alerts/{id}/reports/{report:\d{1,9}}/photo", photo)
