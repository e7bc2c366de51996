"""Prometheus metrics: what `/metrics` exposes, a timing middleware, and the sampler.

One process (no supervisor): the app's registry holds its HTTP series and the process-wide
instruments (reelwire.telemetry). Under `reelwire serve --processes N` (PROMETHEUS_MULTIPROC_DIR
set): the registry reads every child's files, so any child answers a scrape with the sum over all
of them (live processes only for gauges; counters of a child that exited stay counted, so they
never go backwards). Queue depth and the oldest job's age are the whole deployment's, read from
Redis by the process that answers the scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from reelwire import telemetry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
logger = logging.getLogger(__name__)

SAMPLE_SECONDS = 1.0  # how stale a sibling's gauges and counters may be in a scrape
QUEUE_REFRESH_SECONDS = 1.0  # Redis is asked at most this often, however often we are scraped


class _Instruments(Collector):
    """The process-wide instruments, as one collector of an app's registry."""

    def collect(self) -> Iterable[Any]:
        return telemetry.INSTRUMENTS.collect()


@dataclass(eq=False)  # collectors are registered by identity
class QueueGauges(Collector):
    """The transcode queue as last read from Redis (before the scrape being answered)."""

    depth: float | None = None
    oldest_age: float | None = None
    read_at: float = -float("inf")
    refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.depth is not None:
            yield GaugeMetricFamily(
                "reelwire_transcode_queue_depth",
                "Transcode jobs not finished yet (queued, running or waiting for a retry)",
                value=self.depth,
            )
        if self.oldest_age is not None:
            yield GaugeMetricFamily(
                "reelwire_transcode_queue_oldest_age_seconds",
                "Age of the oldest unfinished job in the transcode stream (0 when empty)",
                value=self.oldest_age,
            )


@dataclass(frozen=True)
class HttpMetrics:
    """The series of one app: `registry` is what `/metrics` exposes."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    queue: QueueGauges
    # (method, route, status) -> the two series' children: labels() is a lookup under a lock.
    children: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)

    @classmethod
    def create(cls) -> HttpMetrics:
        """Fresh HTTP series; the registry to expose (multiprocess or not)."""
        registry = CollectorRegistry(auto_describe=True)
        if telemetry.multiprocess():
            # The values are read back from the files of all processes; the objects below
            # only write them, so they are kept out of the exposed registry.
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            own = CollectorRegistry(auto_describe=True)
        else:
            registry.register(_Instruments())
            own = registry
        requests = Counter(
            "reelwire_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=own,
        )
        latency = Histogram(
            "reelwire_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=own,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        queue = QueueGauges()
        registry.register(queue)
        return cls(registry, requests, latency, queue)


METRICS = web.AppKey("metrics", HttpMetrics)
# What the sampler reads: set by the app (the hub, pool and services are not known here).
SAMPLE: web.AppKey[Callable[[], None]] = web.AppKey("metrics_sample")
QUEUE_READ: web.AppKey[Callable[[], Awaitable[tuple[float, float]]]] = web.AppKey(
    "metrics_queue_read"
)


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
    if request.path == "/metrics" and request.method == "GET":
        await before_scrape(request.app)
    response = await handler(request)
    metrics = request.app[METRICS]
    route = route_label(request)
    key = (request.method, route, response.status)
    series = metrics.children.get(key)
    if series is None:
        series = metrics.children[key] = (
            metrics.requests.labels(request.method, route, str(response.status)),
            metrics.latency.labels(request.method, route),
        )
    series[0].inc()
    series[1].observe(time.perf_counter() - started)
    return response


async def before_scrape(app: web.Application) -> None:
    """This process's values up to date, and the queue read from Redis (at most once a
    second, however often `/metrics` is asked: it answers strangers with 404 but comes here)."""
    sample(app)
    queue = app[METRICS].queue
    read = app.get(QUEUE_READ)
    if read is None or time.monotonic() - queue.read_at < QUEUE_REFRESH_SECONDS:
        return
    async with queue.refreshing:
        if time.monotonic() - queue.read_at < QUEUE_REFRESH_SECONDS:
            return
        queue.read_at = time.monotonic()
        try:
            async with asyncio.timeout(1):
                queue.depth, queue.oldest_age = await read()
        except Exception as exc:  # Redis away: the queue series are left out of this scrape
            logger.debug("reading the transcode queue for metrics failed: %r", exc)
            queue.depth = queue.oldest_age = None


def sample(app: web.Application) -> None:
    """Publish this process's counts and set its gauges (cheap: no I/O)."""
    telemetry.flush()
    sampler = app.get(SAMPLE)
    if sampler is not None:
        try:
            sampler()
        except Exception:
            logger.exception("sampling metrics failed")


async def sample_forever(app: web.Application, stopping: asyncio.Event) -> None:
    """Every SAMPLE_SECONDS, so a scrape answered by a sibling sees this process's values."""
    while not stopping.is_set():
        sample(app)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), SAMPLE_SECONDS)
    sample(app)
