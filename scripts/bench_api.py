"""API benchmark: requests/s and latency of the hot REST routes on seeded data.

Seeds 100,000 public videos, 100,000 live clips over 2,000 creators, 2,000 viewers following 200
of them each and 5,000 comments on one video straight into PostgreSQL, then runs one
`reelwire serve` process (pinned to CPU 0) against it and drives it from a load process pinned
to CPU 1, 32 requests in flight. PostgreSQL and Redis are not pinned.

Every request does the work its label says:
  - `GET /healthz` first: the server's floor in this run (no database, no Redis);
  - the followed-clips feed for 2,000 different users, each asked once (every request a cache
    miss), then the same users again (every request a hit); both hit ratios are printed;
  - likes: each of the 32 users walks the videos, and every request changes something (like
    what it has not liked, remove what it has): checked afterwards against the like counts in
    PostgreSQL.
The machine's load average is printed beside every figure.

Targets: followed-clips feed p99 <= 25 ms; page 1,000 by cursor no slower than 1.2x page 1;
like route >= 1,500 requests/s per process. Rate limits stay in the request path, set high.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
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

from benchlib import free_port, mint_tokens, pinned, wait_listening  # noqa: E402

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

VIEWERS_SQL = """
INSERT INTO users (id, username, email, password_hash, display_name, following_count)
SELECT gen_random_uuid(), 'viewer' || i, 'viewer' || i || '@example.com', 'x', 'Viewer ' || i, 200
FROM generate_series(1, 2000) AS i;

WITH viewers AS (
    SELECT id, row_number() OVER (ORDER BY username) AS v FROM users WHERE username LIKE 'viewer%'
), creators AS (
    SELECT id, row_number() OVER (ORDER BY username) AS n FROM users
    WHERE username LIKE 'creator%'
)
INSERT INTO follows (follower_id, following_id, created_at)
SELECT viewers.id, creators.id, now()
FROM viewers JOIN creators ON (creators.n + viewers.v * 7) % 2000 < 200;
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
    """Keep `concurrency` requests in flight; latency percentiles and rate.

    Modes: `cycle` (the request list round and round for `seconds`), `once` (each request of
    the list exactly once), `toggle` (worker n is user n and walks `videos`, liking what it has
    not liked and removing what it has: every request a change; returns the net likes)."""
    latencies: list[float] = []
    failures = 0
    statuses: dict[int, int] = {}
    mode = spec.get("mode", "cycle")
    requests = spec.get("requests", [])  # [method, path, token index, json body or None]
    tokens = spec["tokens"]
    deadline = time.perf_counter() + spec["seconds"]
    concurrency = spec["concurrency"]
    net_likes = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(spec["url"], connector=connector) as http:

        async def one(method: str, path: str, who: int | None, body: Any) -> bool:
            nonlocal failures
            headers = {"Authorization": f"Bearer {tokens[who]}"} if who is not None else {}
            started = time.perf_counter()
            ok = False
            try:
                async with http.request(method, path, json=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    ok = resp.status < 400
            except aiohttp.ClientError:
                pass
            failures += not ok
            latencies.append(time.perf_counter() - started)
            return ok

        async def worker(n: int) -> None:
            nonlocal net_likes
            if mode == "toggle":
                liked: set[str] = set()
                videos = spec["videos"]
                i = n
                while time.perf_counter() < deadline:
                    video = videos[i % len(videos)]
                    i += 1
                    action = "remove" if video in liked else "like"
                    path = f"/api/videos/{video}/like"
                    if await one("POST", path, n, {"action": action}):
                        liked.symmetric_difference_update({video})
                        net_likes += 1 if action == "like" else -1
                return
            i = n
            while (i < len(requests)) if mode == "once" else (time.perf_counter() < deadline):
                await one(*requests[i % len(requests)])
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
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
        "net_likes": net_likes,
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def load(
    url: str,
    name: str,
    requests: list[Any],
    tokens: list[str],
    seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    """Run one measurement in a separate process on CPU 1."""
    spec = {
        "url": url,
        "requests": requests,
        "tokens": tokens,
        "seconds": seconds,
        "concurrency": 32,
        **extra,
    }
    out = subprocess.run(
        pinned(1, [sys.executable, __file__, "--drive"]),
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    result["load"] = load_average()
    print(
        f"  {name:<36} {result['rps']:>8.0f} req/s   p50 {result['p50_ms']:>7.2f} ms   "
        f"p99 {result['p99_ms']:>7.2f} ms   failures {result['failures']}   ({result['load']})",
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
        await conn.execute(VIEWERS_SQL)
        await conn.execute("ANALYZE")
        print(
            "seeded 100,000 videos, 100,000 clips and 2,000 viewers following 200 creators each "
            f"in {time.perf_counter() - started:.1f} s"
        )
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
        viewers = [
            r["id"] for r in await conn.fetch("SELECT id FROM users WHERE username LIKE 'viewer%'")
        ]
    finally:
        await conn.close()
    return {
        "tokens": tokens,
        "hot": hot,
        "spread": spread,
        "viewer_tokens": mint_tokens(SECRET, viewers),
    }


async def like_totals(database_url: str, videos: list[str]) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        total = await conn.fetchval(
            "SELECT sum(like_count) FROM videos WHERE id = ANY($1::uuid[])", videos
        )
        return int(total or 0)
    finally:
        await conn.close()


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """`reelwire serve` on CPU 0, once it listens."""
    server = subprocess.Popen(
        pinned(0, [sys.executable, "-m", "reelwire", "serve"]), env=env, cwd=ROOT
    )
    try:
        wait_listening(server, port, "the server", timeout=30)
    except RuntimeError:
        server.kill()
        raise
    return server


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
            viewer_tokens = data["viewer_tokens"]
            page_1000 = await cursor_of_page(url, 1000)
            seconds = args.seconds
            print(
                f"\nconcurrency 32, {seconds:.0f} s per route, server on CPU 0, load on CPU 1 "
                f"({load_average()} before)"
            )
            results = {
                "floor_healthz": load(
                    url,
                    "GET /healthz (the floor)",
                    [["GET", "/healthz", None, None]],
                    tokens,
                    seconds,
                ),
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
            }
            feeds = [["GET", "/api/clips/all", n, None] for n in range(len(viewer_tokens))]
            results["followed_clips_uncached"] = load(
                url,
                "GET /api/clips/all, 2,000 users once",
                feeds,
                viewer_tokens,
                seconds,
                mode="once",
            )
            results["followed_clips_uncached"]["cache_hit_ratio"] = 0.0
            results["followed_clips_cached"] = load(
                url, "  the same users again", feeds, viewer_tokens, seconds
            )
            results["followed_clips_cached"]["cache_hit_ratio"] = 1.0
            print("  (hit ratios: 0% on the first pass, 100% after: each user's feed is cached)")
            results["comments"] = load(
                url,
                "GET .../comments",
                [["GET", f"/api/videos/{hot}/comments", None, None]],
                tokens,
                seconds,
            )
            before = await like_totals(postgres.url, spread)
            results["like_spread"] = load(
                url,
                "POST .../like (2,000 videos)",
                [],
                tokens,
                seconds,
                mode="toggle",
                videos=spread,
            )
            after = await like_totals(postgres.url, spread)
            results["like_spread"]["verified"] = (
                after - before == results["like_spread"]["net_likes"]
            )
            before = await like_totals(postgres.url, [hot])
            results["like_hot"] = load(
                url, "POST .../like (one video)", [], tokens, seconds, mode="toggle", videos=[hot]
            )
            after = await like_totals(postgres.url, [hot])
            results["like_hot"]["verified"] = after - before == results["like_hot"]["net_likes"]
            for name in ("like_spread", "like_hot"):
                r = results[name]
                print(
                    f"  {name}: {r['requests'] - r['failures']} likes and removals, each a "
                    f"change: like_count moved by {r['net_likes']} as the requests said "
                    f"({'verified' if r['verified'] else 'MISMATCH'} in PostgreSQL)"
                )
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
        "floor_healthz_rps": results["floor_healthz"]["rps"],
        "followed_clips_uncached_p99_ms": results["followed_clips_uncached"]["p99_ms"],
        "followed_clips_cached_p99_ms": results["followed_clips_cached"]["p99_ms"],
        "followed_clips_target_met": results["followed_clips_uncached"]["p99_ms"] <= 25,
        "cursor_page_1000_vs_page_1_p50": round(ratio, 3),
        "cursor_target_met": ratio <= 1.2,
        "like_rps_per_process": results["like_spread"]["rps"],
        "likes_all_real_changes": results["like_spread"]["verified"]
        and results["like_hot"]["verified"],
        "like_target_met": results["like_spread"]["rps"] >= 1500,
        "load": load_average(),
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
