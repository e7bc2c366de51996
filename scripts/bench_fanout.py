"""Fan-out benchmark: Reelwire's /ws against the floor and python-socketio.

Everything in one run. The server under test runs pinned to CPU 0; the viewers, the publisher,
PostgreSQL and Redis are pinned to CPU 1, so the server's CPU time is its own. Measured:

1. compare   V viewers on one video, R events/s for T s, one server process each for Reelwire,
             the floor (scripts/bench_fanout_floor.py: aiohttp + redis-py, one subscription per
             channel, the same text written to every socket) and python-socketio with
             AsyncRedisManager: server CPU seconds per delivered message, latency, losses.
2. scale     5,000 viewers on one video across `reelwire serve --processes 2` at 20 events/s.
3. idle      15,000 idle subscribed sockets in one process: server memory per socket.
4. hot       one video taking likes and views at the asked rates, twice: driven through the
             same domain operations REST calls (PostgreSQL's row lock and the one load CPU cap
             what this reaches on two cores), and as the `video_update` events those operations
             publish, at the full rate: video_update messages per viewer per second, and the
             last counts each viewer saw against PostgreSQL (or against the last published).

Prints a table and one JSON line. Targets: Reelwire <= 1.25x the floor's CPU per message and
>= 4x better than python-socketio; scale p99 <= 150 ms with nothing lost; idle <= 25 KB per
socket; hot <= 10 updates/s per viewer with final counts equal to the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import free_port, pinned  # noqa: E402

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
TICK = os.sysconf("SC_CLK_TCK")


def pin_existing(cpu: int, pid: int) -> None:
    """Move a running process (and its threads) to one CPU."""
    if (os.cpu_count() or 1) > 1:
        subprocess.run(["taskset", "-a", "-pc", str(cpu), str(pid)], capture_output=True)


def family(pid: int) -> list[int]:
    """A process and its children (the supervisor's web processes)."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += family(int(child))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


# --- the load process (CPU 1) ------------------------------------------------------------


def event(video: str, n: int) -> dict[str, Any]:
    """A realistic `new_comment` (about 350 bytes with its timestamp)."""
    return {
        "type": "new_comment",
        "video_id": video,
        "comment": {
            "id": str(uuid.uuid4()),
            "content": f"comment {n}: " + "lorem ipsum " * 6,
            "author": {"id": str(uuid.UUID(int=n)), "username": "bench", "avatar_url": None},
            "like_count": 0,
            "reply_count": 0,
            "created_at": "2026-11-21T12:00:00Z",
        },
    }


async def publisher(spec: dict[str, Any]) -> Any:
    """A function publishing one event for the implementation under test."""
    import orjson
    import redis.asyncio as aioredis

    impl, url = spec["impl"], spec["redis_url"]
    if impl == "socketio":
        import socketio

        manager = socketio.AsyncRedisManager(url, write_only=True)

        async def emit(data: dict[str, Any]) -> None:
            data = {**data, "ts": int(time.time() * 1000)}
            await manager.emit("new_comment", data, room=spec["channel"], namespace="/")

        return emit
    client = aioredis.Redis.from_url(url)
    if impl == "floor":

        async def publish(data: dict[str, Any]) -> None:
            body = orjson.dumps({**data, "ts": int(time.time() * 1000)})
            await client.publish("floor:" + spec["channel"], body)

        return publish
    from pubsub.bus import EventBus
    from pubsub.outbox import Outbox

    bus = EventBus(client, Outbox(), history_size=1000, history_ttl=600)

    async def send(data: dict[str, Any]) -> None:
        await bus.publish(spec["channel"], data)

    return send


async def connect_all(spec: dict[str, Any], totals: Any, channels: list[str]) -> list[Any]:
    from loadtest import Target, open_viewer

    target = Target("127.0.0.1", spec["port"], spec["path"], spec["dialect"])
    gate = asyncio.Semaphore(200)
    viewers: list[Any] = []

    async def one(n: int) -> None:
        failure: Exception | None = None
        async with gate:
            for attempt in range(5):
                try:
                    viewers.append(await open_viewer(target, totals, channels[n % len(channels)]))
                    totals.connected += 1
                    return
                except (OSError, TimeoutError, ConnectionError) as exc:
                    failure = exc
                    await asyncio.sleep(0.5 * (attempt + 1))
            totals.failed += 1
            if totals.failed == 1:
                print(f"a viewer could not connect: {failure!r}", file=sys.stderr)

    await asyncio.gather(*(one(n) for n in range(spec["viewers"])))
    return viewers


async def run_fanout(spec: dict[str, Any]) -> dict[str, Any]:
    from loadtest import Totals

    totals = Totals()
    viewers = await connect_all(spec, totals, [spec["channel"]])
    await asyncio.sleep(2)  # presence and snapshots settle
    publish = await publisher(spec)
    pids = family(spec["server_pid"])
    rate, seconds = spec["rate"], spec["seconds"]
    totals.reset()
    cpu_before, started = cpu_seconds(pids), time.monotonic()
    sent = 0
    while sent < rate * seconds:
        await publish(event(spec["video"], sent))
        sent += 1
        wait = started + sent / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
    deadline = time.monotonic() + 10
    expected = sent * totals.connected
    # The counter is bumped by protocol callbacks; polling it is the simplest wait.
    while totals.events < expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(pids) - cpu_before
    for viewer in viewers:
        viewer._abort()
    return {
        "impl": spec["impl"],
        "viewers": spec["viewers"],
        "connected": totals.connected,
        "failed": totals.failed,
        "published": sent,
        "delivered": totals.events,
        "lost": expected - totals.events,
        "gaps": totals.gaps_lost,
        "server_cpu_s": round(cpu, 2),
        "seconds": round(elapsed, 2),
        "cpu_us_per_message": round(cpu / max(1, totals.events) * 1e6, 3),
        "latency_ms": totals.latency.summary(),
    }


async def run_idle(spec: dict[str, Any]) -> dict[str, Any]:
    from loadtest import Totals

    pids = family(spec["server_pid"])
    await asyncio.sleep(1)
    before = rss_bytes(pids)
    totals = Totals()
    viewers = await connect_all(spec, totals, spec["channels"])
    await asyncio.sleep(3)
    after = rss_bytes(pids)
    for viewer in viewers:
        viewer._abort()
    return {
        "sockets": totals.connected,
        "failed": totals.failed,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "kb_per_socket": round((after - before) / max(1, totals.connected) / 1024, 2),
    }


async def run_hot(spec: dict[str, Any]) -> dict[str, Any]:
    import orjson

    from loadtest import Totals
    from reelwire.domain import videos
    from reelwire.domain.context import Principal
    from reelwire.resources import open_services
    from reelwire.settings import Settings

    totals = Totals()
    viewers = await connect_all(spec, totals, [spec["channel"]])
    await asyncio.sleep(2)
    settings = Settings.from_env(
        {
            "DATABASE_URL": spec["database_url"],
            "REDIS_URL": spec["redis_url"],
            "JWT_SECRET_KEY": SECRET,
            "DB_POOL_SIZE": "40",
        }
    )
    video = uuid.UUID(spec["video"])
    fans = [Principal(uuid.UUID(u), "user", uuid.uuid4()) for u in spec["fans"]]
    liked = [False] * len(fans)
    done = {"likes": 0, "views": 0, "errors": 0}
    async with open_services(settings) as ctx:
        totals.reset()
        started = time.monotonic()
        end = started + spec["seconds"]
        gate = asyncio.Semaphore(96)
        in_flight: set[asyncio.Task[None]] = set()

        published = {"version": 0, "likes": 0, "views": 0}
        channel = f"video:{video}"

        async def like() -> None:
            n = random.randrange(len(fans))
            liked[n] = not liked[n]
            try:
                if spec["mode"] == "ops":
                    await videos.react(ctx, fans[n], video, "like" if liked[n] else "remove")
                else:  # what react publishes, without PostgreSQL in the way
                    published["version"] += 1
                    published["likes"] += 1 if liked[n] else -1
                    data = {
                        "like_count": published["likes"],
                        "dislike_count": 0,
                        "comment_count": 0,
                        "counts_version": published["version"],
                    }
                    event = {"type": "video_update", "video_id": str(video), "data": data}
                    await ctx.bus.publish_state(channel, event)
                done["likes"] += 1
            except Exception:
                done["errors"] += 1
            finally:
                gate.release()

        async def view() -> None:
            try:
                if spec["mode"] == "ops":
                    await videos.view(ctx, video, None)
                else:
                    published["views"] += 1
                    data = {"view_count": published["views"]}
                    event = {"type": "video_update", "video_id": str(video), "data": data}
                    await ctx.bus.publish_state(channel, event)
                done["views"] += 1
            except Exception:
                done["errors"] += 1
            finally:
                gate.release()

        owed = {"likes": 0.0, "views": 0.0}
        rates = {"likes": spec["likes_per_s"], "views": spec["views_per_s"]}
        last = started
        while time.monotonic() < end:
            now = time.monotonic()
            for kind in owed:
                owed[kind] += rates[kind] * (now - last)
            last = now
            while owed["likes"] >= 1 or owed["views"] >= 1:
                kind = "likes" if owed["likes"] >= owed["views"] else "views"
                owed[kind] -= 1
                await gate.acquire()
                task = asyncio.create_task(like() if kind == "likes" else view())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                if time.monotonic() >= end:
                    break
            await asyncio.sleep(0.002)
        await asyncio.gather(*in_flight)
        elapsed = time.monotonic() - started
        updates = totals.video_updates  # during the window (the last ones come after it)
        await asyncio.sleep(1.5)  # the last coalescing window and a view flush
        async with ctx.db.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT like_count, view_count FROM videos WHERE id = $1", video
            )
        live_views = (await ctx.views.live([video])).get(video)
    if spec["mode"] == "bus":
        row = {"like_count": published["likes"], "view_count": published["views"]}
        live_views = published["views"]
    seen = [orjson.loads(v.last_update)["data"] for v in viewers if v.last_update]
    agree = sum(
        1 for d in seen if d["like_count"] == row["like_count"] and d["view_count"] == live_views
    )
    for viewer in viewers:
        viewer._abort()
    return {
        "mode": spec["mode"],
        "viewers": totals.connected,
        "likes_per_s": round(done["likes"] / elapsed),
        "views_per_s": round(done["views"] / elapsed),
        "errors": done["errors"],
        "updates_per_viewer_per_s": round(updates / max(1, totals.connected) / elapsed, 2),
        "update_latency_ms": totals.update_latency.summary(),
        "db_like_count": row["like_count"],
        "db_view_count_after_flush": row["view_count"],
        "live_view_count": live_views,
        "viewers_whose_last_update_equals_db": f"{agree}/{len(seen)}",
    }


def load_main(spec_json: str) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    spec = json.loads(spec_json)
    runner = {"fanout": run_fanout, "idle": run_idle, "hot": run_hot}[spec["kind"]]
    import uvloop

    print(json.dumps(uvloop.run(runner(spec))))


# --- orchestration ----------------------------------------------------------------------


def start(kind: str, port: int, env: dict[str, str], processes: int = 1) -> subprocess.Popen[bytes]:
    python = sys.executable
    if kind == "reelwire":
        argv = [python, "-m", "reelwire", "serve", "--processes", str(processes)]
        if processes == 1:
            argv.append("--reuse-port")
    else:
        script = f"bench_fanout_{kind}.py"
        argv = [python, str(ROOT / "scripts" / script), str(port), env["REDIS_URL"]]
    proc = subprocess.Popen(pinned(0, argv), env={**env, "PORT": str(port)}, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(1.0 if processes > 1 else 0.3)  # every child listening
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{kind} server did not listen")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        pinned(1, [sys.executable, __file__, "--load", json.dumps(spec)]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load process failed:\n{out.stderr[-3000:]}")
    sys.stderr.write(out.stderr[-2000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def seed(database_url: str, videos: int, fans: int) -> tuple[list[str], list[str]]:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        owner = await conn.fetchval(
            "INSERT INTO users (username, email, password_hash, display_name) "
            "VALUES ('benchowner', 'owner@bench.test', 'x', 'Bench') RETURNING id"
        )
        ids = [
            str(
                await conn.fetchval(
                    """INSERT INTO videos (owner_id, title, status, visibility, duration, width,
                       height, published_at) VALUES ($1, $2, 'ready', 'public', 10, 1280, 720,
                       now()) RETURNING id""",
                    owner,
                    f"bench {n}",
                )
            )
            for n in range(videos)
        ]
        fan_ids = [
            str(r["id"])
            for r in await conn.fetch(
                """INSERT INTO users (username, email, password_hash, display_name)
                   SELECT 'fan' || i, 'fan' || i || '@bench.test', 'x', 'Fan'
                   FROM generate_series(1, $1) AS i RETURNING id""",
                fans,
            )
        ]
    finally:
        await conn.close()
    return ids, fan_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=2000, help="compare: viewers")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--scale-viewers", type=int, default=5000)
    parser.add_argument("--idle-sockets", type=int, default=15000)
    parser.add_argument("--hot-viewers", type=int, default=500)
    parser.add_argument("--likes-per-s", type=float, default=2000)
    parser.add_argument("--views-per-s", type=float, default=5000)
    parser.add_argument(
        "--only", nargs="*", choices=["compare", "scale", "idle", "hot"], help="a subset"
    )
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args.load)
        return
    only = set(args.only or ["compare", "scale", "idle", "hot"])

    from reelwire.embedded import EmbeddedPostgres, EmbeddedRedis
    from storage.migrate import migrate_url

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="reelwire-bench-fanout-") as scratch:
        root = Path(scratch)
        postgres = EmbeddedPostgres(root / "postgres", durable=False)
        redis = EmbeddedRedis(root / "redis", durable=False)
        postgres.start()
        redis.start()
        try:
            for pid_file in (root / "postgres" / "data" / "postmaster.pid",):
                if pid_file.exists():
                    pin_existing(1, int(pid_file.read_text().split()[0]))
            if redis._proc is not None:
                pin_existing(1, redis._proc.pid)
            asyncio.run(migrate_url(postgres.url))
            videos, fans = asyncio.run(seed(postgres.url, 101, 200))
            env = {
                **os.environ,
                "REELWIRE_HOME": str(root / "home"),
                "DATABASE_URL": postgres.url,
                "REDIS_URL": redis.url,
                "JWT_SECRET_KEY": SECRET,
                "INLINE_WORKER": "false",
                "LOG_LEVEL": "WARNING",
                "RATE_LIMITS_ENABLED": "false",
                "WS_MAX_SOCKETS_PER_ADDRESS": "0",  # every viewer comes from 127.0.0.1
                "WEB_CONCURRENCY": "1",
            }
            common = {
                "redis_url": redis.url,
                "database_url": postgres.url,
                "video": videos[0],
                "channel": f"video:{videos[0]}",
                "rate": args.rate,
                "seconds": args.seconds,
            }
            paths = {
                "reelwire": "/ws",
                "floor": "/ws",
                "socketio": "/socket.io/?EIO=4&transport=websocket",
            }
            dialects = {"reelwire": "reelwire", "floor": "plain", "socketio": "socketio"}
            if "compare" in only:
                for impl in ("floor", "reelwire", "socketio"):
                    port = free_port()
                    server = start(impl, port, env)
                    try:
                        spec = {
                            **common,
                            "kind": "fanout",
                            "impl": impl,
                            "port": port,
                            "path": paths[impl],
                            "dialect": dialects[impl],
                            "viewers": args.viewers,
                            "server_pid": server.pid,
                        }
                        results[f"compare_{impl}"] = run_load(spec)
                    finally:
                        stop(server)
                    print(impl, results[f"compare_{impl}"], file=sys.stderr)
            if "scale" in only:
                port = free_port()
                server = start("reelwire", port, env, processes=2)
                try:
                    spec = {
                        **common,
                        "kind": "fanout",
                        "impl": "reelwire",
                        "port": port,
                        "path": "/ws",
                        "dialect": "reelwire",
                        "viewers": args.scale_viewers,
                        "server_pid": server.pid,
                    }
                    results["scale"] = run_load(spec)
                finally:
                    stop(server)
                print("scale", results["scale"], file=sys.stderr)
            if "idle" in only:
                port = free_port()
                server = start("reelwire", port, env)
                try:
                    spec = {
                        **common,
                        "kind": "idle",
                        "port": port,
                        "path": "/ws",
                        "dialect": "reelwire",
                        "viewers": args.idle_sockets,
                        "channels": [f"video:{v}" for v in videos[1:]],
                        "server_pid": server.pid,
                    }
                    results["idle"] = run_load(spec)
                finally:
                    stop(server)
                print("idle", results["idle"], file=sys.stderr)
            for mode in ("ops", "bus"):
                if "hot" not in only:
                    break
                hot_video = videos[1] if mode == "ops" else videos[2]
                port = free_port()
                server = start("reelwire", port, env, processes=2)
                try:
                    spec = {
                        **common,
                        "video": hot_video,
                        "channel": f"video:{hot_video}",
                        "mode": mode,
                        "kind": "hot",
                        "port": port,
                        "path": "/ws",
                        "dialect": "reelwire",
                        "viewers": args.hot_viewers,
                        "fans": fans,
                        "likes_per_s": args.likes_per_s,
                        "views_per_s": args.views_per_s,
                        "server_pid": server.pid,
                    }
                    results[f"hot_{mode}"] = run_load(spec)
                finally:
                    stop(server)
                print(f"hot_{mode}", results[f"hot_{mode}"], file=sys.stderr)
        finally:
            redis.stop()
            postgres.stop()
    report(results)


def report(results: dict[str, Any]) -> None:
    print()
    floor = results.get("compare_floor")
    if floor:
        print(f"fan-out: {floor['viewers']} viewers, one video, one server process on CPU 0")
        print(
            f"{'server':<12}{'CPU us/msg':>12}{'vs floor':>10}{'delivered':>12}{'lost':>8}"
            f"{'p50 ms':>9}{'p99 ms':>9}"
        )
        for impl in ("floor", "reelwire", "socketio"):
            r = results.get(f"compare_{impl}")
            if not r:
                continue
            ratio = r["cpu_us_per_message"] / max(1e-9, floor["cpu_us_per_message"])
            print(
                f"{impl:<12}{r['cpu_us_per_message']:>12.2f}{ratio:>9.2f}x{r['delivered']:>12}"
                f"{r['lost']:>8}{r['latency_ms']['p50']:>9}{r['latency_ms']['p99']:>9}"
            )
        ours, theirs = results.get("compare_reelwire"), results.get("compare_socketio")
        if ours and theirs:
            better = theirs["cpu_us_per_message"] / max(1e-9, ours["cpu_us_per_message"])
            print(f"python-socketio / Reelwire CPU per message: {better:.1f}x")
    if "scale" in results:
        r = results["scale"]
        print(
            f"scale: {r['connected']} viewers, 2 processes, {r['published']} events: "
            f"p50 {r['latency_ms']['p50']} p99 {r['latency_ms']['p99']} ms, lost {r['lost']}"
        )
    if "idle" in results:
        r = results["idle"]
        print(
            f"idle: {r['sockets']} sockets, {r['kb_per_socket']} KB each "
            f"(RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB)"
        )
    for mode, how in (("ops", "through the domain operations"), ("bus", "as published events")):
        r = results.get(f"hot_{mode}")
        if r:
            print(
                f"hot video, {how}: {r['likes_per_s']} likes/s + {r['views_per_s']} views/s "
                f"-> {r['updates_per_viewer_per_s']} updates/s per viewer; last update = "
                f"{'database' if mode == 'ops' else 'last published'} for "
                f"{r['viewers_whose_last_update_equals_db']} viewers"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
