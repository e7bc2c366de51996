"""Each external resource opened by one async context manager, shared by the web app's cleanup
contexts and the standalone worker, so both build exactly the same Services; and the transcode
worker, handed its job functions and periodic tasks, the same for the inline and the standalone
one."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from cache.rate_limits import RateLimiter
from cache.reads import ClipFeedCache, ProfileCache, VideoCache
from cache.views import ViewCounter
from pubsub import cluster
from pubsub.bus import EventBus
from pubsub.outbox import Outbox
from reelwire import telemetry
from reelwire.domain import clips, processing, resumable_finish
from reelwire.domain.context import Services
from reelwire.domain.passwords import Passwords
from reelwire.domain.tokens import TokenCodec
from reelwire.settings import Settings
from storage.blobs import BlobStore, LocalBlobStore
from storage.db import create_pool
from transcode.queue import JobQueue
from transcode.worker import JobFunctions, Periodic, Worker

REDIS_CONNECTIONS = 200  # per process; one of them is the pub/sub subscriber's


@contextlib.asynccontextmanager
async def open_executor() -> AsyncIterator[ThreadPoolExecutor]:
    """Threads for CPU-bound work (password hashing) off the event loop."""
    executor = ThreadPoolExecutor(
        max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="reelwire-cpu"
    )
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


@contextlib.asynccontextmanager
async def open_postgres(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """The asyncpg pool."""
    assert settings.database_url is not None
    pool = await create_pool(
        settings.database_url,
        size=settings.db_pool_size,
        observe_wait=telemetry.db_acquire_seconds.observe,
    )
    try:
        yield pool
    finally:
        await pool.close()


_timers: dict[object, Any] = {}  # command -> its histogram child: labels() costs a lookup


def _timed(command: object, started: float) -> None:
    timer = _timers.get(command)
    if timer is None:
        name = command.decode() if isinstance(command, bytes) else str(command)
        timer = _timers[command] = telemetry.redis_command_seconds.labels(name.upper())
    timer.observe(time.perf_counter() - started)


class TimedRedis(aioredis.Redis):
    """redis-py's client, timing every command, script and pipeline round trip for /metrics
    (a pipeline counts once, as PIPELINE, or MULTI for a transaction)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        finally:
            _timed(args[0], started)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _TimedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


class _TimedPipeline(Pipeline):
    """A pipeline of TimedRedis: its round trip is timed as one."""

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self.command_stack:
            return await super().execute(raise_on_error)
        started = time.perf_counter()
        try:
            return await super().execute(raise_on_error)
        finally:
            _timed("MULTI" if self.is_transaction else "PIPELINE", started)


class TimedRedisCluster(RedisCluster):
    """redis-py's cluster client, timed the same way.

    During a failover its connection to the failed master can be torn down by one task while
    another is sending on it, which surfaces as an AttributeError or a RuntimeError (the
    connection's writer or transport is gone) instead of a connection error; it is turned into
    the connection error it is, so the rest of Reelwire treats it as Redis being away (writes
    held in the outbox, 503), not as a bug that answers 500 or drops a held write."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            with _torn_connection_is_a_connection_error():
                return await super().execute_command(*args, **kwargs)
        finally:
            _timed(args[0], started)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py, as it says
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]


class _ClusterPipeline(ClusterPipeline):
    """The cluster client's pipeline, with the same translation of a torn connection."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        with _torn_connection_is_a_connection_error():
            return await super().execute(raise_on_error, allow_redirections)


@contextlib.contextmanager
def _torn_connection_is_a_connection_error() -> Iterator[None]:
    # Seen in failover tests: AttributeError "'NoneType' object has no attribute 'writelines'"
    # (the writer already dropped) and RuntimeError "unable to perform operation on
    # <TCPTransport closed=True ...>; the handler is closed" (uvloop's transport closed).
    try:
        yield
    except (AttributeError, RuntimeError) as exc:
        text = str(exc)
        if "NoneType" not in text and "closed" not in text:
            raise
        raise RedisConnectionError(f"connection closed while in use ({exc})") from exc


@contextlib.asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """The Redis client (its own connection pool); a cluster client when REDIS_URL names a Redis
    Cluster node (`INFO cluster` says so at start) or has the `redis+cluster://` scheme."""
    assert settings.redis_url is not None
    url, forced = cluster.split_url(settings.redis_url)
    if forced or await cluster.detect(url):
        async with _open_cluster(url) as client:
            yield client
        return
    # A blocking pool: under a burst, a request waits for a connection instead of failing
    # (redis-py's default pool raises past 100).
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_CONNECTIONS,
        timeout=5,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=30,
        retry_on_timeout=True,
    )
    client = TimedRedis(connection_pool=pool)
    try:
        yield client
    finally:
        await client.aclose()
        await pool.aclose()


@contextlib.asynccontextmanager
async def _open_cluster(url: str) -> AsyncIterator[aioredis.Redis]:
    """redis-py's cluster client: commands go to the node owning their slot, MOVED/ASK and
    failovers refresh its slot map. Typed as plain Redis for the rest of the code: the commands
    used are the same, and what differs (sharded pub/sub, one slot per script) is decided by
    `pubsub.cluster.is_cluster`."""
    client = TimedRedisCluster.from_url(
        url,
        max_connections=REDIS_CONNECTIONS,
        socket_timeout=5,
        socket_connect_timeout=2,
    )
    try:
        await client.initialize()
        yield cast(aioredis.Redis, client)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def open_blobs(settings: Settings) -> AsyncIterator[BlobStore]:
    """S3 when S3_BUCKET is set, else local disk under the data dir."""
    if settings.s3_bucket:
        from storage.s3 import open_s3

        async with open_s3(
            settings.s3_bucket,
            region=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url,
            cdn_base_url=settings.cdn_base_url,
        ) as store:
            await store.ensure_bucket()
            yield store
    else:
        root = Path(settings.home) / "media"
        root.mkdir(parents=True, exist_ok=True)
        yield LocalBlobStore(root)


def build_services(
    settings: Settings,
    *,
    db: asyncpg.Pool,
    redis: aioredis.Redis,
    blobs: BlobStore,
    executor: ThreadPoolExecutor,
) -> Services:
    """What domain operations receive as `ctx`."""
    assert settings.jwt_secret_key is not None
    (Path(settings.home) / "tmp").mkdir(parents=True, exist_ok=True)
    tokens = TokenCodec(
        settings.jwt_secret_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl=timedelta(minutes=settings.access_token_minutes),
        refresh_ttl=timedelta(days=settings.refresh_token_days),
    )
    outbox = Outbox()
    return Services(
        settings=settings,
        db=db,
        redis=redis,
        outbox=outbox,
        tokens=tokens,
        passwords=Passwords(settings.password_hashing, executor),
        blobs=blobs,
        jobs=JobQueue(redis, outbox, lease=settings.job_lease_seconds),
        views=ViewCounter(redis, outbox),
        video_cache=VideoCache(redis, outbox),
        profile_cache=ProfileCache(redis, outbox),
        clip_feed_cache=ClipFeedCache(redis, outbox),
        limiter=RateLimiter(redis, outbox),
        bus=EventBus(
            redis, outbox, history_size=settings.history_size, history_ttl=settings.history_ttl
        ),
    )


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Every resource, for processes that are not the web app (the worker, scripts)."""
    async with contextlib.AsyncExitStack() as stack:
        executor = await stack.enter_async_context(open_executor())
        db = await stack.enter_async_context(open_postgres(settings))
        redis = await stack.enter_async_context(open_redis(settings))
        blobs = await stack.enter_async_context(open_blobs(settings))
        services = build_services(settings, db=db, redis=redis, blobs=blobs, executor=executor)
        try:
            yield services
        finally:
            await services.outbox.aclose()


def build_worker(services: Services, *, concurrency: int) -> Worker[Services]:
    """The transcode worker: what each job kind does, and what runs periodically (like arq's
    `WorkerSettings.functions` and `cron_jobs`)."""
    return Worker(
        services,
        services.jobs,
        functions={
            "video": JobFunctions(
                processing.transcode_video,
                processing.fail_video,
                retrying=processing.video_retrying,
            ),
            "image": JobFunctions(processing.process_image_clip, processing.fail_image_clip),
        },
        periodic=[
            Periodic("re-queue stale videos", processing.requeue_stale_videos, every=0),
            Periodic(
                "sweep expired clips",
                clips.sweep_expired,
                every=services.settings.clip_sweep_seconds,
            ),
            Periodic(
                "sweep resumable uploads",
                resumable_finish.sweep,
                every=resumable_finish.SWEEP_SECONDS,
            ),
        ],
        concurrency=concurrency,
        scratch_root=services.spool_dir,
    )
