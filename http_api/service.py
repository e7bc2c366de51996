"""Service routes: /api/, /healthz, /readyz, the OpenAPI document."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import reelwire
from http_api.metrics import METRICS
from http_api.routing import Call, RouteTable, bearer_token, json_response
from pubsub import cluster
from reelwire.appkeys import SERVICES, SETTINGS
from reelwire.domain.errors import NotFound
from reelwire.domain.schemas.service import ApiInfoOut, HealthOut
from storage.db import ping_fresh

routes = RouteTable()
OPENAPI = web.AppKey("openapi", dict)


@routes.get("/api", tag="service", response=ApiInfoOut)
async def api_root(call: Call[Any]) -> dict[str, Any]:
    """Name and version of this API."""
    return {
        "name": "reelwire",
        "version": reelwire.__version__,
        "message": "Reelwire API",
        "docs": "/api/docs",
    }


@routes.get("/healthz", rate=None, tag="service", response=HealthOut)
async def healthz(call: Call[Any]) -> dict[str, Any]:
    """The process is up and serving (always 200: restarting it would not help); `degraded`,
    naming the backend, while PostgreSQL or Redis does not answer its pool within a second."""
    services = call.request.app[SERVICES]

    async def pooled_postgres() -> None:
        async with services.db.acquire() as conn:
            await conn.fetchval("SELECT 1")

    checks = dict(
        await asyncio.gather(
            _check("postgres", pooled_postgres(), 1), _check("redis", services.redis.ping(), 1)
        )
    )
    if all(value == "ok" for value in checks.values()):
        return {"status": "ok"}
    return {"status": "degraded", "checks": checks}


@routes.get("/readyz", rate=None, tag="service", response=HealthOut, errors=(503,))
async def readyz(call: Call[Any]) -> web.Response:
    """PostgreSQL and Redis both answer (on a Redis Cluster: with `cluster_state:ok`); 503 naming
    the one that does not. `checks.workers` is
    how many transcoding workers heartbeat (0 does not make the service unready: uploads are
    still accepted and queued)."""
    services = call.request.app[SERVICES]

    checks = dict(
        await asyncio.gather(
            _check("postgres", ping_fresh(services.settings.database_url or ""), 2),
            _check("redis", cluster.ping(services.redis), 2),
        )
    )
    ready = all(v == "ok" for v in checks.values())
    checks["workers"] = await _worker_count(services)
    return json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


async def _check(name: str, probe: Any, seconds: float) -> tuple[str, str]:
    """(name, "ok"), or (name, "unavailable: <what>") when `probe` fails or takes too long."""
    try:
        async with asyncio.timeout(seconds):
            await probe
        return name, "ok"
    except Exception as exc:  # any failure: say which backend and what
        return name, f"unavailable: {type(exc).__name__}"


async def _worker_count(services: Any) -> str:
    """Live transcoding workers, as text ("unknown" when Redis cannot say)."""
    try:
        async with asyncio.timeout(2):
            return str(await services.jobs.live_workers())
    except Exception:
        return "unknown"


@routes.get("/metrics", rate=None, tag="service", errors=(404,))
async def metrics(call: Call[Any]) -> web.Response:
    """Prometheus metrics of this process: with `Authorization: Bearer $METRICS_TOKEN`, or
    without a token only from this machine and not through a proxy."""
    if not _may_scrape(call.request):
        raise NotFound("Not found")
    body = generate_latest(call.request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/api/openapi.json", tag="service")
async def openapi(call: Call[Any]) -> web.Response:
    """This document."""
    return json_response(call.request.app[OPENAPI])


def _may_scrape(request: web.Request) -> bool:
    token = request.app[SETTINGS].metrics_token
    if token:
        given = bearer_token(request) or ""
        return hmac.compare_digest(given.encode(), token.encode())
    forwarded = "Forwarded" in request.headers or "X-Forwarded-For" in request.headers
    try:
        local = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        local = False
    return local and not forwarded
