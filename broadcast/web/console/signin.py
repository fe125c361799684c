"""Signing in and out of the console.

The sign-in form is protected against cross-site posting by a double-submitted token (a cookie
and a hidden field that must match), since no session exists yet. Every sign-in, failed sign-in
and sign-out is written to the audit log with the address it came from.
"""

from __future__ import annotations

import asyncio
import secrets

from aiohttp import web

from broadcast.issuing.alerts import audit
from broadcast.web.base import CTX, REDIS
from broadcast.web.console import login_limit
from broadcast.web.console.guard import CSRF_FIELD
from broadcast.web.console.principal import principal
from broadcast.web.console.render import CONTENT_SECURITY_POLICY
from broadcast.web.console.sessions import (
    LOGIN_CSRF_COOKIE,
    clear_session_cookie,
    close_session,
    open_session,
    same_token,
    set_cookie,
    set_session_cookie,
)
from broadcast.web.console.users import load_user, rehashed, store_user, verify_password
from broadcast.web.pages import page

LOGIN_PATH = "/login"
MAX_NAME = 64
VERIFICATIONS = web.AppKey("password_verifications", asyncio.Semaphore)


def safe_next(target: str) -> str:
    """Where to go after signing in: a console page of this service, never another site."""
    if target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console"


def login_form(request: web.Request, status: int = 200, problem: str = "", name: str = "") -> web.Response:
    token = secrets.token_urlsafe(24)
    response = page(
        "console/login.html",
        status=status,
        lang="zh",
        csrf=token,
        problem=problem,
        user_name=name,
        next=safe_next(request.query.get("next", "/console")),
    )
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    set_cookie(response, request.app[CTX].settings, LOGIN_CSRF_COOKIE, token, 3600)
    return response


async def show_login(request: web.Request) -> web.Response:
    return login_form(request)


async def sign_in(request: web.Request) -> web.Response:
    ctx, client = request.app[CTX], request.app[REDIS]
    form = await request.post()
    name = str(form.get("name", "")).strip().lower()[:MAX_NAME]
    password = str(form.get("password", ""))
    address = request.remote or "unknown"
    if not same_token(str(form.get(CSRF_FIELD, "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
        return login_form(request, 403, "登录表单已过期，请重新输入。The form expired; please sign in again.", name)
    if not name or not password:
        return login_form(request, 422, "请输入用户名和密码。Enter your user name and password.", name)
    wait = await login_limit.attempt(client, ctx.keys, ctx.settings, name, address)
    if wait:
        minutes = (wait + 59) // 60
        message = f"登录失败次数过多，请 {minutes} 分钟后再试。Too many failed sign-ins; try again in {minutes} min."
        return login_form(request, 429, message, name)
    user = await asyncio.to_thread(load_user, ctx.redis, ctx.keys, name)
    # argon2 costs 64 MiB and tens of milliseconds a check: a process runs only a few at once.
    async with request.app[VERIFICATIONS]:
        right = await asyncio.to_thread(verify_password, user, password)
    if not right:
        await asyncio.to_thread(audit, ctx, name, "sign_in_failed", origin=address)
        return login_form(request, 401, "用户名或密码不正确。Wrong user name or password.", name)
    assert user is not None
    await login_limit.succeeded(client, ctx.keys, name, address)
    better = await asyncio.to_thread(rehashed, user, password)
    if better is not None:
        await asyncio.to_thread(store_user, ctx.redis, ctx.keys, better, replace=True)
    token, _ = await open_session(client, ctx.keys, ctx.settings, user, address, ctx.clock.now().isoformat())
    await asyncio.to_thread(audit, ctx, user.name, "sign_in", origin=f"{address} (console)")
    response = web.HTTPSeeOther(safe_next(str(form.get("next", "/console"))))
    set_session_cookie(response, ctx.settings, token)
    set_cookie(response, ctx.settings, LOGIN_CSRF_COOKIE, "", 0)
    raise response


async def sign_out(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    found = principal(request)
    if found.session is not None:
        await close_session(request.app[REDIS], ctx.keys, found.session)
    await asyncio.to_thread(audit, ctx, found.user.name, "sign_out", origin=found.origin)
    response = web.HTTPSeeOther(LOGIN_PATH)
    clear_session_cookie(response, ctx.settings)
    raise response


def add_routes(app: web.Application) -> None:
    app[VERIFICATIONS] = asyncio.Semaphore(app[CTX].settings.login_concurrency)
    app.router.add_get(LOGIN_PATH, show_login)
    app.router.add_post(LOGIN_PATH, sign_in)
    app.router.add_post("/console/logout", sign_out)
