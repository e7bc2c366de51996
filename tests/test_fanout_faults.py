"""A socket that fails mid fan-out costs only itself: the others get every event, in order.

Sockets here are real TCP connections: half of them are bare streams that the tests break under
the server (a transport shut for writing, a peer that resets its connection), the others are
ordinary clients that must see every offset, and the Redis reader must keep reading.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from pubsub.bus import EventBus
from pubsub.outbox import Outbox
from realtime.connection import Connection
from realtime.endpoint import HUB
from realtime.hub import Hub
from tests.conftest import TEST_SECRET, Api, Backends, Catalog
from tests.test_serve import Server
from tests.wsclient import Socket


class RawSocket:
    """A WebSocket client over a bare TCP stream, so a test can break it however it likes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.session = ""

    @classmethod
    async def open(cls, port: int) -> RawSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b" 101 " in head.split(b"\r\n", 1)[0], head
        raw = cls(reader, writer)
        welcome = await raw.message()
        assert welcome["type"] == "welcome", welcome
        raw.session = welcome["session"]
        return raw

    def send(self, message: dict[str, Any]) -> None:
        payload = orjson.dumps(message)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        self.writer.write(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)

    async def message(self, timeout: float = 5) -> dict[str, Any]:
        """The next text frame, as JSON (other frames are skipped)."""
        while True:
            head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            size = head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(size)
            if head[0] & 0x0F == 0x1:
                data: dict[str, Any] = orjson.loads(payload)
                return data

    async def subscribe(self, channel: str) -> None:
        """Subscribe and wait for the answer: from then on the hub writes to this socket."""
        self.send({"type": "subscribe", "id": 1, "channel": channel})
        while (await self.message()).get("type") != "subscribed":
            pass

    def reset(self) -> None:
        """Drop the connection the rude way: an RST, no close frame, no FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def server_connection(hub: Hub, session: str) -> Connection:
    return next(conn for conn in hub.connections if conn.session == session)


async def publish(bus: EventBus, channel: str, first: int, count: int) -> None:
    for n in range(first, first + count):
        await bus.publish(channel, {"type": "new_comment", "n": n})


async def comments(sock: Socket, count: int) -> list[dict[str, Any]]:
    return [await sock.expect("new_comment", timeout=10) for _ in range(count)]


@pytest.fixture
async def bus(backends: Backends) -> Any:
    client = aioredis.Redis.from_url(backends.redis_url)
    yield EventBus(client, Outbox(), history_size=10_000, history_ttl=600)
    await client.aclose()


async def test_sockets_whose_transport_fails_mid_fan_out_cost_only_themselves(
    api: Api, catalog: Catalog, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="realtime.connection")
    owner = await api.register()
    channel = f"video:{await catalog.video(owner['id'])}"
    hub = api.client.app[HUB]
    port = api.client.port
    # Members in join order: good, broken, good, broken, ... so every failure is mid fan-out.
    good: list[Socket] = []
    broken: list[RawSocket] = []
    for n in range(7):
        if n % 2 == 0:
            sock = await Socket.open(api.client)
            assert (await sock.subscribe(channel))["type"] == "subscribed"
            good.append(sock)
        else:
            raw = await RawSocket.open(port)
            await raw.subscribe(channel)
            broken.append(raw)
    feed = hub.channels.feeds[channel]
    assert len(feed.members) == 7
    victims = [server_connection(hub, raw.session) for raw in broken]
    for conn in victims:
        # The server's transport is shut for writing under the socket: its next write raises
        # RuntimeError ("Cannot call write() after write_eof()"), the peer never notices.
        conn._transport.write_eof()

    await publish(bus, channel, 0, 50)
    for sock in good:
        got = await comments(sock, 50)
        assert [m["offset"] for m in got] == list(range(1, 51))
        assert [m["n"] for m in got] == list(range(50))
    assert all(conn.closed for conn in victims)
    failures = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert len(failures) == len(victims), [r.getMessage() for r in failures]

    # The reader is alive and the failed sockets are gone: later events reach everyone left.
    for _ in range(50):
        if not any(conn in hub.connections for conn in victims):
            break
        await asyncio.sleep(0.05)
    assert not any(conn in hub.connections for conn in victims)
    assert len(feed.members) == len(good)
    assert hub.channels.subscriber._task is not None and not hub.channels.subscriber._task.done()
    await publish(bus, channel, 50, 10)
    for sock in good:
        assert [m["offset"] for m in await comments(sock, 10)] == list(range(51, 61))
    assert feed.offset == 60


async def test_any_exception_from_a_send_drops_that_socket_only(
    api: Api, catalog: Catalog, bus: EventBus
) -> None:
    class Faulty(Connection):
        __slots__ = ()

        def send(self, frame: bytes) -> None:
            raise ValueError("a bug in one socket's send")

    owner = await api.register()
    channel = f"video:{await catalog.video(owner['id'])}"
    hub = api.client.app[HUB]
    sockets = [await Socket.open(api.client) for _ in range(3)]
    for sock in sockets:
        await sock.subscribe(channel)
    middle = server_connection(hub, sockets[1].welcome["session"])
    middle.__class__ = Faulty  # the second of three members raises on every send

    await publish(bus, channel, 0, 20)
    for sock in (sockets[0], sockets[2]):
        assert [m["offset"] for m in await comments(sock, 20)] == list(range(1, 21))
    assert middle.closed
    await sockets[1].closed()  # cut off, not left hanging
    await publish(bus, channel, 20, 5)
    for sock in (sockets[0], sockets[2]):
        assert [m["offset"] for m in await comments(sock, 5)] == list(range(21, 26))


async def test_peers_resetting_mid_stream_never_cost_the_others_an_event(
    tmp_path: Path, backends: Backends, reset: None, catalog: Catalog, bus: EventBus
) -> None:
    """A real `reelwire serve` (uvloop): peers that reset while events stream, many times."""
    server = Server(
        tmp_path / "home",
        {
            "DATABASE_URL": backends.database_url,
            "REDIS_URL": backends.redis_url,
            "JWT_SECRET_KEY": TEST_SECRET,
            "INLINE_WORKER": "false",
            "RATE_LIMITS_ENABLED": "false",
            "LOG_LEVEL": "DEBUG",  # a socket dropped for a failed write is a DEBUG line
        },
    )
    try:
        server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            body = {"username": "owner", "email": "owner@example.com", "password": "Passw0rd!"}
            async with http.post(f"{server.url}/api/auth/register", json=body) as resp:
                assert resp.status == 201
                owner = (await resp.json())["user"]["id"]
            channel = f"video:{await catalog.video(owner)}"
            steady = [await Socket.open(http, f"{server.url}/ws") for _ in range(3)]
            for sock in steady:
                await sock.subscribe(channel)

            total = 3000
            streaming = asyncio.create_task(publish(bus, channel, 0, total))
            resets = 0
            while not streaming.done():
                rude = []
                for _ in range(6):
                    raw = await RawSocket.open(server.port)
                    await raw.subscribe(channel)
                    rude.append(raw)
                await asyncio.sleep(0.005)
                for raw in rude:
                    raw.reset()
                resets += len(rude)
            await streaming
            assert resets >= 60, resets
            for sock in steady:
                got = await comments(sock, total)
                assert [m["offset"] for m in got] == list(range(1, total + 1))

            # The reader still reads: a later event arrives everywhere.
            await publish(bus, channel, total, 1)
            for sock in steady:
                assert (await sock.expect("new_comment"))["offset"] == total + 1
    finally:
        server.stop()
    log = server.output()
    assert "Traceback" not in log and "reader failed" not in log, log[-3000:]
    failed = log.count("write failed")
    print(f"{resets} peers reset mid-stream, {failed} of them failed a write mid fan-out")
