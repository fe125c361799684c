"""The console's few scripts, and the charting library it draws with (signed-in users only, like the
pages). plotly.js comes inside the ``plotly`` package the service is installed with, so a duty room
with no internet still gets its charts."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from aiohttp import web

from broadcast.web.pages import PAGES_DIR

FILES = {
    "compose.js": PAGES_DIR / "console" / "compose.js",
    "progress.js": PAGES_DIR / "console" / "progress.js",
    "review.js": PAGES_DIR / "console" / "review.js",
    "drills.js": PAGES_DIR / "console" / "drills.js",
    "plotly.min.js": Path(str(files("plotly") / "package_data" / "plotly.min.js")),
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
