"""The middleware that guards the JSON API and the console: who is asking, and may they ask this.

It protects ``/api/v1/*`` and ``/console*`` only. Everything that authenticates by signature
instead of a login stays open: provider webhooks (/hooks/*), residents' confirmation links
(/c/*), the resident app's signed confirmation (/api/v1/app/ack), volunteers' and community
workers' signed links (/v/*, /w/*) and /healthz.

A request is signed in by a bearer token (machine clients) or a session cookie (browsers). A
session's unsafe requests (POST …) must carry its CSRF token, as the form field ``csrf`` or the
header ``X-CSRF-Token``; a bearer token is not sent by browsers on their own, so needs none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from broadcast.web.base import CTX, REDIS, error
from broadcast.web.console.access import Forbidden
from broadcast.web.console.api_tokens import token_owner
from broadcast.web.console.principal import PRINCIPAL, Principal
from broadcast.web.console.render import message_page
from broadcast.web.console.sessions import COOKIE, Session, close_session, find_session, same_token
from broadcast.web.console.users import Role, load_user_async

OPEN_PATHS = frozenset({"/api/v1/app/ack"})
VOLUNTEER_PATHS = frozenset({"/console", "/console/logout"})  # a volunteer's own work list, and signing out
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"


def protected(path: str) -> bool:
    if path in OPEN_PATHS:
        return False
    return path.startswith("/api/v1/") or path == "/console" or path.startswith("/console/")


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


async def identify(request: web.Request) -> Principal | None:
    """The user behind a bearer token or a session cookie; None when neither is valid."""
    ctx, client = request.app[CTX], request.app[REDIS]
    address = request.remote or "unknown"
    authorization = request.headers.get("Authorization", "")
    session: Session | None = None
    label: str | None = None
    if authorization:
        # A client that presents a token is judged by it alone, never by a cookie beside it.
        scheme, _, token = authorization.partition(" ")
        owner = await token_owner(client, ctx.keys, token.strip()) if scheme.lower() == "bearer" else None
        if owner is None:
            return None
        name, label = owner
    else:
        session = await find_session(client, ctx.keys, ctx.settings, request.cookies.get(COOKIE, ""))
        if session is None:
            return None
        name = session.user
    user = await load_user_async(client, ctx.keys, name)
    if user is None or user.disabled:
        return None
    if session is not None and session.generation != user.generation:
        await close_session(client, ctx.keys, session)  # opened before a password change or a disable
        return None
    return Principal(user, session, label, address)


async def csrf_sent(request: web.Request) -> str:
    if CSRF_HEADER in request.headers:
        return request.headers[CSRF_HEADER]
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return str((await request.post()).get(CSRF_FIELD, ""))
    return ""


def refuse(request: web.Request, status: int, message: str, field: str | None = None) -> web.StreamResponse:
    if is_api(request):
        return error(status, message, field)
    return message_page(request, status, message)


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Let guarded requests through only for a signed-in user with a valid CSRF token."""
    if not protected(request.path):
        return await handler(request)
    found = await identify(request)
    if found is None:
        if is_api(request):
            response = error(401, "sign in, or send Authorization: Bearer <token>", "Authorization")
            response.headers["WWW-Authenticate"] = 'Bearer realm="broadcast"'
            return response
        raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe=""))
    if found.user.role is Role.volunteer and request.path not in VOLUNTEER_PATHS:
        return refuse(request, 403, "a volunteer's console is their own work list")
    unsafe = request.method not in SAFE_METHODS and found.session is not None
    if unsafe and found.session and not same_token(await csrf_sent(request), found.session.csrf):
        return refuse(request, 403, "this form has expired or came from another page; reload and try again", "csrf")
    request[PRINCIPAL] = found
    try:
        return await handler(request)
    except Forbidden as exc:
        return refuse(request, 403, exc.message, exc.field)
