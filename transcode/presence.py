"""Whether anyone is transcoding: the web side's view of the workers' heartbeats.

Workers heartbeat into the queue (see `JobQueue.beat`). When uploads are queued and no worker
is alive (say, external PostgreSQL and Redis and no `reelwire worker` running), nothing would
otherwise say so: `watch_workers` logs one warning when that starts and one line when it ends,
and `WAITING_FOR_WORKER` is what a video's status says meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.exceptions

from transcode.queue import JobQueue

logger = logging.getLogger(__name__)

WAITING_FOR_WORKER = "Waiting for a transcoding worker: none is running"
CHECK_EVERY_SECONDS = 5.0
GRACE_SECONDS = 15.0


async def watch_workers(
    queue: JobQueue,
    *,
    every: float = CHECK_EVERY_SECONDS,
    grace: float = GRACE_SECONDS,
    stopping: asyncio.Event | None = None,
) -> None:
    """Run until `stopping` is set (or cancelled): warn once when jobs have been queued for
    `grace` seconds with no live worker, and say so once when a worker is back. Redis errors
    are not this task's to report (it says nothing while it cannot tell). Stop it with the
    event: redis-py can swallow a cancellation that lands inside one of its calls."""
    loop = asyncio.get_running_loop()
    stopping = stopping or asyncio.Event()
    stranded_since: float | None = None
    warned = False
    while not stopping.is_set():
        try:
            backlog = await queue.backlog()
            workers = await queue.live_workers() if backlog else None
        except (redis.exceptions.RedisError, OSError):
            stranded_since = None
        else:
            if backlog and workers == 0:
                stranded_since = stranded_since if stranded_since is not None else loop.time()
                if not warned and loop.time() - stranded_since >= grace:
                    warned = True
                    logger.warning(
                        "%d transcode job(s) queued and no transcoding worker is running: "
                        "uploads stay pending until one starts (run `reelwire worker` with the "
                        "same DATABASE_URL and REDIS_URL, or INLINE_WORKER=true)",
                        backlog,
                    )
            else:
                stranded_since = None
                if warned:
                    warned = False
                    if workers:
                        logger.info("a transcoding worker is running (%d live)", workers)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every)


async def waiting_reason(queue: JobQueue) -> str | None:
    """`WAITING_FOR_WORKER` when no worker is alive, else None (None too when Redis cannot
    say)."""
    try:
        live = await queue.live_workers()
    except (redis.exceptions.RedisError, OSError):
        return None
    return WAITING_FOR_WORKER if live == 0 else None
