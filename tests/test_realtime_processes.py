"""/ws across real `reelwire serve` processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import orjson
import pytest

from reelwire.embedded import EmbeddedRedis
from tests.conftest import TEST_SECRET, Backends, Catalog
from tests.test_serve import Server
from tests.wsclient import Socket


def server_env(backends: Backends, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": backends.database_url,
        "REDIS_URL": redis_url or backends.redis_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "INLINE_WORKER": "false",
        "RATE_LIMITS_ENABLED": "false",
        "PRESENCE_TTL_SECONDS": "2",
        **extra,
    }


class Cluster:
    """Some server processes and an HTTP session to talk to them."""

    def __init__(self, servers: list[Server], http: aiohttp.ClientSession) -> None:
        self.servers = servers
        self.http = http

    async def register(self, name: str, server: int = 0) -> dict[str, Any]:
        body = {"username": name, "email": f"{name}@example.com", "password": "Passw0rd!"}
        async with self.http.post(f"{self.url(server)}/api/auth/register", json=body) as resp:
            data = await resp.json()
            assert resp.status == 201, data
        return {"id": data["user"]["id"], "token": data["tokens"]["access_token"]}

    def url(self, server: int) -> str:
        return self.servers[server].url

    async def socket(self, server: int, token: str | None = None) -> Socket:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await Socket.open(self.http, f"{self.url(server)}/ws", headers=headers)

    async def comment(
        self, server: int, token: str, video: str, text: str
    ) -> aiohttp.ClientResponse:
        async with self.http.post(
            f"{self.url(server)}/api/videos/{video}/comments",
            json={"content": text},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            await resp.read()
            return resp


@pytest.fixture
async def cluster(tmp_path: Path, backends: Backends, reset: None) -> AsyncIterator[Cluster]:
    servers = [Server(tmp_path / f"home{i}", server_env(backends)) for i in range(2)]
    try:
        for server in servers:
            server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            yield Cluster(servers, http)
    finally:
        for server in servers:
            server.stop()


async def test_events_fan_out_to_sockets_on_both_processes_and_presence_heals(
    cluster: Cluster, catalog: Catalog
) -> None:
    owner = await cluster.register("owner")
    fan = await cluster.register("fan", server=1)
    video = await catalog.video(owner["id"])
    on_a = await cluster.socket(0, owner["token"])
    on_b = await cluster.socket(1)
    assert on_a.welcome["node"] != on_b.welcome["node"]
    for sock in (on_a, on_b):
        assert (await sock.subscribe(f"video:{video}"))["type"] == "subscribed"

    actor = await cluster.socket(1, fan["token"])
    assert (await actor.call("like", video_id=video, action="like"))["type"] == "ack"
    assert (await cluster.comment(0, fan["token"], video, "from A")).status == 201
    for sock in (on_a, on_b):
        comment = await sock.expect("new_comment")
        assert comment["comment"]["content"] == "from A" and comment["offset"] == 1
        await sock.until(
            lambda m: (
                m.get("type") == "video_update"
                and m["data"]["like_count"] == 1
                and m["data"]["comment_count"] == 1
                and m["data"]["viewer_count"] == 2
            )
        )
    refused = await on_b.subscribe(f"user:{owner['id']}")
    assert refused["error"]["code"] == "UNAUTHORIZED"

    # process B dies without a goodbye: its share of the viewers expires
    cluster.servers[1].proc.send_signal(signal.SIGKILL)
    cluster.servers[1].proc.wait()
    await on_a.until(
        lambda m: m.get("type") == "video_update" and m["data"]["viewer_count"] == 1, timeout=10
    )


async def test_a_forced_disconnect_recovers_without_a_gap(
    cluster: Cluster, catalog: Catalog
) -> None:
    owner = await cluster.register("owner")
    video = await catalog.video(owner["id"])
    channel = f"video:{video}"
    sock = await cluster.socket(0)
    await sock.subscribe(channel)
    epoch = (await sock.subscribe(channel))["epoch"]

    async def stream() -> list[str]:
        posted = []
        for n in range(30):
            await cluster.comment(n % 2, owner["token"], video, f"comment {n}")
            posted.append(f"comment {n}")
            await asyncio.sleep(0.02)
        return posted

    writer = asyncio.create_task(stream())
    received: list[dict[str, Any]] = []
    while len(received) < 8:
        received.append(await sock.expect("new_comment"))
    sock.ws._response.connection.transport.abort()  # the network drops, no close frame
    await asyncio.sleep(0.3)

    back = await cluster.socket(1)
    answer = await back.subscribe(channel, since={"offset": received[-1]["offset"], "epoch": epoch})
    assert answer["recovered"] is True
    posted = await writer
    while len(received) < len(posted):
        received.append(await back.expect("new_comment"))
    assert [m["comment"]["content"] for m in received] == posted
    assert [m["offset"] for m in received] == list(range(1, 31))


class StalledReader:
    """A raw WebSocket client with a tiny receive buffer that stops reading after subscribing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n", 1)[0]

    def send(self, message: dict[str, Any]) -> None:
        payload = orjson.dumps(message)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        self.sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)

    def read_until_close(self, timeout: float = 10) -> tuple[int, int]:
        """Read frames until a close frame; (text frames seen, close code)."""
        self.sock.settimeout(timeout)
        buffer, texts = b"", 0
        while True:
            while len(buffer) < 2 or len(buffer) < _frame_size(buffer):
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise AssertionError(f"connection ended without a close frame ({texts} texts)")
                buffer += chunk
            size = _frame_size(buffer)
            frame, buffer = buffer[:size], buffer[size:]
            opcode, payload = frame[0] & 0x0F, frame[_header_size(frame) :]
            if opcode == 0x8:
                return texts, struct.unpack("!H", payload[:2])[0]
            texts += opcode == 0x1


def _header_size(buffer: bytes) -> int:
    length = buffer[1] & 0x7F
    return 2 + (2 if length == 126 else 8 if length == 127 else 0)


def _frame_size(buffer: bytes) -> int:
    length = buffer[1] & 0x7F
    if length == 126:
        if len(buffer) < 4:
            return 4
        length = struct.unpack("!H", buffer[2:4])[0]
    elif length == 127:
        if len(buffer) < 10:
            return 10
        length = struct.unpack("!Q", buffer[2:10])[0]
    return _header_size(buffer) + length


async def test_a_stalled_reader_is_closed_and_the_others_get_everything(
    tmp_path: Path, backends: Backends, reset: None, catalog: Catalog
) -> None:
    server = Server(
        tmp_path / "home",
        server_env(backends, WS_QUEUE_BYTES="65536", WS_SEND_BUFFER_BYTES="16384"),
    )
    try:
        server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            cluster = Cluster([server], http)
            owner = await cluster.register("owner")
            video = await catalog.video(owner["id"])
            stalled = StalledReader(server.port)
            stalled.send({"type": "subscribe", "channel": f"video:{video}"})
            healthy = [await cluster.socket(0) for _ in range(3)]
            for sock in healthy:
                await sock.subscribe(f"video:{video}")
            text = "x" * 950
            count = 400
            semaphore = asyncio.Semaphore(8)

            async def post(n: int) -> None:
                async with semaphore:
                    resp = await cluster.comment(0, owner["token"], video, f"{n} {text}")
                    assert resp.status == 201

            await asyncio.gather(*(post(n) for n in range(count)))
            for sock in healthy:
                got = [await sock.expect("new_comment") for _ in range(count)]
                assert sorted(m["offset"] for m in got) == list(range(1, count + 1))
            texts, code = await asyncio.to_thread(stalled.read_until_close)
            assert code == 4008 and texts < count
    finally:
        server.stop()


async def test_a_redis_restart_mid_stream_loses_nothing(
    tmp_path: Path, backends: Backends, reset: None, catalog: Catalog, db: asyncpg.Connection
) -> None:
    port = _free_port()
    redis = EmbeddedRedis(tmp_path / "redis", durable=True, port=port)
    redis.start()
    url = f"redis://127.0.0.1:{port}/0"
    servers = [Server(tmp_path / f"home{i}", server_env(backends, url)) for i in range(2)]
    try:
        for server in servers:
            server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            cluster = Cluster(servers, http)
            owner = await cluster.register("owner")
            fans = [await cluster.register(f"fan{i}") for i in range(6)]
            video = await catalog.video(owner["id"])
            watcher = await cluster.socket(0)
            await watcher.subscribe(f"video:{video}")

            async def like(n: int) -> int:
                async with http.post(
                    f"{cluster.url(n % 2)}/api/videos/{video}/like",
                    json={"action": "like"},
                    headers={"Authorization": f"Bearer {fans[n]['token']}"},
                ) as resp:
                    return resp.status

            delivered: list[str] = []
            for n in range(3):
                assert (
                    await cluster.comment(1, owner["token"], video, f"before {n}")
                ).status == 201
                delivered.append(f"before {n}")
            assert await like(0) == 200

            redis.stop()
            for n in range(3):
                resp = await cluster.comment(1, owner["token"], video, f"during {n}")
                if resp.status == 201:  # or 503 if the write needed Redis itself
                    delivered.append(f"during {n}")
            statuses = [await like(n) for n in (1, 2)]
            redis.start()

            for n in range(3):
                assert (await cluster.comment(1, owner["token"], video, f"after {n}")).status == 201
                delivered.append(f"after {n}")
            statuses += [await like(n) for n in (3, 4, 5)]

            got = [await watcher.expect("new_comment", timeout=15) for _ in delivered]
            assert [m["comment"]["content"] for m in got] == delivered
            assert [m["offset"] for m in got] == list(range(1, len(delivered) + 1))
            stored = await db.fetchval("SELECT like_count FROM videos WHERE id = $1", UUID(video))
            assert stored == 1 + statuses.count(200)
            await watcher.until(
                lambda m: m.get("type") == "video_update" and m["data"]["like_count"] == stored,
                timeout=10,
            )
            assert not [m for m in watcher.inbox if m.get("recovered") is False]
    finally:
        for server in servers:
            server.stop()
        redis.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_processes_runs_peers_on_one_port(
    tmp_path: Path, backends: Backends, reset: None, catalog: Catalog
) -> None:
    server = Server(tmp_path / "home", server_env(backends, WEB_CONCURRENCY="2"))
    try:
        server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            cluster = Cluster([server], http)
            owner = await cluster.register("owner")
            video = await catalog.video(owner["id"])
            # The kernel spreads connections over the processes listening; the second one may
            # still be starting when the first answers /healthz, so keep connecting a while.
            sockets = [await cluster.socket(0) for _ in range(16)]
            deadline = time.monotonic() + 20
            while len({s.welcome["node"] for s in sockets}) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                sockets.append(await cluster.socket(0))
            nodes = {sock.welcome["node"] for sock in sockets}
            assert len(nodes) == 2, nodes  # the kernel spread them over both processes
            for sock in sockets:
                await sock.subscribe(f"video:{video}")
            assert (await cluster.comment(0, owner["token"], video, "to all")).status == 201
            for sock in sockets:
                assert (await sock.expect("new_comment"))["comment"]["content"] == "to all"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    finally:
        server.stop()
