"""Prometheus metrics: a registry per app (never the global one) and a timing middleware."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class HttpMetrics:
    """The HTTP series of one app."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

    @classmethod
    def create(cls) -> HttpMetrics:
        """Fresh series in a fresh registry."""
        registry = CollectorRegistry(auto_describe=True)
        requests = Counter(
            "reelwire_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        latency = Histogram(
            "reelwire_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        return cls(registry, requests, latency)


METRICS = web.AppKey("metrics", HttpMetrics)


def route_label(request: web.Request) -> str:
    """The route template (`/api/users/{user_id}`), so ids never become label values."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None or request.match_info.http_exception is not None:
        return "unmatched"
    return resource.canonical.rstrip("/") or "/"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request (after the error middleware has shaped the response)."""
    started = time.perf_counter()
    response = await handler(request)
    metrics = request.app[METRICS]
    route = route_label(request)
    metrics.requests.labels(request.method, route, str(response.status)).inc()
    metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
    return response
