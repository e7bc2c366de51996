"""Fan-out benchmark: Reelwire's /ws against the floor and python-socketio.

Everything in one run. The server under test runs pinned to CPU 0; the viewers, the publisher,
PostgreSQL and Redis are pinned to CPU 1, so the server's CPU time is its own; every figure is
printed with the machine's one-minute load average when its measurement started. Measured:

0. connect   what a socket costs the server to get going, apart from what it costs while it
             watches: N sockets (each its own user, a Bearer token on the upgrade) connect and
             subscribe to one video at once, then close; then they resubscribe after a drop, with
             `since`, having missed a few events. Server CPU per socket for connect + auth +
             subscribe, for the close, and for a reconnect with `since` (replay included), for
             Reelwire and the floor (which has no auth and no `since`: connect + subscribe and
             close only), and for `--before DIR` (a checkout of an earlier commit, e.g. a git
             worktree: its `reelwire serve` measured the same way in the same run). The machine's
             load average is printed beside every figure.
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

Prints a table and one JSON line. Targets: connect + auth + subscribe <= 0.5 ms of server CPU per
socket; Reelwire <= 1.25x the floor's CPU per message and
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

from benchlib import free_port, mint_tokens, pinned, stop, wait_listening  # noqa: E402

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
    load = load_average()
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
        "load": load,
    }


def load_average() -> float:
    """The machine's one-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


class Joiner(asyncio.Protocol):
    """A bare WebSocket client for the connect measurement: the upgrade (with a Bearer token),
    one subscribe (with `since` when it has a position), the answer, and the last offset seen."""

    def __init__(self, host: str, channel: str, token: str | None, since: Any) -> None:
        self.host, self.channel, self.token, self.since = host, channel, token, since
        self.transport: Any = None
        self.buffer = bytearray()
        self.upgraded = False
        self.answered = asyncio.get_running_loop().create_future()
        self.reached: asyncio.Future[None] | None = None
        self.want = 0
        self.offset: int | None = None
        self.epoch: str | None = None
        self.recovered: bool | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import base64

        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        transport.write(  # type: ignore[attr-defined]
            (
                f"GET /ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{auth}\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            del self.buffer[: end + 4]
            if b" 101 " not in status:
                self.answered.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self.upgraded = True
            message: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
            if self.since is not None:
                message["since"] = self.since
            self.send(orjson_dumps(message))
        buffer, pos = self.buffer, 0
        while len(buffer) - pos >= 2:
            length, head = buffer[pos + 1] & 0x7F, 2
            if length == 126:
                if len(buffer) - pos < 4:
                    break
                length, head = (buffer[pos + 2] << 8) | buffer[pos + 3], 4
            end = pos + head + length
            if end > len(buffer):
                break
            if buffer[pos] & 0x0F == 0x1:
                self.on_text(bytes(buffer[pos + head : end]))
            pos = end
        del buffer[:pos]

    def on_text(self, payload: bytes) -> None:
        if payload.startswith((b'{"type":"subscribed"', b'{"type":"error"')):
            message = json.loads(payload)
            if message["type"] == "error":
                self.answered.set_exception(ConnectionError(json.dumps(message)))
                return
            self.epoch, self.recovered = message.get("epoch"), message.get("recovered")
            if self.offset is None and message.get("offset") is not None:
                self.offset = message["offset"]
            if not self.answered.done():
                self.answered.set_result(None)
            return
        if payload.startswith(b'{"type":"new_comment"'):
            at = payload.rfind(b'"offset":')
            if at > 0:
                end = at + 9
                while payload[end] in b"0123456789":
                    end += 1
                self.offset = int(payload[at + 9 : end])
                reached = self.reached
                if reached is not None and self.offset >= self.want and not reached.done():
                    reached.set_result(None)

    def until(self, offset: int) -> asyncio.Future[None]:
        """Resolved once an event with `offset` (or later) arrived."""
        self.want = offset
        self.reached = asyncio.get_running_loop().create_future()
        if self.offset is not None and self.offset >= offset:
            self.reached.set_result(None)
        return self.reached

    def send(self, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        size = len(payload)
        short = size < 126
        head = bytes([0x81, 0x80 | size] if short else [0x81, 0xFE, size >> 8, size & 255])
        self.transport.write(head + mask + masked)


def orjson_dumps(message: Any) -> bytes:
    import orjson

    return orjson.dumps(message)


async def join_all(
    spec: dict[str, Any], channel: str, sinces: list[Any] | None = None
) -> list[Joiner]:
    """Every socket connected, authenticated and subscribed (`at_once` opening at a time)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(200)
    tokens = spec["tokens"]
    host = f"127.0.0.1:{spec['port']}"

    async def one(n: int) -> Joiner:
        async with gate:
            since = sinces[n] if sinces else None
            token = tokens[n % len(tokens)] if tokens else None
            _, joiner = await loop.create_connection(
                lambda: Joiner(host, channel, token, since), "127.0.0.1", spec["port"]
            )
            await asyncio.wait_for(joiner.answered, 60)
            return joiner

    return list(await asyncio.gather(*(one(n) for n in range(spec["viewers"]))))


async def settle(pids: list[int], idle_rate: float, started: float, timeout: float = 20) -> float:
    """Wait until the server is idle again (its CPU over 200 ms no more than its idle rate
    allows, plus 2 ms); the CPU it spent since `started` beyond its idle rate."""
    first = time.monotonic()
    last = cpu_seconds(pids)
    while time.monotonic() - first < timeout:
        await asyncio.sleep(0.2)
        now = cpu_seconds(pids)
        if now - last <= idle_rate * 0.2 + 0.002:
            break
        last = now
    return cpu_seconds(pids)


async def run_connect(spec: dict[str, Any]) -> dict[str, Any]:
    """connect + auth + subscribe, close, and (for Reelwire) a reconnect with `since`."""
    pids = family(spec["server_pid"])
    channel, count = spec["channel"], spec["viewers"]
    history = spec["impl"] != "floor"
    publish = await publisher(spec) if history else None
    # Warm up (imports, caches, the video in Redis), then the idle rate of the server.
    warm = await join_all({**spec, "viewers": 50}, channel)
    for joiner in warm:
        joiner.transport.close()
    await asyncio.sleep(1.5)
    before = cpu_seconds(pids)
    await asyncio.sleep(2)
    idle_rate = (cpu_seconds(pids) - before) / 2
    result: dict[str, Any] = {"impl": spec["impl"], "sockets": count, "idle_cpu_per_s": idle_rate}

    def per_socket(cpu: float, seconds: float) -> float:
        return round(max(0.0, cpu - idle_rate * seconds) / count * 1e3, 3)

    load = load_average()
    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    joiners = await join_all(spec, channel)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pids) - cpu0
    result["connect_ms_per_socket"] = per_socket(cpu, elapsed)
    result["connect_seconds"] = round(elapsed, 2)
    result["connect_load"] = load
    await asyncio.sleep(1)  # presence and snapshots settle

    if publish is not None:  # events everybody sees, so each has a position to resume from
        for n in range(5):
            await publish(event(spec["video"], n))
        await asyncio.wait_for(asyncio.gather(*(j.until(5) for j in joiners)), 60)

    load = load_average()
    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    for joiner in joiners:
        joiner.transport.close()
    done = await settle(pids, idle_rate, t0)
    result["close_ms_per_socket"] = per_socket(done - cpu0, time.monotonic() - t0)
    result["close_load"] = load

    if publish is not None:
        for n in range(5, 10):  # missed while away
            await publish(event(spec["video"], n))
        await asyncio.sleep(0.5)
        sinces = [{"offset": j.offset, "epoch": j.epoch} for j in joiners]
        load = load_average()
        cpu0, t0 = cpu_seconds(pids), time.monotonic()
        back = await join_all(spec, channel, sinces)
        await asyncio.wait_for(asyncio.gather(*(j.until(10) for j in back)), 60)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(pids) - cpu0
        result["reconnect_ms_per_socket"] = per_socket(cpu, elapsed)
        result["reconnect_seconds"] = round(elapsed, 2)
        result["reconnect_load"] = load
        result["recovered"] = sum(1 for j in back if j.recovered)
        for joiner in back:
            joiner.transport.close()
        await settle(pids, idle_rate, time.monotonic())
    return result


async def run_idle(spec: dict[str, Any]) -> dict[str, Any]:
    from loadtest import Totals

    pids = family(spec["server_pid"])
    await asyncio.sleep(1)
    load = load_average()
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
        "load": load,
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
        load = load_average()
        started = time.monotonic()
        end = started + spec["seconds"]
        gate = asyncio.Semaphore(96)
        in_flight: set[asyncio.Task[None]] = set()

        published = {"version": 0, "likes": 0, "views": 0}
        channel = f"video:{video}"

        busy: set[int] = set()  # fans with a like in flight: each like changes the count

        async def like(n: int) -> None:
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
                liked[n] = not liked[n]
            finally:
                busy.discard(n)
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
                if kind == "likes":
                    n = random.randrange(len(fans))
                    while n in busy:
                        n = random.randrange(len(fans))
                    busy.add(n)
                task = asyncio.create_task(like(n) if kind == "likes" else view())
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
        # every like was a change: the count is the fans who like the video now
        "likes_all_changes": row["like_count"] == sum(liked),
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
        "load": load,
    }


def load_main(spec_json: str) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    spec = json.loads(sys.stdin.read() if spec_json == "-" else spec_json)
    runner = {
        "connect": run_connect,
        "fanout": run_fanout,
        "idle": run_idle,
        "hot": run_hot,
    }[spec["kind"]]
    import uvloop

    print(json.dumps(uvloop.run(runner(spec))))


# --- orchestration ----------------------------------------------------------------------


def start(
    kind: str,
    port: int,
    env: dict[str, str],
    processes: int = 1,
    root: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """A server under test on CPU 0; Reelwire from `root` (another checkout for "before")."""
    python = sys.executable
    env = {**env, "PORT": str(port)}
    if kind == "reelwire":
        argv = [python, "-m", "reelwire", "serve", "--processes", str(processes)]
        if processes == 1:
            argv.append("--reuse-port")
        env["PYTHONPATH"] = str(root)  # its own packages, not this checkout's
    else:
        script = f"bench_fanout_{kind}.py"
        argv = [python, str(ROOT / "scripts" / script), str(port), env["REDIS_URL"]]
    proc = subprocess.Popen(pinned(0, argv), env=env, cwd=root)
    wait_listening(proc, port, f"{kind} server")
    time.sleep(1.0 if processes > 1 else 0.3)  # every child listening
    return proc


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    # On stdin: the connect measurement's tokens do not fit on a command line.
    out = subprocess.run(
        pinned(1, [sys.executable, __file__, "--load", "-"]),
        input=json.dumps(spec),
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


def measure_connects(
    args: argparse.Namespace,
    env: dict[str, str],
    common: dict[str, Any],
    videos: list[str],
    fans: list[str],
) -> dict[str, Any]:
    """The connect measurement, `--connect-rounds` times over: each round starts every contender
    afresh (in turn, so a drift of the machine touches them alike), with sockets of users it has
    not seen and a channel of its own; each figure is the median of the rounds."""
    contenders: list[tuple[str, str, Path]] = [("floor", "floor", ROOT)]
    if args.before is not None:
        contenders.append(("before", "reelwire", args.before.resolve()))
    contenders.append(("reelwire", "reelwire", ROOT))
    count = args.connect_sockets
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in contenders}
    fresh = iter(videos[3:])
    for round_ in range(args.connect_rounds):
        tokens = mint_tokens(SECRET, fans[round_ * count : (round_ + 1) * count])
        for label, impl, root in contenders:
            port = free_port()
            server = start(impl, port, env, root=root)
            try:
                video = next(fresh)  # a channel of its own: offsets from 1
                spec = {
                    **common,
                    "video": video,
                    "channel": f"video:{video}",
                    "kind": "connect",
                    "impl": label,
                    "port": port,
                    "viewers": count,
                    "tokens": tokens if impl == "reelwire" else [],
                    "server_pid": server.pid,
                }
                runs[label].append(run_load(spec))
            finally:
                stop(server)
            print(label, runs[label][-1], file=sys.stderr)
    found: dict[str, Any] = {}
    for label, rounds in runs.items():
        summary: dict[str, Any] = {"impl": label, "sockets": count, "rounds": rounds}
        for figure in ("connect", "close", "reconnect"):
            key = f"{figure}_ms_per_socket"
            measured = sorted((r[key], r[f"{figure}_load"]) for r in rounds if key in r)
            if measured:
                median, load = measured[len(measured) // 2]
                summary[key], summary[f"{figure}_load"] = median, load
                summary[f"{figure}_spread"] = (measured[0][0], measured[-1][0])
        found[f"connect_{label}"] = summary
    return found


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
    parser.add_argument("--connect-sockets", type=int, default=3000, help="connect: sockets")
    parser.add_argument(
        "--connect-rounds", type=int, default=3, help="connect: rounds (figures are medians)"
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="connect: also measure `reelwire serve` from this checkout (an earlier commit)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["connect", "compare", "scale", "idle", "hot"],
        help="a subset",
    )
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args.load)
        return
    only = set(args.only or ["connect", "compare", "scale", "idle", "hot"])

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
            videos, fans = asyncio.run(
                seed(
                    postgres.url,
                    101 + 3 * args.connect_rounds,
                    max(200, args.connect_sockets * args.connect_rounds),
                )
            )
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
            if "connect" in only:
                results.update(measure_connects(args, env, common, videos, fans))
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
                        "channels": [f"video:{v}" for v in videos[1:101]],
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
                        "fans": fans[:200],
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
    connects = [(k[8:], v) for k, v in results.items() if k.startswith("connect_")]
    if connects:
        sockets = connects[0][1]["sockets"]
        rounds = len(connects[0][1]["rounds"])
        print(
            f"connect cost: {sockets} sockets (each its own user) on one video, one process; "
            f"server CPU ms per socket, median [range] of {rounds} rounds (load average when "
            "the median run was measured)"
        )
        print(f"{'server':<10}{'connect+auth+subscribe':<36}{'close':<36}{'reconnect with since'}")
        for label, r in connects:

            def cell(name: str, r: dict[str, Any] = r) -> str:
                if f"{name}_ms_per_socket" not in r:
                    return "-"
                low, high = r[f"{name}_spread"]
                median, load = r[f"{name}_ms_per_socket"], r[f"{name}_load"]
                return f"{median:.3f} [{low:.3f}-{high:.3f}] (load {load:.2f})"

            print(f"{label:<10}{cell('connect'):<36}{cell('close'):<36}{cell('reconnect')}")
        print()
    floor = results.get("compare_floor")
    if floor:
        print(f"fan-out: {floor['viewers']} viewers, one video, one server process on CPU 0")
        print(
            f"{'server':<12}{'CPU us/msg':>12}{'vs floor':>10}{'delivered':>12}{'lost':>8}"
            f"{'p50 ms':>9}{'p99 ms':>9}{'load':>7}"
        )
        for impl in ("floor", "reelwire", "socketio"):
            r = results.get(f"compare_{impl}")
            if not r:
                continue
            ratio = r["cpu_us_per_message"] / max(1e-9, floor["cpu_us_per_message"])
            print(
                f"{impl:<12}{r['cpu_us_per_message']:>12.2f}{ratio:>9.2f}x{r['delivered']:>12}"
                f"{r['lost']:>8}{r['latency_ms']['p50']:>9}{r['latency_ms']['p99']:>9}"
                f"{r['load']:>7.2f}"
            )
        ours, theirs = results.get("compare_reelwire"), results.get("compare_socketio")
        if ours and theirs:
            better = theirs["cpu_us_per_message"] / max(1e-9, ours["cpu_us_per_message"])
            print(f"python-socketio / Reelwire CPU per message: {better:.1f}x")
    if "scale" in results:
        r = results["scale"]
        print(
            f"scale: {r['connected']} viewers, 2 processes, {r['published']} events: "
            f"p50 {r['latency_ms']['p50']} p99 {r['latency_ms']['p99']} ms, lost {r['lost']} "
            f"(load {r['load']:.2f})"
        )
    if "idle" in results:
        r = results["idle"]
        print(
            f"idle: {r['sockets']} sockets, {r['kb_per_socket']} KB each "
            f"(RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB; load {r['load']:.2f})"
        )
    for mode, how in (
        ("ops", "through the real operations (PostgreSQL likes, Redis views)"),
        ("bus", "BUS ONLY (the events those operations publish, nothing stored)"),
    ):
        r = results.get(f"hot_{mode}")
        if r:
            print(
                f"hot video, {how}: {r['likes_per_s']} likes/s + {r['views_per_s']} views/s "
                + (
                    f"(every like a change: {'yes' if r['likes_all_changes'] else 'NO'}) "
                    if mode == "ops"
                    else ""
                )
                + f"-> {r['updates_per_viewer_per_s']} updates/s per viewer; last update = "
                f"{'database' if mode == 'ops' else 'last published'} for "
                f"{r['viewers_whose_last_update_equals_db']} viewers (load {r['load']:.2f})"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
