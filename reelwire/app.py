"""The app factory: one cleanup context per resource, opened in order, closed in reverse."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import redis.asyncio as aioredis
from aiohttp import web

from http_api.metrics import METRICS, HttpMetrics, metrics_middleware
from http_api.middlewares import add_response_headers, error_middleware, request_id_middleware
from http_api.routes import setup_routes
from reelwire.appkeys import DB, EXECUTOR, REDIS, SERVICES, SETTINGS
from reelwire.domain.context import Services
from reelwire.domain.passwords import Passwords
from reelwire.domain.tokens import TokenCodec
from reelwire.settings import Settings
from storage.db import create_pool

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
    app.on_response_prepare.append(add_response_headers)
    app.cleanup_ctx.extend([executor_ctx, postgres_ctx, redis_ctx, services_ctx])
    setup_routes(app, settings.cors_origins)
    return app


async def executor_ctx(app: web.Application) -> AsyncIterator[None]:
    """Threads for CPU-bound work (password hashing) off the event loop."""
    executor = ThreadPoolExecutor(
        max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="reelwire-cpu"
    )
    app[EXECUTOR] = executor
    yield
    executor.shutdown(wait=True, cancel_futures=True)


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    """The asyncpg pool."""
    settings = app[SETTINGS]
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, size=settings.db_pool_size)
    app[DB] = pool
    yield
    await pool.close()


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Redis client (its own connection pool)."""
    settings = app[SETTINGS]
    assert settings.redis_url is not None
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry_on_timeout=True,
    )
    app[REDIS] = client
    yield
    await client.aclose()


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """What domain operations receive as `ctx`."""
    settings = app[SETTINGS]
    assert settings.jwt_secret_key is not None
    tokens = TokenCodec(
        settings.jwt_secret_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl=timedelta(minutes=settings.access_token_minutes),
        refresh_ttl=timedelta(days=settings.refresh_token_days),
    )
    app[SERVICES] = Services(
        settings=settings,
        db=app[DB],
        redis=app[REDIS],
        tokens=tokens,
        passwords=Passwords(settings.password_hashing, app[EXECUTOR]),
    )
    yield
