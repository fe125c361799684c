"""Rendering console pages: the layout's navigation for the user's role, the CSRF token, and headers
that keep pages out of frames and scripts to the service's own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from broadcast.following.escalation import area_names
from broadcast.web.base import CTX, REDIS
from broadcast.web.console.access import Permission, may
from broadcast.web.console.principal import PRINCIPAL
from broadcast.web.pages import page
from broadcast.web.pages.display import display

# Scripts come only from the service itself; styles are inline in the layout.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def navigation(request: web.Request) -> list[tuple[str, str]]:
    """The links the signed-in user's role may follow."""
    found = request.get(PRINCIPAL)
    if found is None:
        return []
    user = found.user
    links = [("/console", "首页 Home")]
    if may(user, Permission.compose):
        links.append(("/console/compose", "拟稿 Compose"))
    if may(user, Permission.audit):
        links.append(("/console/audit", "审计 Audit"))
    if may(user, Permission.manage_users):
        links.append(("/console/users", "用户 Users"))
    return links


async def names_of(request: web.Request, codes: Iterable[str]) -> dict[str, str]:
    """The names of these areas (buildings and grids included), for pages that show codes as names."""
    wanted = sorted({code for code in codes if code})
    return await area_names(request.app[REDIS], request.app[CTX].keys, wanted) if wanted else {}


def console_page(
    request: web.Request, name: str, status: int = 200, names: Mapping[str, str] | None = None, **context: Any
) -> web.Response:
    """A console page with the signed-in user, their navigation, their CSRF token, and the display
    (local times, area ``names``, events and levels in Chinese and English)."""
    found = request.get(PRINCIPAL)
    ctx = request.app[CTX]
    response = page(
        name,
        status=status,
        lang="zh",
        me=found.user if found else None,
        csrf=found.session.csrf if found and found.session else "",
        nav=navigation(request),
        show=display(ctx.settings, names),
        now=ctx.clock.now(),
        **context,
    )
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def message_page(request: web.Request, status: int, message: str) -> web.Response:
    """A plain page that says what went wrong (or right) and offers the way back."""
    return console_page(request, "console/message.html", status=status, message=message)
