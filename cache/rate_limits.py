"""Rate limits counted in Redis, so every server process shares one count per user.

GCRA (the generic cell rate algorithm, a leaky bucket kept as one timestamp): a limit of N per
period lets N through at once, then one more every period/N. There is no window edge where
2N get through in a moment, as with fixed windows, and it is still one atomic round trip on one
key (a Lua script reading Redis' own clock), so N+k requests arriving at once from any number
of processes let exactly N through.

While Redis is away each process keeps its own GCRA in memory with the same limits, so requests
are still limited (at most N per process) instead of refused; when Redis answers again the shared
count takes over.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

import redis.asyncio as aioredis

from pubsub import keys
from pubsub.outbox import Outbox

# KEYS: the subject's theoretical arrival time (ms). ARGV: period ms, count.
# Returns {allowed 0/1, remaining, ms until a request is allowed again (denied) or until the
# bucket is full again (allowed)}.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local period = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local interval = period / count
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
    tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
    return {0, 0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
local remaining = math.floor((now + period - new_tat) / interval)
return {1, remaining, math.ceil(new_tat - now)}
"""


@dataclass(frozen=True)
class Limit:
    """`count` requests per `seconds`."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


@dataclass(frozen=True)
class Decision:
    """The outcome of one request against one limit."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # refused: until one more is allowed; allowed: until the budget is full
    window_seconds: int

    @property
    def headers(self) -> dict[str, str]:
        """RateLimit headers (IETF draft) plus Retry-After when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
            "RateLimit-Policy": f"{self.limit};w={self.window_seconds}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class RateLimiter:
    """Counts requests per bucket and subject (a user id or an address)."""

    def __init__(self, client: aioredis.Redis, outbox: Outbox) -> None:
        self._hit = client.register_script(_HIT)
        self._outbox = outbox
        self._local = LocalLimiter()

    async def hit(self, bucket: str, subject: str, limit: Limit) -> Decision:
        """Count one request; whether it is allowed."""

        async def shared() -> Decision:
            allowed, remaining, wait_ms = await self._hit(
                keys=[keys.rate_limit(bucket, subject)],
                args=[limit.seconds * 1000, limit.count],
            )
            return _decision(limit, bool(allowed), int(remaining), int(wait_ms))

        async def local() -> Decision:
            return self._local.hit(f"{bucket}:{subject}", limit)

        return await self._outbox.read(shared, local)


class LocalLimiter:
    """The same GCRA in this process's memory, for the subjects seen most recently."""

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._tat: OrderedDict[str, float] = OrderedDict()  # theoretical arrival time, ms

    def hit(self, key: str, limit: Limit) -> Decision:
        """Count one request against `limit` for `key`."""
        now = time.monotonic() * 1000
        period = limit.seconds * 1000
        interval = period / limit.count
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + interval
        if now < new_tat - period:
            return _decision(limit, False, 0, math.ceil(new_tat - period - now))
        self._tat[key] = new_tat
        self._tat.move_to_end(key)
        while len(self._tat) > self._size:
            self._tat.popitem(last=False)
        remaining = math.floor((now + period - new_tat) / interval)
        return _decision(limit, True, remaining, math.ceil(new_tat - now))


def _decision(limit: Limit, allowed: bool, remaining: int, wait_ms: int) -> Decision:
    return Decision(
        allowed=allowed,
        limit=limit.count,
        remaining=max(0, remaining),
        reset_seconds=max(1, math.ceil(wait_ms / 1000)),
        window_seconds=limit.seconds,
    )
