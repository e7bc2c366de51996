"""Counting a request against its rate limit: one rule for REST routes and WebSocket commands."""

from __future__ import annotations

from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import RateLimited


async def check(
    ctx: Services, bucket: str | None, principal: Principal | None, address: str
) -> dict[str, str]:
    """Count one request in `bucket`; the RateLimit-* headers, or RateLimited when over."""
    settings = ctx.settings
    if bucket is None or not settings.rate_limits_enabled:
        return {}
    # Sign-in attempts are limited per address (there is no user yet); the rest per user.
    if principal is not None and bucket != "auth":
        subject = f"u:{principal.user_id}"
    else:
        subject = f"ip:{address}"
    decision = await ctx.limiter.hit(bucket, subject, settings.rate_limits[bucket])
    if not decision.allowed:
        raise RateLimited(
            f"Too many requests; try again in {decision.reset_seconds} s",
            details={"limit": decision.limit, "window_seconds": decision.window_seconds},
            headers=decision.headers,
        )
    return decision.headers
