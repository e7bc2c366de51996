"""The web app: `GET /` is its page, `/app/<path>` its modules, styles and vendored libraries.

Plain files, no build step: they are served as they are in `http_api/web/`, revalidated with
ETags (`no-cache`), so a new release is picked up on the next load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from http_api.routing import Call, RouteTable

WEB_DIR = Path(__file__).parent / "web"
APP_PREFIX = "/app"

routes = RouteTable()


@routes.get("/", tag="service", rate=None, head=True)
async def web_app(call: Call[Any]) -> web.StreamResponse:
    """The Reelwire web app (HTML)."""
    index = WEB_DIR / "index.html"
    if not index.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        index, headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"}
    )


def setup_static(app: web.Application) -> None:
    """Serve the app's files under /app, revalidated on every load."""
    if WEB_DIR.is_dir():
        app.router.add_static(APP_PREFIX, WEB_DIR, name="web-app", append_version=False)
    app.on_response_prepare.append(_revalidate_app_files)


async def _revalidate_app_files(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith(APP_PREFIX + "/"):
        response.headers.setdefault("Cache-Control", "no-cache")
