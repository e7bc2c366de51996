"""`reelwire loadtest`: many WebSocket viewers over some videos, with optional actions.

Viewers are lean asyncio protocols, not full WebSocket clients: one load process has to take in
every frame that thousands of sockets receive, so a frame costs a header parse and two byte
searches (`"ts":`, `"offset":`); only the server's own replies are parsed as JSON. Latency is
receipt time minus the event's `ts` (its publish time). A viewer the server closes (1012 on a
restart, 4008 when too slow) reconnects after a random 1-5 s and resubscribes with `since`;
the summary counts how often that recovered the gap.

The same viewer speaks two other dialects, for scripts/bench_fanout: `plain` (a bare broadcaster
that takes the same subscribe message) and `socketio` (Engine.IO 4 over a WebSocket).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

BUCKET_MS = 0.1
BUCKETS = 50_000  # up to 5 s in 0.1 ms steps; beyond that only the maximum is exact


@dataclass
class Latency:
    """A fixed histogram of publish-to-receipt latencies."""

    counts: list[int] = field(default_factory=lambda: [0] * (BUCKETS + 1))
    samples: int = 0
    worst: float = 0.0

    def add(self, ms: float) -> None:
        """Record one latency in milliseconds."""
        self.samples += 1
        if ms > self.worst:
            self.worst = ms
        index = int(ms / BUCKET_MS) if ms > 0 else 0
        self.counts[index if index < BUCKETS else BUCKETS] += 1

    def percentile(self, p: float) -> float:
        """The p-th percentile in ms (0 when empty)."""
        if not self.samples:
            return 0.0
        wanted, seen = self.samples * p / 100, 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= wanted:
                return min(index * BUCKET_MS, self.worst)
        return self.worst

    def summary(self) -> dict[str, float]:
        """p50/p95/p99/max, rounded."""
        return {
            "p50": round(self.percentile(50), 1),
            "p95": round(self.percentile(95), 1),
            "p99": round(self.percentile(99), 1),
            "max": round(self.worst, 1),
        }


@dataclass
class Totals:
    """What every viewer of one load process adds to."""

    connected: int = 0
    failed: int = 0
    messages: int = 0
    events: int = 0  # messages carrying a publish time
    video_updates: int = 0
    reconnects: int = 0
    gaps_recovered: int = 0
    gaps_lost: int = 0
    closes: dict[int, int] = field(default_factory=dict)
    latency: Latency = field(default_factory=Latency)  # events (comments, clips, statuses)
    update_latency: Latency = field(default_factory=Latency)  # coalesced video_update

    def reset(self) -> None:
        """Start a measurement window (connections stay counted)."""
        self.messages = self.events = self.video_updates = 0
        self.latency, self.update_latency = Latency(), Latency()


class Viewer(asyncio.Protocol):
    """One WebSocket watching one channel."""

    def __init__(self, totals: Totals, channel: str, dialect: str, path: str, host: str) -> None:
        self.totals = totals
        self.channel = channel
        self.dialect = dialect
        self.path = path
        self.host = host
        self.transport: Any = None  # asyncio's or uvloop's transport
        self.buffer = bytearray()
        self.upgraded = False
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.offset: int | None = None
        self.epoch: str | None = None
        self.since: dict[str, Any] | None = None
        self.close_code: int | None = None
        self.last_update = b""

    # --- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if b" 101 " not in status:
                self.ready.set_exception(ConnectionError(status.decode(errors="replace")))
                self._abort()
                return
            self.upgraded = True
            self._on_open()
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1] & 0x7F
            head = 2
            if second == 126:
                if size - pos < 4:
                    break
                second = (buffer[pos + 2] << 8) | buffer[pos + 3]
                head = 4
            elif second == 127:
                if size - pos < 10:
                    break
                second = struct.unpack_from("!Q", buffer, pos + 2)[0]
                head = 10
            end = pos + head + second
            if end > size:
                break
            opcode = first & 0x0F
            payload = bytes(buffer[pos + head : end])
            pos = end
            if opcode == 0x1:
                self._on_text(payload)
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self._send(0x8, payload[:2])
                self._abort()
                break
        del buffer[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0xFE, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0xFF, size)
        self.transport.write(header + mask + masked)

    def send_json(self, message: Any) -> None:
        """A text frame."""
        self._send(0x1, orjson.dumps(message))

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- the dialects -----------------------------------------------------------------------

    def _on_open(self) -> None:
        if self.dialect == "socketio":
            return  # the server speaks first (the Engine.IO open packet)
        subscribe: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
        if self.since is not None:
            subscribe["since"] = self.since
        self.send_json(subscribe)

    def _on_text(self, payload: bytes) -> None:
        totals = self.totals
        if self.dialect == "socketio":
            if payload[:2] != b"42":
                self._on_engineio(payload)
                return
        elif payload[:21] in (b'{"type":"subscribed",', b'{"type":"welcome","se') or (
            payload[:16] == b'{"type":"error",'
        ):
            self._on_control(orjson.loads(payload))
            return
        totals.messages += 1
        update = payload[9:21] == b"video_update"
        if update:
            totals.video_updates += 1
            self.last_update = payload
        at = payload.rfind(b'"ts":')
        if at > 0:
            end = at + 5
            while payload[end] in b"0123456789":
                end += 1
            sent = int(payload[at + 5 : end])
            if sent and update:
                totals.update_latency.add(time.time() * 1000 - sent)
            elif sent:
                totals.events += 1
                totals.latency.add(time.time() * 1000 - sent)
        at = payload.rfind(b'"offset":')
        if at > 0 and payload[9:21] != b"video_update":
            end = at + 9
            while payload[end] in b"0123456789":
                end += 1
            offset = int(payload[at + 9 : end])
            if self.offset is not None and offset > self.offset + 1:
                totals.gaps_lost += 1
            self.offset = offset if self.offset is None else max(self.offset, offset)

    def _on_control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribed":
            if self.since is not None:
                if message.get("recovered"):
                    self.totals.gaps_recovered += 1
                else:
                    self.totals.gaps_lost += 1
                self.since = None
            self.epoch = message.get("epoch")
            if self.offset is None or message.get("recovered") is False:
                self.offset = message.get("offset")
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == "error" and not self.ready.done():
            self.ready.set_exception(ConnectionError(json.dumps(message.get("error"))))

    def _on_engineio(self, payload: bytes) -> None:
        if payload[:1] == b"0":  # open: connect to the default namespace
            self._send(0x1, b"40")
        elif payload[:2] == b"40":  # connected: join the room
            self._send(0x1, b'42["join",' + orjson.dumps(self.channel) + b"]")
            if not self.ready.done():
                self.ready.set_result(None)
        elif payload[:1] == b"2":  # Engine.IO ping
            self._send(0x1, b"3")


@dataclass
class Target:
    """Where viewers connect."""

    host: str
    port: int
    path: str
    dialect: str = "reelwire"


async def open_viewer(
    target: Target,
    totals: Totals,
    channel: str,
    since: dict[str, Any] | None = None,
    timeout: float = 30,
) -> Viewer:
    """Connect one viewer and wait until its subscription is live."""
    loop = asyncio.get_running_loop()
    host = f"{target.host}:{target.port}"

    def viewer() -> Viewer:
        made = Viewer(totals, channel, target.dialect, target.path, host)
        made.since = since
        return made

    _, opened = await loop.create_connection(viewer, target.host, target.port)
    await asyncio.wait_for(opened.ready, timeout)
    return opened


async def keep_watching(
    target: Target, totals: Totals, channel: str, stop: asyncio.Event, reconnect: bool
) -> None:
    """One viewer for as long as `stop` is not set; reconnects with `since` when dropped."""
    since: dict[str, Any] | None = None
    first = True
    while not stop.is_set():
        try:
            viewer = await open_viewer(target, totals, channel, since)
        except (OSError, TimeoutError, ConnectionError):
            if first:
                totals.failed += 1
                return
            await asyncio.sleep(random.uniform(1, 5))
            continue
        if first:
            totals.connected += 1
            first = False
        else:
            totals.reconnects += 1
        await asyncio.wait(
            [asyncio.ensure_future(stop.wait()), viewer.closed], return_when=asyncio.FIRST_COMPLETED
        )
        if stop.is_set():
            viewer._abort()
            return
        code = viewer.close_code or 1006
        totals.closes[code] = totals.closes.get(code, 0) + 1
        if not reconnect:
            return
        if viewer.epoch is not None and viewer.offset is not None:
            since = {"offset": viewer.offset, "epoch": viewer.epoch}
        await asyncio.sleep(random.uniform(1, 5))


# --- the command -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`reelwire loadtest` options."""
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8080",
        help="the server to load; this machine only (127.0.0.1, ::1 or localhost)",
    )
    parser.add_argument(
        "--viewers", type=int, default=1000, help="WebSocket viewers to connect in all"
    )
    parser.add_argument(
        "--videos",
        type=int,
        default=1,
        help="videos to spread the viewers over (a generated 1 s clip is uploaded for each)",
    )
    parser.add_argument(
        "--video",
        action="append",
        default=[],
        metavar="ID",
        help="watch this existing video instead of uploading; repeat for several",
    )
    parser.add_argument(
        "--ramp", type=float, default=10.0, help="seconds over which the viewers connect"
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds to keep everyone after the ramp"
    )
    parser.add_argument(
        "--views-per-s", type=float, default=0.0, help="views sent per second through REST"
    )
    parser.add_argument(
        "--likes-per-s", type=float, default=0.0, help="likes sent per second through REST"
    )
    parser.add_argument(
        "--comments-per-s",
        type=float,
        default=0.0,
        help="comments posted per second through REST",
    )
    parser.add_argument(
        "--actors",
        type=int,
        default=20,
        help="registered users the views, likes and comments are spread over",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the JSON summary to this file")


def run(args: argparse.Namespace) -> int:
    """Entry point of `reelwire loadtest`."""
    parts = urlsplit(args.url)
    if parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        print(
            "reelwire loadtest: only 127.0.0.1 / ::1 (this machine) may be loaded", file=sys.stderr
        )
        return 2
    summary = asyncio.run(_load(args))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")
    return 0 if summary["failed"] == 0 else 1


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    base = f"{parts.scheme}://{parts.netloc}"
    target = Target(host, port, "/ws")
    totals = Totals()
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(base, timeout=timeout, connector=connector) as http:
        actors = [await _register(http, f"lt{os.getpid()}x{n}") for n in range(max(1, args.actors))]
        videos = list(args.video) or await _make_videos(http, actors[0], args.videos)
        channels = [f"video:{v}" for v in videos]
        print(f"loadtest: {args.viewers} viewers over {len(channels)} video(s)", file=sys.stderr)

        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        progress = asyncio.create_task(_progress(totals, started, stop))
        for n in range(args.viewers):
            channel = channels[n % len(channels)]
            tasks.append(asyncio.create_task(keep_watching(target, totals, channel, stop, True)))
            pause = args.ramp / max(1, args.viewers)
            if pause:
                await asyncio.sleep(pause)
        actions = _Actions()
        action_task = asyncio.create_task(_act(http, args, actors, videos, actions, stop))
        await asyncio.sleep(args.duration)
        stop.set()
        await asyncio.gather(*tasks, action_task, return_exceptions=True)
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
    elapsed = time.monotonic() - started
    print(file=sys.stderr)
    return {
        "viewers": args.viewers,
        "videos": len(channels),
        "connected": totals.connected,
        "failed": totals.failed,
        "messages": totals.messages,
        "video_updates": totals.video_updates,
        "messages_per_second": round(totals.messages / max(elapsed, 1e-9)),
        "latency_ms": totals.latency.summary(),
        "video_update_latency_ms": totals.update_latency.summary(),
        "reconnects": totals.reconnects,
        "gaps_recovered": totals.gaps_recovered,
        "gaps_lost": totals.gaps_lost,
        "server_closes": {str(k): v for k, v in totals.closes.items()},
        "actions": actions.__dict__,
        "seconds": round(elapsed, 1),
    }


@dataclass
class _Actions:
    views: int = 0
    likes: int = 0
    comments: int = 0
    errors: int = 0


async def _act(
    http: aiohttp.ClientSession,
    args: argparse.Namespace,
    actors: list[dict[str, str]],
    videos: list[str],
    done: _Actions,
    stop: asyncio.Event,
) -> None:
    """Views, likes (each actor alternating like/remove) and comments at the asked rates."""
    rates = {"views": args.views_per_s, "likes": args.likes_per_s, "comments": args.comments_per_s}
    if not any(rates.values()):
        await stop.wait()
        return
    liked: dict[tuple[int, str], bool] = {}
    pending: set[asyncio.Task[None]] = set()
    owed = dict.fromkeys(rates, 0.0)
    last = time.monotonic()

    async def one(kind: str) -> None:
        actor_index = random.randrange(len(actors))
        actor, video = actors[actor_index], random.choice(videos)
        headers = {"Authorization": f"Bearer {actor['token']}"}
        if kind == "views":
            url, body = f"/api/videos/{video}/view", {}
        elif kind == "likes":
            on = not liked.get((actor_index, video), False)
            liked[(actor_index, video)] = on
            url, body = f"/api/videos/{video}/like", {"action": "like" if on else "remove"}
        else:
            url, body = f"/api/videos/{video}/comments", {"content": f"load {time.time():.3f}"}
        try:
            async with http.post(url, json=body, headers=headers) as resp:
                await resp.read()
                ok = resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            setattr(done, kind, getattr(done, kind) + 1)
        else:
            done.errors += 1

    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        for kind, rate in rates.items():
            owed[kind] += rate * (now - last)
            while owed[kind] >= 1 and len(pending) < 256:
                owed[kind] -= 1
                task = asyncio.create_task(one(kind))
                pending.add(task)
                task.add_done_callback(pending.discard)
        last = now
    await asyncio.gather(*pending, return_exceptions=True)


async def _progress(totals: Totals, started: float, stop: asyncio.Event) -> None:
    last_messages, last_time = 0, time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(1)
        now = time.monotonic()
        rate = (totals.messages - last_messages) / (now - last_time)
        last_messages, last_time = totals.messages, now
        lat = totals.latency
        print(
            f"\r[{now - started:6.1f}s] connected {totals.connected} failed {totals.failed} "
            f"msgs {totals.messages} ({rate:,.0f}/s) p50 {lat.percentile(50):.1f} ms "
            f"p99 {lat.percentile(99):.1f} ms reconnects {totals.reconnects}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )


async def _register(http: aiohttp.ClientSession, name: str) -> dict[str, str]:
    body = {"username": name[:30], "email": f"{name}@load.test", "password": "Passw0rd!"}
    async with http.post("/api/auth/register", json=body) as resp:
        data = await resp.json()
        if resp.status != 201:
            raise SystemExit(f"reelwire loadtest: cannot register a user: {data}")
    return {"id": data["user"]["id"], "token": data["tokens"]["access_token"]}


async def _make_videos(http: aiohttp.ClientSession, owner: dict[str, str], count: int) -> list[str]:
    """Upload a one-second generated clip `count` times and wait until each is ready."""
    from transcode.ffmpeg import ffmpeg_path

    clip = f"/tmp/reelwire-loadtest-{os.getpid()}.mp4"
    process = await asyncio.create_subprocess_exec(
        ffmpeg_path(),
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=15:duration=1",
        "-pix_fmt",
        "yuv420p",
        clip,
    )
    if await process.wait() != 0:
        raise SystemExit("reelwire loadtest: could not generate a test clip with FFmpeg")
    headers = {"Authorization": f"Bearer {owner['token']}"}
    ids = []
    try:
        content = await asyncio.to_thread(Path(clip).read_bytes)
    finally:
        os.unlink(clip)
    for n in range(count):
        form = aiohttp.FormData()
        form.add_field("title", f"loadtest {n}")
        form.add_field("video_file", content, filename="clip.mp4", content_type="video/mp4")
        async with http.post("/api/videos", data=form, headers=headers) as resp:
            data = await resp.json()
            if resp.status != 201:
                raise SystemExit(f"reelwire loadtest: upload refused: {data}")
        ids.append(data["id"])
    for video in ids:
        for _ in range(600):
            async with http.get(f"/api/videos/{video}/status", headers=headers) as resp:
                status = (await resp.json()).get("status")
            if status == "ready":
                break
            if status == "failed":
                raise SystemExit(f"reelwire loadtest: video {video} failed to transcode")
            await asyncio.sleep(0.5)
    return ids
