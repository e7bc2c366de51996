"""How one process gets by while Redis is away: PostgreSQL is the source of truth, Redis only
speeds things up and carries events, so an outage must cost speed, never a write.

Two kinds of Redis work, two rules:

- **Writes that must not be lost** (an event, a cache fence, a revoked session, a queued job)
  go through `run`: straight to Redis when it answers, otherwise into one bounded in-order
  outbox that a single task drains, oldest first, once Redis answers again.
- **Reads that PostgreSQL (or this process) can answer instead** (a cached video, a rate limit,
  a revocation check) go through `read` with a fallback. After one connection error Redis is
  skipped for `PROBE_SECONDS`, so requests do not each wait on a dead server; while the outbox
  still holds anything, Redis is skipped too, because a fence it holds may not have landed yet
  and the cache could still hold the row from before a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import BusyLoadingError, ClusterDownError, ClusterError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[], Awaitable[object]]

REDIS_DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    # A Redis Cluster with a master down (CLUSTERDOWN / MASTERDOWN while a replica is promoted),
    # or redis-py's cluster client out of redirections and retries: Redis is away for now.
    ClusterDownError,
    ClusterError,
    OSError,
)
LIMIT = 10_000
PROBE_SECONDS = 0.5
RETRY_CAP_SECONDS = 1.0
UNEXPECTED_ATTEMPTS = 5  # a held write failing otherwise than "Redis is away" is tried this often


class Outbox:
    """Redis writes held in order while it is away, and the judgement of whether it is."""

    def __init__(self, *, limit: int = LIMIT) -> None:
        self._limit = limit
        self._held: deque[Op] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._skip_until = 0.0
        self.down_since: float | None = None  # monotonic time of the first failure, or None
        self.dropped = 0
        self.fallbacks = 0  # reads answered without Redis

    @property
    def backlog(self) -> int:
        """Writes waiting for Redis to come back."""
        return len(self._held)

    @property
    def usable(self) -> bool:
        """Whether a read should try Redis now."""
        return not self._held and time.monotonic() >= self._skip_until

    async def run(self, op: Op) -> None:
        """Do a Redis write now, or hold it (in order, after anything held already)."""
        if not self._held:
            try:
                await op()
                self._answered()
                return
            except REDIS_DOWN as exc:
                self._failed(exc)
        self._hold(op)

    async def read(self, op: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]) -> T:
        """`op` from Redis, or `fallback` when Redis is away (or was a moment ago)."""
        if self.usable:
            try:
                result = await op()
                self._answered()
                return result
            except REDIS_DOWN as exc:
                self._failed(exc)
        self.fallbacks += 1
        return await fallback()

    async def attempt(self, op: Callable[[], Awaitable[T]]) -> T:
        """A read only Redis can answer: done now whatever the outbox holds, its failure raised
        and noted as `read` notes one (reads skip Redis for a moment)."""
        try:
            result = await op()
        except REDIS_DOWN as exc:
            self._failed(exc)
            raise
        self._answered()
        return result

    async def aclose(self, timeout: float = 2.0) -> None:
        """Give held writes a last chance, then stop."""
        if self._drainer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._drainer), timeout)
        if not self._drainer.done():
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            logger.warning("%d Redis write(s) not done: Redis did not come back", self.backlog)

    def _failed(self, exc: BaseException) -> None:
        self._skip_until = time.monotonic() + PROBE_SECONDS
        if self.down_since is None:
            self.down_since = time.monotonic()
            logger.warning("Redis unreachable, getting by without it: %r", exc)

    def _answered(self) -> None:
        if self.down_since is not None and not self._held:
            logger.info("Redis is back after %.1f s", time.monotonic() - self.down_since)
            self.down_since = None

    def _hold(self, op: Op) -> None:
        if len(self._held) >= self._limit:
            self._held.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.error("Redis outbox full: %d oldest write(s) dropped", self.dropped)
        self._held.append(op)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="redis-outbox")

    async def _drain(self) -> None:
        delay = 0.1
        surprises = 0  # failures of the head write that do not say "Redis is away"
        while self._held:
            try:
                await self._held[0]()
            except REDIS_DOWN as exc:
                self._failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_SECONDS)
                continue
            except Exception as exc:
                # Perhaps a client library's own way of saying a connection broke; perhaps a
                # write that can never succeed. Try again a few times before giving it up, so
                # one odd error costs no event, and one bad write cannot hold the rest for ever.
                surprises += 1
                if surprises < UNEXPECTED_ATTEMPTS:
                    logger.warning("a held Redis write failed (%r); trying it again", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_CAP_SECONDS)
                    continue
                logger.exception("a held Redis write failed %d times; dropped", surprises)
            self._held.popleft()
            surprises = 0
            delay = 0.1
        logger.info("held Redis writes done")
        self._answered()


async def nothing() -> None:
    """The fallback of a read whose answer can simply be "not cached"."""
    return None
