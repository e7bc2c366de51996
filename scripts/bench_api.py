"""API benchmark: requests/s and latency of the hot REST routes on seeded data.

Seeds 100,000 public videos, 100,000 live clips over 2,000 creators, a viewer following 1,000 of
them and 5,000 comments on one video straight into PostgreSQL, then runs one `reelwire serve`
process (pinned to CPU 0) against it and drives it from a load process pinned to CPU 1, 32
requests in flight, for a fixed time per route. PostgreSQL and Redis are not pinned.

Targets: followed-clips feed p99 <= 25 ms; page 1,000 by cursor no slower than 1.2x page 1;
like route >= 1,500 requests/s per process. Rate limits stay in the request path, set high.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import free_port, pinned  # noqa: E402

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"

SEED_SQL = """
INSERT INTO users (id, username, email, password_hash, display_name)
SELECT gen_random_uuid(), 'creator' || i, 'creator' || i || '@example.com', 'x', 'Creator ' || i
FROM generate_series(1, 2000) AS i;

CREATE TEMP TABLE creators AS
SELECT id, row_number() OVER (ORDER BY username) AS n FROM users WHERE username LIKE 'creator%';

INSERT INTO videos (owner_id, title, description, status, visibility, category, tags,
                    duration, width, height, view_count, like_count, comment_count,
                    published_at, created_at)
SELECT c.id, 'Video ' || i, 'A seeded video about topic ' || (i % 500), 'ready', 'public',
       (ARRAY['music', 'sports', 'food', 'travel', 'gaming'])[1 + i % 5],
       ARRAY['tag' || (i % 100)], 30, 1280, 720, (i * 7919) % 100000, (i * 31) % 5000, i % 50,
       now() - make_interval(secs => i * 25), now() - make_interval(secs => i * 25)
FROM generate_series(1, 100000) AS i JOIN creators c ON c.n = 1 + i % 2000;

INSERT INTO clips (user_id, kind, status, caption, created_at, expires_at)
SELECT c.id, 'image', 'ready', 'clip ' || i,
       now() - make_interval(secs => (i * 0.8)::int), now() - make_interval(secs => (i * 0.8)::int)
       + interval '24 hours'
FROM generate_series(1, 100000) AS i JOIN creators c ON c.n = 1 + i % 2000;
"""

FOLLOW_SQL = """
WITH creators AS (
    SELECT id, row_number() OVER (ORDER BY username) AS n FROM users
    WHERE username LIKE 'creator%'
), followed AS (
    INSERT INTO follows (follower_id, following_id, created_at)
    SELECT $1, id, now() - make_interval(secs => n::int) FROM creators WHERE n <= 1000
    RETURNING following_id
)
UPDATE users SET follower_count = follower_count + 1 WHERE id IN (SELECT following_id FROM followed)
"""


# --- the load process ----------------------------------------------------------------------


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Keep `concurrency` requests in flight for `seconds`; latency percentiles and rate."""
    latencies: list[float] = []
    failures = 0
    statuses: dict[int, int] = {}
    requests = spec["requests"]  # list of [method, path, token index, json body or None]
    tokens = spec["tokens"]
    deadline = time.perf_counter() + spec["seconds"]
    connector = aiohttp.TCPConnector(limit=spec["concurrency"])
    async with aiohttp.ClientSession(spec["url"], connector=connector) as http:

        async def worker(n: int) -> None:
            nonlocal failures
            i = n
            while time.perf_counter() < deadline:
                method, path, who, body = requests[i % len(requests)]
                i += spec["concurrency"]
                headers = {"Authorization": f"Bearer {tokens[who]}"} if who is not None else {}
                started = time.perf_counter()
                try:
                    async with http.request(method, path, json=body, headers=headers) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                        if resp.status >= 400:
                            failures += 1
                except aiohttp.ClientError:
                    failures += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(spec["concurrency"])))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "requests": len(latencies),
        "failures": failures,
        "statuses": statuses,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1] * 1000, 2),
    }


def load(
    url: str, name: str, requests: list[Any], tokens: list[str], seconds: float
) -> dict[str, Any]:
    """Run one measurement in a separate process on CPU 1."""
    spec = {
        "url": url,
        "requests": requests,
        "tokens": tokens,
        "seconds": seconds,
        "concurrency": 32,
    }
    out = subprocess.run(
        pinned(1, [sys.executable, __file__, "--drive"]),
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    print(
        f"  {name:<28} {result['rps']:>8.0f} req/s   p50 {result['p50_ms']:>7.2f} ms   "
        f"p99 {result['p99_ms']:>7.2f} ms   failures {result['failures']}",
        flush=True,
    )
    return result


# --- orchestration ---------------------------------------------------------------------------


async def seed(database_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        await conn.execute(SEED_SQL)
        await conn.execute("ANALYZE")
        print(f"seeded 100,000 videos and 100,000 clips in {time.perf_counter() - started:.1f} s")
    finally:
        await conn.close()


async def prepare(url: str, database_url: str) -> dict[str, Any]:
    """Sign up the load's users, make the viewer follow 1,000 creators, seed comments."""
    import asyncpg

    tokens: list[str] = []
    ids: list[str] = []
    async with aiohttp.ClientSession(url) as http:
        for i in range(32):
            body = {
                "username": f"bench{i}",
                "email": f"bench{i}@example.com",
                "password": "Benchmark1",
            }
            async with http.post("/api/auth/register", json=body) as resp:
                data = await resp.json()
                assert resp.status == 201, data
            tokens.append(data["tokens"]["access_token"])
            ids.append(data["user"]["id"])
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(FOLLOW_SQL, ids[0])
        await conn.execute("UPDATE users SET following_count = 1000 WHERE id = $1", ids[0])
        hot = str(await conn.fetchval("SELECT id FROM videos ORDER BY published_at DESC LIMIT 1"))
        spread = [str(r["id"]) for r in await conn.fetch("SELECT id FROM videos LIMIT 2000")]
        await conn.execute(
            """INSERT INTO comments (video_id, user_id, content, created_at)
               SELECT $1, $2, 'comment ' || i, now() - make_interval(secs => i)
               FROM generate_series(1, 5000) AS i""",
            hot,
            ids[1],
        )
        await conn.execute("UPDATE videos SET comment_count = 5000 WHERE id = $1", hot)
        await conn.execute("ANALYZE")  # as autovacuum would after a bulk load
    finally:
        await conn.close()
    return {"tokens": tokens, "hot": hot, "spread": spread}


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """`reelwire serve` on CPU 0, once it listens."""
    server = subprocess.Popen(
        pinned(0, [sys.executable, "-m", "reelwire", "serve"]), env=env, cwd=ROOT
    )
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start listening")


async def cursor_of_page(url: str, page: int) -> str:
    """Walk the latest list by cursor up to `page`; the cursor that yields it."""
    cursor = ""
    async with aiohttp.ClientSession(url) as http:
        for _ in range(page - 1):
            query = f"/api/videos?limit=20&cursor={cursor}" if cursor else "/api/videos?limit=20"
            async with http.get(query) as resp:
                cursor = (await resp.json())["next_cursor"]
    return cursor


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    args = parser.parse_args()

    from reelwire.embedded import EmbeddedPostgres, EmbeddedRedis
    from storage.migrate import migrate_url

    with tempfile.TemporaryDirectory(prefix="reelwire-bench-api-") as scratch:
        root = Path(scratch)
        postgres = EmbeddedPostgres(root / "postgres", durable=True)
        redis = EmbeddedRedis(root / "redis", durable=True)
        postgres.start()
        redis.start()
        server = None
        try:
            await migrate_url(postgres.url)
            await seed(postgres.url)
            port = free_port()
            env = {
                **os.environ,
                "REELWIRE_HOME": str(root / "home"),
                "PORT": str(port),
                "DATABASE_URL": postgres.url,
                "REDIS_URL": redis.url,
                "JWT_SECRET_KEY": SECRET,
                "INLINE_WORKER": "false",
                "LOG_LEVEL": "WARNING",
                "RATE_LIMIT_AUTH": "1000000/min",
                "RATE_LIMIT_LIKE": "1000000/min",
                "RATE_LIMIT_GENERAL": "100000000/hour",
                "DB_POOL_SIZE": "20",
            }
            server = start_server(env, port)
            url = f"http://127.0.0.1:{port}"
            data = await prepare(url, postgres.url)
            tokens, hot, spread = data["tokens"], data["hot"], data["spread"]
            page_1000 = await cursor_of_page(url, 1000)
            seconds = args.seconds
            print(f"\nconcurrency 32, {seconds:.0f} s per route, server on CPU 0, load on CPU 1")
            results = {
                "video_feed_page_1": load(
                    url,
                    "GET /api/videos (page 1)",
                    [["GET", "/api/videos?limit=20", None, None]],
                    tokens,
                    seconds,
                ),
                "video_feed_page_1000_cursor": load(
                    url,
                    "  page 1000 by cursor",
                    [["GET", f"/api/videos?limit=20&cursor={page_1000}", None, None]],
                    tokens,
                    seconds,
                ),
                "video_feed_page_1000_offset": load(
                    url,
                    "  page 1000 by ?page=",
                    [["GET", "/api/videos?limit=20&page=1000", None, None]],
                    tokens,
                    seconds,
                ),
                "followed_clips": load(
                    url, "GET /api/clips/all", [["GET", "/api/clips/all", 0, None]], tokens, seconds
                ),
                "comments": load(
                    url,
                    "GET .../comments",
                    [["GET", f"/api/videos/{hot}/comments", None, None]],
                    tokens,
                    seconds,
                ),
                "like_spread": load(
                    url,
                    "POST .../like (2,000 videos)",
                    [
                        [
                            "POST",
                            f"/api/videos/{v}/like",
                            n % 32,
                            {"action": "like" if (n // 32) % 2 == 0 else "remove"},
                        ]
                        for n, v in enumerate(spread * 2)
                    ],
                    tokens,
                    seconds,
                ),
                "like_hot": load(
                    url,
                    "POST .../like (one video)",
                    [
                        [
                            "POST",
                            f"/api/videos/{hot}/like",
                            n % 32,
                            {"action": "like" if (n // 32) % 2 == 0 else "remove"},
                        ]
                        for n in range(64)
                    ],
                    tokens,
                    seconds,
                ),
            }
        finally:
            if server is not None:
                server.send_signal(signal.SIGTERM)
                server.wait(60)
            redis.stop()
            postgres.stop()

    ratio = (
        results["video_feed_page_1000_cursor"]["p50_ms"] / results["video_feed_page_1"]["p50_ms"]
    )
    summary = {
        "followed_clips_p99_ms": results["followed_clips"]["p99_ms"],
        "followed_clips_target_met": results["followed_clips"]["p99_ms"] <= 25,
        "cursor_page_1000_vs_page_1_p50": round(ratio, 3),
        "cursor_target_met": ratio <= 1.2,
        "like_rps_per_process": results["like_spread"]["rps"],
        "like_target_met": results["like_spread"]["rps"] >= 1500,
    }
    print("\n" + "\n".join(f"  {k}: {v}" for k, v in summary.items()))
    print(json.dumps({"results": results, "summary": summary}))


if __name__ == "__main__":
    if "--drive" in sys.argv:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        print(json.dumps(asyncio.run(drive(json.load(sys.stdin)))))
    else:
        asyncio.run(main())
