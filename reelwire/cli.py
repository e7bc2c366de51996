"""Reelwire: a realtime backend for short-video and clip apps (REST + WebSocket on one port)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pubsub.cluster import split_url
from reelwire.embedded import (
    DataDirLock,
    EmbeddedError,
    EmbeddedPostgres,
    EmbeddedRedis,
    Keeper,
    load_or_create_secret,
)
from reelwire.settings import Settings, SettingsError

logger = logging.getLogger("reelwire")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(
        prog="reelwire",
        description=__doc__,
        epilog="Configuration comes from the environment (README.md, 'Configuration'). "
        "`reelwire <command> --help` describes a command.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, title="commands", metavar="<command>"
    )
    serve = commands.add_parser(
        "serve",
        help="run the web server (REST + WebSocket; embedded PostgreSQL and Redis by default)",
        description="Run the web server. Without DATABASE_URL / REDIS_URL it starts PostgreSQL "
        "and Redis under REELWIRE_HOME, applies migrations and runs a transcode worker too.",
    )
    serve.add_argument("--host", help="overrides HOST")
    serve.add_argument("--port", type=int, help="overrides PORT")
    serve.add_argument(
        "--processes",
        type=int,
        help="web processes sharing the port (SO_REUSEPORT); default WEB_CONCURRENCY or 1",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="apply pending migrations first (always done on the embedded default)",
    )
    commands.add_parser(
        "migrate",
        help="apply pending database migrations (safe to run from several releases at once)",
        description="Apply pending SQL migrations under an advisory lock.",
    )
    import loadtest

    loadtest.add_arguments(
        commands.add_parser(
            "loadtest",
            help="many WebSocket viewers (and HLS players, likes, comments) against a server "
            "on this machine",
            description="Connect --viewers sockets (or players) over --videos videos in a "
            "scenario (steady, ramp, burst, reconnect-storm, restart), optionally send views, "
            "likes and comments, print live progress and then a JSON summary; --slo makes "
            "the exit status a verdict. README.md, 'Load tester'.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
    )
    worker = commands.add_parser(
        "worker",
        help="run transcode jobs from the queue (needs DATABASE_URL and REDIS_URL)",
        description="Take transcode jobs from the shared queue until stopped.",
    )
    worker.add_argument("--concurrency", type=int, help="overrides TRANSCODE_CONCURRENCY")
    args = parser.parse_args(argv)
    if args.command == "loadtest":
        return loadtest.run(args)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"reelwire: configuration error: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level, settings.log_format)
    if args.command in ("serve", "worker"):
        from transcode.ffmpeg import FFmpegUnavailable, check_ffmpeg

        try:
            check_ffmpeg()  # once, before serving: a missing or unfit FFmpeg is one clear line
        except FFmpegUnavailable as exc:
            print(f"reelwire: {exc}", file=sys.stderr)
            return 1
    try:
        if args.command == "migrate":
            return _migrate(settings)
        if args.command == "worker":
            if args.concurrency:
                settings = settings.replace(transcode_concurrency=max(1, args.concurrency))
            return _worker(settings)
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v}
        settings = settings.replace(**overrides)
        processes = args.processes or settings.web_concurrency
        if processes > 1:
            from reelwire.supervisor import PortInUse, check_port_free, serve_many

            try:  # before starting anything: a busy port is one line, not a half start
                check_port_free(settings.host, settings.port)
            except PortInUse as exc:
                print(f"reelwire: {exc}", file=sys.stderr)
                return 1
            with backends(settings) as resolved:
                if not wait_for_backends(resolved):
                    return 1
                if not _prepare_database(settings, resolved, migrate=args.migrate):
                    return 1
                _log_backends(settings, resolved)
                return serve_many(resolved, processes)
        return _serve(settings, migrate=args.migrate, reuse_port=args.reuse_port)
    except EmbeddedError as exc:
        print(f"reelwire: {exc}", file=sys.stderr)
        return 1


def _configure_logging(level: str, fmt: str = "TEXT") -> None:
    from reelwire import logs

    logs.configure(level, fmt)


@contextlib.contextmanager
def backends(settings: Settings) -> Iterator[Settings]:
    """Start whatever is embedded, yield fully resolved settings, stop it all on exit."""
    # Decided on the configured settings: once resolved, they name a database URL either way.
    settings = settings.replace(inline_worker=settings.runs_inline_worker)
    if not (settings.embedded_postgres or settings.embedded_redis):
        yield settings
        return
    home = Path(settings.home)
    lock = DataDirLock(home)
    lock.acquire()
    postgres = EmbeddedPostgres(home / "postgres") if settings.embedded_postgres else None
    redis = EmbeddedRedis(home / "redis") if settings.embedded_redis else None
    try:
        changes: dict[str, object] = {}
        if postgres is not None:
            postgres.start()
            changes["database_url"] = postgres.url
        if redis is not None:
            redis.start()
            changes["redis_url"] = redis.url
        if settings.jwt_secret_key is None:
            changes["jwt_secret_key"] = load_or_create_secret(home)
        keeper = Keeper([s for s in (postgres, redis) if s is not None])
        keeper.start()
        try:
            yield settings.replace(**changes)
        finally:
            keeper.stop()
    finally:
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
        lock.release()


def _migrate(settings: Settings) -> int:
    from storage.migrate import migrate_url

    with backends(settings) as resolved:
        assert resolved.database_url is not None
        if not wait_for_backends(resolved, redis=False):  # migrating needs PostgreSQL only
            return 1
        applied = asyncio.run(migrate_url(resolved.database_url))
    print(f"applied {len(applied)} migration(s)" + (f": {applied}" if applied else ""))
    return 0


def _serve(settings: Settings, *, migrate: bool, reuse_port: bool = False) -> int:
    from aiohttp import web

    from reelwire.app import create_app

    with backends(settings) as resolved:
        if not wait_for_backends(resolved):
            return 1
        if not _prepare_database(settings, resolved, migrate=migrate):
            return 1
        if not reuse_port:
            _log_backends(settings, resolved)
        from http_api.uploads import drain_on_signals

        loop = _new_loop()
        app = create_app(resolved)
        drain_on_signals(app)
        app.on_startup.append(_tune_gc_soon)
        web.run_app(
            app,
            handle_signals=False,  # drain_on_signals: uploads in flight finish first
            host=resolved.host,
            port=resolved.port,
            reuse_port=reuse_port or None,
            # Room for a reconnect storm's SYNs (aiohttp's default is 128: past it the kernel
            # answers with SYN cookies or drops, and clients wait seconds to retry); the kernel
            # caps it at net.core.somaxconn. Each of `--processes N` listens with its own.
            backlog=LISTEN_BACKLOG,
            shutdown_timeout=10,
            # A connection with no request in progress (idle keep-alive, or headers that trickle
            # in) is dropped after this: a stranger cannot hold sockets open by sending slowly.
            keepalive_timeout=resolved.http_idle_timeout,
            print=None,
            loop=loop,
            access_log=logging.getLogger("aiohttp.access"),
        )
    return 0


LISTEN_BACKLOG = 4096
GC_THRESHOLDS = (50_000, 20, 10)  # CPython's defaults: (700, 10, 10)
GC_TUNE_AFTER = 1.0  # seconds after start-up: listening already, every resource open


async def _tune_gc_soon(app: object) -> None:
    asyncio.get_running_loop().call_later(GC_TUNE_AFTER, tune_gc)


def tune_gc() -> None:
    """The garbage collector, set for a server that holds thousands of sockets.

    What is alive once the server has started (modules, models, pools) lives as long as the
    process: it is moved out of the collector's sight. And each socket leaves a few hundred
    objects behind for its lifetime, which the default thresholds (a young collection every 700
    new objects) walk again and again as they age: a crowd of sockets connecting spent about a
    quarter of its CPU in the collector. Young collections now come every 50,000 new objects
    (a few milliseconds each), and cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def wait_for_backends(settings: Settings, *, redis: bool = True) -> bool:
    """PostgreSQL and Redis answer, or we wait for them with backoff up to
    STARTUP_TIMEOUT_SECONDS: one line when waiting starts (or the reason changes), one when
    giving up; never a traceback for a server that is simply not there (yet)."""
    deadline = time.monotonic() + settings.startup_timeout
    delay, said = 0.5, ""
    while True:
        problems = asyncio.run(_probe_backends(settings, redis=redis))
        if not problems:
            if said:
                print("reelwire: the backends answer now", file=sys.stderr)
            return True
        line = "; ".join(problems)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print(f"reelwire: gave up after {settings.startup_timeout} s: {line}", file=sys.stderr)
            return False
        if line != said:
            print(
                f"reelwire: waiting for {line} (retrying for up to {settings.startup_timeout} s)",
                file=sys.stderr,
            )
            said = line
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 5.0)


async def _probe_backends(settings: Settings, *, redis: bool) -> list[str]:
    import asyncpg
    import redis.asyncio as aioredis

    problems = []
    assert settings.database_url is not None
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=5)
        await conn.close()
    except Exception as exc:  # any reason it cannot be reached: say it in one line
        problems.append(f"PostgreSQL at {display_url(settings.database_url)} ({_reason(exc)})")
    if not redis or settings.redis_url is None:
        return problems
    # A `redis+cluster://` URL names one node; any node answers PING.
    client = aioredis.Redis.from_url(split_url(settings.redis_url)[0], socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        problems.append(f"Redis at {display_url(settings.redis_url)} ({_reason(exc)})")
    finally:
        await client.aclose()
    return problems


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def _prepare_database(configured: Settings, resolved: Settings, *, migrate: bool) -> bool:
    """Migrate (embedded default, or asked), or refuse to serve a database that lacks some."""
    from storage.migrate import load_migrations, migrate_url, pending_url

    assert resolved.database_url is not None
    if configured.embedded_postgres or migrate:
        asyncio.run(migrate_url(resolved.database_url))
        return True
    pending = asyncio.run(pending_url(resolved.database_url, load_migrations()))
    if pending:
        print(
            f"reelwire: the database lacks migrations {pending}; run `reelwire migrate`"
            " (the Procfile's release step) or start with --migrate",
            file=sys.stderr,
        )
        return False
    return True


def _worker(settings: Settings) -> int:
    if settings.embedded_postgres or settings.embedded_redis:
        print(
            "reelwire: `reelwire worker` needs DATABASE_URL and REDIS_URL (on the embedded "
            "default, `reelwire serve` runs a worker itself)",
            file=sys.stderr,
        )
        return 2
    if not wait_for_backends(settings):
        return 1
    from reelwire.resources import build_worker, open_services

    async def run() -> None:
        async with open_services(settings) as services:
            worker = build_worker(services, concurrency=settings.transcode_concurrency)
            task = asyncio.create_task(worker.run())
            loop = asyncio.get_running_loop()

            def stop() -> None:
                worker.stop()
                task.cancel()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        logger.info("worker stopped")

    loop = _new_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return 0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform; asyncio's loop works too
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _log_backends(configured: Settings, resolved: Settings) -> None:
    for line in banner(configured, resolved):
        logger.info("%s", line)


def banner(configured: Settings, resolved: Settings) -> list[str]:
    """What this server runs on and where to open it, as start-up lines."""
    home = configured.home
    if configured.embedded_postgres:
        database = f"embedded PostgreSQL in {home}/postgres"
    else:
        database = f"PostgreSQL at {display_url(configured.database_url or '')}"
    if configured.embedded_redis:
        redis = f"embedded Redis in {home}/redis"
    else:
        redis = f"Redis at {display_url(configured.redis_url or '')}"
    if resolved.s3_bucket:
        endpoint = resolved.s3_endpoint_url or f"AWS S3 ({resolved.s3_region})"
        media = f"S3 bucket {resolved.s3_bucket!r} at {display_url(endpoint)}"
    else:
        media = f"local disk in {home}/media"
    if resolved.cdn_base_url:
        media += f", public URLs under {resolved.cdn_base_url}"
    from transcode.ffmpeg import check_ffmpeg

    transcode = (
        "in the web process" if resolved.runs_inline_worker else "by `reelwire worker` processes"
    )
    transcode += f", with {check_ffmpeg()}"
    host = resolved.host
    open_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    base = f"http://{'[' + open_host + ']' if ':' in open_host else open_host}:{resolved.port}"
    listening = f"Reelwire {_version()} listening on {host or '*'}:{resolved.port}"
    if open_host != host:
        listening += " (every interface)"
    return [
        listening,
        f"  database:  {database}",
        f"  redis:     {redis}",
        f"  media:     {media}",
        f"  transcode: {transcode}",
        f"  web app:   {base}/",
        f"  API docs:  {base}/api/docs",
    ]


def display_url(url: str) -> str:
    """A URL fit for a log: no password, no query (which may carry one)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url.split("?", 1)[0]
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _version() -> str:
    import reelwire

    return reelwire.__version__


if __name__ == "__main__":
    raise SystemExit(main())
