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
    library,
    media_files,
    posts,
    service,
    sockets,
    users,
    videos,
    webhooks,
)
from http_api.openapi import build_openapi
from http_api.routing import RouteTable

STATIC_DIR = Path(__file__).parent / "static"


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
        webhooks,
        media_files,
        sockets,
    )
    for module in modules:
        table.extend(module.routes)
    return table


def setup_routes(app: web.Application, cors_origins: tuple[str, ...]) -> None:
    """Register routes, the generated OpenAPI document, /static and CORS."""
    table = route_table()
    added = table.register(app)
    app[service.OPENAPI] = build_openapi(table.routes)
    app[service.OPENAPI]["paths"]["/ws"] = sockets.WEBSOCKET_OPERATION
    app.router.add_static("/static", STATIC_DIR, name="static")
    if cors_origins:
        options = aiohttp_cors.ResourceOptions(
            allow_credentials="*" not in cors_origins,
            expose_headers=(
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ),
            allow_headers="*",
            max_age=600,
        )
        cors = aiohttp_cors.setup(app, defaults={origin: options for origin in cors_origins})
        for route in added:
            cors.add(route)
