"""The console's few scripts, and the charting library it draws with, served from the pages folder
(signed-in users only, like the pages). The library is a pinned copy with its licence beside it
(pages/vendor/), so a duty room with no internet still gets its charts."""

from __future__ import annotations

from aiohttp import web

from broadcast.pages import PAGES_DIR

FILES = {
    "compose.js": PAGES_DIR / "console" / "compose.js",
    "progress.js": PAGES_DIR / "console" / "progress.js",
    "uPlot.iife.min.js": PAGES_DIR / "vendor" / "uplot" / "uPlot.iife.min.js",
    "uPlot.min.css": PAGES_DIR / "vendor" / "uplot" / "uPlot.min.css",
}


async def script(request: web.Request) -> web.StreamResponse:
    path = FILES.get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    response = web.FileResponse(path)
    response.content_type = "text/css" if path.suffix == ".css" else "text/javascript"
    response.headers["Cache-Control"] = "no-cache"
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/static/{name}", script)
