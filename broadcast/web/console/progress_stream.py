"""Live progress over server-sent events: ``GET /api/v1/alerts/{id}/events``.

A client that accepts ``text/event-stream`` (a browser's EventSource does) gets the stream; any
other gets the progress document as it is now. Every second the stream reads the alert's counters
(a few hash reads, whatever its size) and sends the progress document, cut to the user's areas,
when it has changed; a comment line every 15 s keeps proxies from closing a quiet stream. The
stream ends when the user's session or token stops being valid, when the client goes away, or
when the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from broadcast.core.models import Alert
from broadcast.following.progress import alert_progress
from broadcast.issuing.alerts import load_alert_async
from broadcast.web.base import CTX, REDIS
from broadcast.web.console.access import outside, scoped_progress
from broadcast.web.console.alerts_api import visible_alert
from broadcast.web.console.guard import identify
from broadcast.web.console.help_cases import help_cases
from broadcast.web.console.principal import principal
from broadcast.web.console.report_list import reports_for
from broadcast.web.console.users import User

INTERVAL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
LIVE_REPORTS = 100  # field reports on the live page; the full list pages through the rest
RECHECK_SECONDS = 30.0  # how often a long stream checks its user may still sign in
STOPPING = web.AppKey("progress_streams_stopping", asyncio.Event)


async def snapshot(request: web.Request, alert: Alert, user: User) -> dict[str, Any]:
    """The alert's progress as ``user`` may see it, with the requests for help and the field reports
    among it (newest first)."""
    ctx, client = request.app[CTX], request.app[REDIS]
    progress = scoped_progress(user, await alert_progress(client, ctx.keys, alert))
    progress["help"] = await help_cases(
        client,
        ctx.keys,
        alert.id,
        progress["areas"]["community"],
        everywhere=not outside(user, alert.target.areas),
    )
    progress["reports"] = await reports_for(request, alert, user, progress["areas"]["community"], limit=LIVE_REPORTS)
    return progress


def stamped(body: str, now: str) -> str:
    """A progress document (JSON text) with the server's clock added, once it is known to have changed."""
    return body[:-1] + f', "now": "{now}"}}'


async def stream(request: web.Request) -> web.StreamResponse:
    found = await visible_alert(request)
    if isinstance(found, web.Response):
        return found
    ctx, user = request.app[CTX], principal(request).user
    if "text/event-stream" not in request.headers.get("Accept", ""):
        # A client that did not ask for a stream (curl, a script) gets the progress as it is now.
        return web.json_response(
            await snapshot(request, found, user), dumps=lambda value: json.dumps(value, ensure_ascii=False)
        )
    stopping = request.app[STOPPING]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    last = ""
    quiet = recheck = 0.0
    try:
        while not stopping.is_set():
            alert = await load_alert_async(request.app[REDIS], ctx.keys, found.id)
            if alert is None:
                break
            body = json.dumps(await snapshot(request, alert, user), ensure_ascii=False)
            if body != last:
                data = stamped(body, ctx.clock.now().isoformat())
                await response.write(f"event: progress\ndata: {data}\n\n".encode())
                last, quiet = body, 0.0
            elif quiet >= KEEPALIVE_SECONDS:
                await response.write(b": still here\n\n")
                quiet = 0.0
            if recheck >= RECHECK_SECONDS:
                if await identify(request) is None:
                    break
                recheck = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), INTERVAL_SECONDS)
            quiet += INTERVAL_SECONDS
            recheck += INTERVAL_SECONDS
    except ConnectionResetError:
        pass  # the browser went away
    return response


def add_routes(app: web.Application) -> None:
    app[STOPPING] = asyncio.Event()

    async def stop_streams(app: web.Application) -> None:
        app[STOPPING].set()

    app.on_shutdown.append(stop_streams)
    app.router.add_get(r"/api/v1/alerts/{id:\d{1,12}}/events", stream)
