"""The API as a person reads it: `/api/docs`, Swagger UI over /api/openapi.json beside the
WebSocket protocol's AsyncAPI document (`/api/asyncapi.json`, served by `realtime.asyncapi`).

The page is a shell; its code is static (`http_api/web/docs/`, and Swagger UI vendored under
`http_api/web/vendor/swagger-ui/`, both served at `/app/`) so it runs under a CSP without
inline scripts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from http_api.openapi import responds_with
from http_api.routing import Call, RouteTable
from reelwire.domain.urls import ASYNCAPI_URL, DOCS_URL

routes = RouteTable()

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Reelwire API docs</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/app/vendor/swagger-ui/swagger-ui.css">
  <link rel="stylesheet" href="/app/docs/docs.css">
</head>
<body>
  <header class="docs-bar">
    <span class="docs-title">Reelwire API</span>
    <nav aria-label="Documents">
      <a href="#rest">REST</a>
      <a href="#websocket">WebSocket</a>
      <a href="/">Web app</a>
      <a href="/api/openapi.json">OpenAPI JSON</a>
      <a href="/api/asyncapi.json">AsyncAPI JSON</a>
    </nav>
  </header>
  <main>
    <section id="rest" aria-labelledby="rest-title">
      <h2 id="rest-title" class="docs-section">REST
        <small>OpenAPI 3.1, generated from the routes' own schemas</small></h2>
      <div id="swagger-ui"><p class="docs-note">Loading the OpenAPI document...</p></div>
    </section>
    <section id="websocket" aria-labelledby="ws-title">
      <h2 id="ws-title" class="docs-section">WebSocket <code>/ws</code>
        <small>AsyncAPI 3.0, generated from the models the server validates messages with</small>
      </h2>
      <div id="asyncapi"><p class="docs-note">Loading the AsyncAPI document...</p></div>
    </section>
  </main>
  <script src="/app/vendor/swagger-ui/swagger-ui-bundle.js"></script>
  <script src="/app/docs/docs.js"></script>
</body>
</html>
"""


@routes.get(DOCS_URL, tag="service", rate=None)
@responds_with("text/html")
async def docs_page(call: Call[Any]) -> web.Response:
    """This API's documentation, for reading in a browser."""
    return web.Response(text=_PAGE, content_type="text/html")


# Served by the WebSocket transport (realtime.asyncapi), which generates it from its own message
# models; declared here so the OpenAPI document lists it and CORS covers it like any REST route.
@routes.get(ASYNCAPI_URL, tag="realtime", served_elsewhere=True)
async def asyncapi(call: Call[Any]) -> web.Response:
    """The WebSocket protocol (`/ws`) as an AsyncAPI 3.0 document."""
    raise AssertionError("realtime.asyncapi serves this route")
