"""The web app: JSON API, provider webhooks (declared by the channels), health.

A webhook is answered 2xx only after its events are stored; unauthenticated ones get 403 and
store nothing. Every API error is JSON naming the field at fault.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_plus

from aiohttp import web
from pydantic import ValidationError

from broadcast.core.context import Context
from broadcast.core.errors import AlertError
from broadcast.hearing.inbound import Inbox
from broadcast.web.base import CTX, INBOX, REDIS, error, validation_error
from broadcast.web.console.guard import guard
from channels import inbound_routes
from channels.base import InboundRejected, InboundRequest, InboundRoute

log = logging.getLogger("broadcast.web")


@web.middleware
async def errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except AlertError as exc:
        return error(exc.status, exc.message, exc.field)
    except ValidationError as exc:
        return validation_error(exc)
    except web.HTTPRequestEntityTooLarge:
        return error(413, "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        # The API answers every error as JSON, routing's own (404, 405 with its Allow) included.
        answer = error(exc.status, exc.reason)
        if "Allow" in exc.headers:
            answer.headers["Allow"] = exc.headers["Allow"]
        return answer
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error(500, "internal error; nothing was changed by this request unless its status says so")


async def health(request: web.Request) -> web.Response:
    await request.app[REDIS].ping()
    return web.json_response({"ok": True})


def form_fields(body: bytes) -> dict[str, str]:
    """A urlencoded form's fields (the last value of a repeated name), as parse_qsl reads them but
    unquoting only what is quoted: providers post thousands a second. UnicodeDecodeError if not UTF-8."""
    form: dict[str, str] = {}
    for pair in body.decode("utf-8").split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        name = unquote_plus(name) if "%" in name or "+" in name else name
        form[name] = unquote_plus(value) if "%" in value or "+" in value else value
    return form


def inbound_handler(route: InboundRoute) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a channel's parser: authenticate and parse, store the events, then answer."""

    async def handle(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        body = await request.read()
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            try:
                form = form_fields(body)
            except UnicodeDecodeError:
                return error(400, "the form is not UTF-8")
        inbound = InboundRequest(
            method=request.method,
            url=ctx.settings.public_url + str(request.rel_url),
            headers=request.headers,
            body=body,
            form=form,
            query=dict(request.query),
        )
        try:
            result = route.parse(inbound)
        except InboundRejected as exc:
            await request.app[REDIS].hincrby(ctx.keys.stats, f"refused_{exc.status}", 1)
            return error(exc.status, exc.reason)
        await request.app[INBOX].record(result.events)
        return web.Response(text=result.body, status=result.status, content_type=result.content_type)

    return handle


# The console's routes: signing in, its pages, and the alert API acting as the signed-in user.
CONSOLE_ROUTE_MODULES = [
    "broadcast.web.console.signin",
    "broadcast.web.console.home",
    "broadcast.web.console.compose_page",
    "broadcast.web.console.alert_page",
    "broadcast.web.console.report_triage",
    "broadcast.web.console.review_page",
    "broadcast.web.console.progress_stream",
    "broadcast.web.console.alerts_api",
    "broadcast.web.console.area_search",
    "broadcast.web.console.static",
    "broadcast.web.console.audit_page",
    "broadcast.web.console.community_page",
    "broadcast.web.console.users_page",
    "broadcast.web.console.openapi",
]

# Modules that add routes: each has add_routes(app) using the CTX and REDIS keys of broadcast.web.base.
ROUTE_MODULES: list[str] = [
    "broadcast.web.app_api",
    "broadcast.web.preview",
    "broadcast.web.confirm_page",
    "broadcast.web.areas_api",
    "broadcast.web.followup_pages",
    "broadcast.web.report_pages",
    *CONSOLE_ROUTE_MODULES,
]


def create_app(ctx: Context) -> web.Application:
    """The aiohttp application for one context."""
    # The guard signs in requests to /api/v1/* and /console* (and leaves signed links alone).
    app = web.Application(client_max_size=ctx.settings.max_body_bytes, middlewares=[errors_as_json, guard])
    app[CTX] = ctx

    async def open_redis(app: web.Application) -> None:
        app[REDIS] = ctx.async_redis()
        app[INBOX] = Inbox(ctx, app[REDIS])

    async def close_redis(app: web.Application) -> None:
        await app[REDIS].aclose()

    app.on_startup.append(open_redis)
    app.on_cleanup.append(close_redis)
    app.router.add_get("/healthz", health)
    for route in inbound_routes(ctx.settings):
        app.router.add_route(route.method, route.path, inbound_handler(route))
    for name in ROUTE_MODULES:
        importlib.import_module(name).add_routes(app)
    return app
