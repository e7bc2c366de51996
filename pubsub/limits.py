"""Rate limits counted in Redis, so every server process shares one count per user.

Fixed windows: one INCR per request on the key of the current window, atomic in Redis, so N+k
requests arriving at once from any number of processes let exactly N through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from pubsub import keys

# KEYS: counter. ARGV: window ms. Returns the count including this request.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
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
    reset_seconds: int  # until the window ends
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

    def __init__(self, client: aioredis.Redis) -> None:
        self._hit = client.register_script(_HIT)

    async def hit(self, bucket: str, subject: str, limit: Limit) -> Decision:
        """Count one request; whether it is allowed."""
        now = time.time()
        window = int(now // limit.seconds)
        count = int(
            await self._hit(
                keys=[keys.rate_limit(bucket, subject, window)], args=[limit.seconds * 1000]
            )
        )
        reset = max(1, int((window + 1) * limit.seconds - now + 0.999))
        return Decision(
            allowed=count <= limit.count,
            limit=limit.count,
            remaining=max(0, limit.count - count),
            reset_seconds=reset,
            window_seconds=limit.seconds,
        )
