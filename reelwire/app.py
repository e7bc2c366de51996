"""The app factory: one cleanup context per resource, opened in order, closed in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from http_api.metrics import (
    METRICS,
    QUEUE_READ,
    SAMPLE,
    HttpMetrics,
    metrics_middleware,
    sample_forever,
)
from http_api.middlewares import (
    CSP,
    add_response_headers,
    content_security_policy,
    error_middleware,
    request_id_middleware,
)
from http_api.routes import setup_routes
from http_api.uploads import setup_drain
from realtime.endpoint import HUB, setup_realtime
from reelwire import resources
from reelwire.appkeys import BLOBS, DB, EXECUTOR, REDIS, SERVICES, SETTINGS
from reelwire.domain import videos
from reelwire.domain.errors import is_outage
from reelwire.settings import Settings
from reelwire.telemetry import (
    db_pool_in_use,
    db_pool_max,
    db_pool_size,
    outbox_depth,
    ws_connections,
    ws_subscriptions,
)

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """A complete Reelwire app for resolved settings (database, Redis and secret all known)."""
    if not (settings.database_url and settings.redis_url and settings.jwt_secret_key):
        raise ValueError("create_app needs database_url, redis_url and jwt_secret_key resolved")
    app = web.Application(
        middlewares=[request_id_middleware, metrics_middleware, error_middleware],
        client_max_size=settings.max_json_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = HttpMetrics.create()
    app[CSP] = content_security_policy(settings.media_origins)
    app.on_response_prepare.append(add_response_headers)
    app.cleanup_ctx.extend(
        [
            executor_ctx,
            postgres_ctx,
            redis_ctx,
            blobs_ctx,
            services_ctx,
            view_flusher_ctx,
            inline_worker_ctx,
            worker_watch_ctx,
            metrics_ctx,
        ]
    )
    setup_realtime(app)  # after the services it uses, so it closes before them
    setup_routes(app, settings.cors_origins)
    setup_drain(app, settings.upload_drain_seconds)
    return app


async def executor_ctx(app: web.Application) -> AsyncIterator[None]:
    """Threads for CPU-bound work."""
    async with resources.open_executor() as executor:
        app[EXECUTOR] = executor
        yield


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    """The asyncpg pool."""
    async with resources.open_postgres(app[SETTINGS]) as pool:
        app[DB] = pool
        yield


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Redis client."""
    async with resources.open_redis(app[SETTINGS]) as client:
        app[REDIS] = client
        yield


async def blobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """Blob storage: local disk or S3."""
    async with resources.open_blobs(app[SETTINGS]) as store:
        app[BLOBS] = store
        yield


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """What domain operations receive as `ctx`."""
    app[SERVICES] = resources.build_services(
        app[SETTINGS], db=app[DB], redis=app[REDIS], blobs=app[BLOBS], executor=app[EXECUTOR]
    )
    yield


async def view_flusher_ctx(app: web.Application) -> AsyncIterator[None]:
    """Writes counted views to PostgreSQL every VIEW_FLUSH_MS, and once more on shutdown."""
    ctx = app[SERVICES]
    stopping = asyncio.Event()

    async def flush_until_stopped() -> None:
        # One log line when flushing starts failing (or fails differently), one when it
        # recovers: not a traceback per attempt.
        failing: type[BaseException] | None = None
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), ctx.settings.view_flush_ms / 1000)
            try:
                await videos.flush_views(ctx)
            except Exception as exc:
                logger.debug("flush attempt failed: %r", exc)
                if type(exc) is not failing and is_outage(exc):
                    logger.warning("flushing views paused, a backend is unavailable: %r", exc)
                elif type(exc) is not failing:
                    logger.exception("flushing views failed; the batch is kept for the next try")
                failing = type(exc)
            else:
                if failing is not None:
                    logger.info("flushing views again")
                failing = None

    task = asyncio.create_task(flush_until_stopped(), name="view-flusher")
    yield
    stopping.set()
    await task


async def inline_worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """In the embedded default, `serve` transcodes too; the task is cancelled and awaited."""
    settings = app[SETTINGS]
    if not settings.runs_inline_worker:
        yield
        return
    worker = resources.build_worker(app[SERVICES], concurrency=settings.transcode_concurrency)
    task = asyncio.create_task(worker.run(), name="inline-transcode-worker")
    yield
    worker.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def worker_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """One warning line when uploads wait and no transcoding worker heartbeats (and one when
    a worker is back), so a deployment without `reelwire worker` does not fail silently."""
    from transcode.presence import watch_workers

    stopping = asyncio.Event()
    watch = watch_workers(app[SERVICES].jobs, stopping=stopping)
    task = asyncio.create_task(watch, name="worker-watch")
    yield
    stopping.set()  # not cancel(): redis-py can swallow a cancellation inside its calls
    try:
        await asyncio.wait_for(task, 10)
    except (TimeoutError, asyncio.CancelledError):
        logger.warning("the worker watch did not stop in time")


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """What /metrics reads at scrape time, and the sampler that keeps this process's share of
    a multi-process scrape fresh."""
    ctx = app[SERVICES]
    pool = app[DB]

    def sample() -> None:
        hub = app.get(HUB)
        if hub is not None:
            ws_connections.set(len(hub.connections))
            feeds = hub.channels.feeds.values()
            ws_subscriptions.set(sum(len(feed.members) for feed in feeds))
        outbox_depth.set(ctx.outbox.backlog)
        size = pool.get_size()
        db_pool_size.set(size)
        db_pool_in_use.set(size - pool.get_idle_size())
        db_pool_max.set(pool.get_max_size())

    async def read_queue() -> tuple[float, float]:
        return await ctx.jobs.backlog(), await ctx.jobs.oldest_age()

    app[SAMPLE] = sample
    app[QUEUE_READ] = read_queue
    stopping = asyncio.Event()
    task = asyncio.create_task(sample_forever(app, stopping), name="metrics-sampler")
    yield
    stopping.set()
    await task
