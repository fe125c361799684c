"""The field reports a console user may see, as the live page and the full list show them: newest
first, each with the names of its place, committee and street, grouped by street."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broadcast.core.models import Alert
from broadcast.following.escalation import area_names
from broadcast.hearing.field_reports import alert_reports
from broadcast.web.base import CTX, REDIS
from broadcast.web.console.access import Permission, may, outside
from broadcast.web.console.users import User


def may_triage(user: User) -> bool:
    """Who may mark reports: those who act on warnings (duty officers and approvers)."""
    return may(user, Permission.compose) or may(user, Permission.approve)


async def reports_for(
    request: web.Request, alert: Alert, user: User, communities: list[dict[str, Any]], **paging: Any
) -> dict[str, Any]:
    """The alert's field reports the user may see (those in their areas), newest first, with the names
    of their places and streets."""
    ctx, client = request.app[CTX], request.app[REDIS]
    within = None if not outside(user, alert.target.areas) else {row["code"] for row in communities}
    listed = await alert_reports(client, ctx.keys, alert.id, within, **paging)
    codes = sorted({code for r in listed["reports"] for code in (r["place"], r["street"], r["community"])})
    names = await area_names(client, ctx.keys, codes)
    for report in listed["reports"]:
        report["place_name"] = names.get(report["place"], report["place"])
        report["street_name"] = names.get(report["street"], report["street"])
        report["community_name"] = names.get(report["community"], report["community"])
        reporter = report.pop("reporter")
        report["reporter_name"] = reporter.get("name", "")
        report["reporter_kind"] = reporter.get("kind", "")
        report["reporter_id"] = reporter.get("id", "")
        report["dial"] = reporter.get("phone", "")
    return listed


def by_street(reports: list[dict[str, Any]]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(street code, street name, its reports newest first), the street with the newest report first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for report in reports:
        groups.setdefault(report["street"], []).append(report)
    return [(code, rows[0]["street_name"], rows) for code, rows in groups.items()]
