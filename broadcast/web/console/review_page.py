"""The after-action report and the drill scorecards in the console.

    /console/alerts/{id}/review         the report, its charts drawn by plotly.js
    /console/alerts/{id}/review.pdf     the same report to print and sign
    /console/alerts/{id}/review.json    its figures
    /console/drills?event=typhoon       drills of one kind compared (?a=ID&b=ID picks the two)
    /console/drills/compare.csv         that comparison as CSV

The report covers a whole alert, so only users whose areas hold all of it may read it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from broadcast.core.models import Alert, EventType
from broadcast.following.review import after_action
from broadcast.following.scorecards import compare, compare_csv, drill_scorecards, keep_scorecard, scorecard_of
from broadcast.web.base import CTX, REDIS
from broadcast.web.console.access import Permission, may, outside
from broadcast.web.console.alert_page import load_visible
from broadcast.web.console.principal import principal
from broadcast.web.console.render import console_page, message_page
from broadcast.web.review_report import ReportUnavailable, review_pdf


async def reviewed(request: web.Request) -> tuple[Alert, dict[str, Any]] | web.Response:
    """The alert and its after-action report, or the page saying why the user cannot have it."""
    found = await load_visible(request)
    if isinstance(found, web.Response):
        return found
    user, ctx, client = principal(request).user, request.app[CTX], request.app[REDIS]
    if outside(user, found.target.areas):
        return message_page(request, 403, "这份报告涵盖您辖区以外的地方 The report covers areas beyond yours")
    if found.issued_at is None:
        return message_page(request, 409, "这条预警尚未签发 This alert was never issued: nothing to review")
    review = await after_action(client, ctx.keys, ctx.settings, found, ctx.clock.now())
    if found.exercise:
        await keep_scorecard(client, ctx.keys, scorecard_of(review))
    return found, review


async def review_page(request: web.Request) -> web.Response:
    found = await reviewed(request)
    if isinstance(found, web.Response):
        return found
    alert, review = found
    names = review["names"] | {c["code"]: c["name"] for c in review["committees"]}
    return console_page(
        request, "console/review.html", names=names, alert=alert, r=review, charts={}, committees_shown=True
    )


async def review_json(request: web.Request) -> web.Response:
    found = await reviewed(request)
    if isinstance(found, web.Response):
        return found
    return web.json_response(found[1], dumps=lambda value: json.dumps(value, ensure_ascii=False))


async def review_pdf_response(request: web.Request) -> web.Response:
    found = await reviewed(request)
    if isinstance(found, web.Response):
        return found
    alert, review = found
    try:
        pdf = await asyncio.to_thread(review_pdf, review, request.app[CTX].settings)
    except ReportUnavailable as exc:
        return message_page(request, 503, f"无法生成 PDF Cannot make the PDF: {exc}")
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="alert-{alert.id}-review.pdf"'},
    )


async def _drills(request: web.Request) -> tuple[str, list[dict[str, Any]], dict[str, Any], dict[str, Any]] | str:
    """The kind of drill asked for, its scorecards the user may read, and the two compared (the
    latest two unless ``a`` and ``b`` name others); or why not."""
    ctx, user = request.app[CTX], principal(request).user
    event = request.query.get("event", "typhoon")
    if event not in {e.value for e in EventType}:
        return f"没有这种预警 No such event: {event}"
    cards = [c for c in await drill_scorecards(request.app[REDIS], ctx.keys, event) if not outside(user, c["areas"])]
    if len(cards) < 2:
        return f"同类演练不足两次 Fewer than two {event} drills to compare"
    by_id = {c["alert"]: c for c in cards}
    first, second = request.query.get("a", cards[-2]["alert"]), request.query.get("b", cards[-1]["alert"])
    if first not in by_id or second not in by_id:
        return "没有这次演练 No such drill of this kind"
    return event, cards, by_id[first], by_id[second]


async def drills_page(request: web.Request) -> web.Response:
    if not may(principal(request).user, Permission.view_alerts):
        return message_page(request, 403, "您不能查看演练 You cannot read drills")
    found = await _drills(request)
    if isinstance(found, str):
        return message_page(request, 404, found)
    event, cards, previous, latest = found
    streets = compare(previous, latest, "streets")
    committees = compare(previous, latest, "committees")
    return console_page(
        request,
        "console/drills.html",
        event=event,
        cards=cards,
        previous=previous,
        latest=latest,
        streets=streets,
        committees=committees,
        chart={"streets": streets, "previous": previous["alert"], "latest": latest["alert"]},
    )


async def drills_csv(request: web.Request) -> web.Response:
    found = await _drills(request)
    if isinstance(found, str):
        return message_page(request, 404, found)
    event, _, previous, latest = found
    response = web.Response(text=compare_csv(previous, latest), content_type="text/csv", charset="utf-8")
    name = f"drills-{event}-{previous['alert']}-{latest['alert']}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/console/alerts/{id}/review", review_page)
    app.router.add_get(r"/console/alerts/{id}/review.json", review_json)
    app.router.add_get(r"/console/alerts/{id}/review.pdf", review_pdf_response)
    app.router.add_get("/console/drills", drills_page)
    app.router.add_get("/console/drills/compare.csv", drills_csv)
