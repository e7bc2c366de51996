"""setup_routes(app): every REST route, the OpenAPI document, static files and CORS."""

from __future__ import annotations

from pathlib import Path

import aiohttp_cors
from aiohttp import web

from http_api import (
    auth,
    clips,
    comments,
    direct_uploads,
    docs,
    library,
    media_files,
    posts,
    service,
    sockets,
    tus,
    tus_docs,
    tus_headers,
    users,
    videos,
    webapp,
    webhooks,
)
from http_api.openapi import build_openapi
from http_api.routing import RouteTable

STATIC_DIR = Path(__file__).parent / "static"
CORS_MAX_AGE = 3600  # browsers keep a preflight this long (Chromium caps it at 2 hours)


def route_table() -> RouteTable:
    """All REST routes, in one explicit list."""
    table = RouteTable()
    modules = (
        service,
        auth,
        users,
        videos,
        comments,
        clips,
        posts,
        library,
        direct_uploads,
        tus,
        webhooks,
        media_files,
        sockets,
        docs,
        webapp,
    )
    for module in modules:
        table.extend(module.routes)
    return table


def setup_routes(app: web.Application, cors_origins: tuple[str, ...]) -> None:
    """Register routes, the generated OpenAPI document, static files, the web app and CORS."""
    table = route_table()
    resources = table.register(app)
    app[service.OPENAPI] = build_openapi(table.routes)
    app[service.OPENAPI]["paths"]["/ws"] = sockets.WEBSOCKET_OPERATION
    app[service.OPENAPI]["paths"][tus.COLLECTION]["options"] = tus_docs.OPTIONS_OPERATION
    tus.setup_tus(app)
    app.router.add_static("/static", STATIC_DIR, name="static")
    webapp.setup_static(app)
    # Media is for players on any page: it answers every origin itself (no credentials used).
    media = [r for r in resources if r.canonical.startswith("/media/")]
    for resource in media:
        resource.add_route("OPTIONS", media_files.media_preflight)
    app.on_response_prepare.append(media_files.add_media_cors)
    if not cors_origins:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials="*" not in cors_origins,
        expose_headers=(
            "X-Request-ID",
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "RateLimit-Policy",
            *tus_headers.EXPOSED_HEADERS,
        ),
        allow_headers="*",
        max_age=CORS_MAX_AGE,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in cors_origins})
    for resource in resources:
        if resource in media:
            continue
        # Every method of a path is on one resource, so one preflight answers all of them.
        for route in list(resource):
            cors.add(route)
