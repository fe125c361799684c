"""The console's few scripts, served from the pages folder (signed-in users only, like the pages)."""

from __future__ import annotations

from aiohttp import web

from broadcast.pages import PAGES_DIR

SCRIPTS = frozenset({"compose.js", "progress.js"})


async def script(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in SCRIPTS:
        raise web.HTTPNotFound()
    response = web.FileResponse(PAGES_DIR / "console" / name)
    response.content_type = "text/javascript"
    response.headers["Cache-Control"] = "no-cache"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/static/{name}", script)
