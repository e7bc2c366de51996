"""Rate limits: counted in Redis, so they hold across server processes."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from cache.rate_limits import Limit, RateLimiter
from pubsub.outbox import Outbox
from tests.conftest import TEST_SECRET, Backends, Catalog, MakeApi
from tests.test_serve import Server


async def test_over_the_limit_gets_429_with_retry_after(
    make_api: MakeApi, catalog: Catalog
) -> None:
    api = await make_api(
        rate_limits_enabled=True,
        rate_limits={
            "auth": Limit(1000, 60),
            "upload": Limit(5, 3600),
            "comment": Limit(30, 3600),
            "like": Limit(3, 60),
            "general": Limit(1000, 3600),
        },
    )
    owner = await api.register()
    fan = await api.register()
    video = await catalog.video(owner["id"])
    url, headers = f"/api/videos/{video}/like", api.auth(fan["token"])
    remaining = []
    for _ in range(3):
        resp = await api.client.post(url, json={"action": "like"}, headers=headers)
        assert resp.status == 200
        assert resp.headers["RateLimit-Limit"] == "3"
        remaining.append(resp.headers["RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    refused = await api.client.post(url, json={"action": "like"}, headers=headers)
    body = await refused.json()
    assert refused.status == 429, body
    assert body["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # another user has a budget of their own, and other buckets are not touched
    other = await api.client.post(url, json={"action": "like"}, headers=api.auth(owner["token"]))
    assert other.status == 200
    assert (await api.client.get(f"/api/videos/{video}", headers=headers)).status == 200


async def test_exactly_n_pass_across_two_server_processes(
    tmp_path: Path, backends: Backends, reset: None
) -> None:
    limit, extra = 20, 15
    env = {
        "DATABASE_URL": backends.database_url,
        "REDIS_URL": backends.redis_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "INLINE_WORKER": "false",
        "RATE_LIMIT_GENERAL": f"{limit}/hour",
    }
    servers = [Server(tmp_path / f"home{i}", env) for i in range(2)]
    try:
        for server in servers:
            server.wait_healthy()
        async with aiohttp.ClientSession() as http:

            async def get(i: int) -> int:
                server = servers[i % 2]
                async with http.get(f"{server.url}/api/videos") as resp:
                    return resp.status

            statuses = await asyncio.gather(*(get(i) for i in range(limit + extra)))
        assert statuses.count(200) == limit
        assert statuses.count(429) == extra
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("redis", ["shared", "unreachable"])
async def test_no_burst_at_a_window_edge_the_budget_refills_smoothly(
    backends: Backends, redis: str
) -> None:
    """GCRA: 4 per 2 s lets 4 through at once, then one every 0.5 s, never 4 more at once; the
    same in this process's memory while Redis cannot be reached."""
    url = backends.redis_url if redis == "shared" else f"redis://127.0.0.1:{_closed_port()}/0"
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
    limiter = RateLimiter(client, Outbox())
    subject = f"edge-{time.monotonic_ns()}"
    limit = Limit(4, 2)
    try:
        burst = [await limiter.hit("test", subject, limit) for _ in range(6)]
        assert [d.allowed for d in burst] == [True] * 4 + [False] * 2
        assert [d.remaining for d in burst[:4]] == [3, 2, 1, 0]
        assert burst[4].reset_seconds == 1  # 0.5 s, rounded up
        await asyncio.sleep(0.55)
        after = [await limiter.hit("test", subject, limit) for _ in range(3)]
        assert [d.allowed for d in after] == [True, False, False]
        await asyncio.sleep(1.05)  # where a fixed window would reopen all 4
        later = [await limiter.hit("test", subject, limit) for _ in range(4)]
        assert [d.allowed for d in later] == [True, True, False, False]
    finally:
        await client.aclose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when this returns: nothing listens
