"""Many WebSocket clients at once, cheaply: a bare protocol (no aiohttp session per socket), for
tests that open hundreds or thousands of sockets against one server."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from typing import Any

import orjson

Match = Callable[[dict[str, Any]], bool]


class Member(asyncio.Protocol):
    """One client socket: every message it got, parsed, in order."""

    def __init__(self, host: str, path: str, headers: dict[str, str] | None) -> None:
        self.host = host
        self.path = path
        self.headers = headers or {}
        self.transport: Any = None
        self.buffer = bytearray()
        self.upgraded = False
        self.messages: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.opened = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.lost = False
        self._n = 0

    # --- protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        self.transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost: {exc}"))
        self.changed.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
            del self.buffer[: end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self.upgraded = True
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            first, length = buffer[pos], buffer[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = struct.unpack_from("!H", buffer, pos + 2)[0], 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = struct.unpack_from("!Q", buffer, pos + 2)[0], 10
            end = pos + head + length
            if end > size:
                break
            opcode, payload = first & 0x0F, bytes(buffer[pos + head : end])
            pos = end
            if opcode == 0x1:
                message = orjson.loads(payload)
                self.messages.append(message)
                if message.get("type") == "welcome" and not self.opened.done():
                    self.opened.set_result(None)
                self.changed.set()
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self._send(0x8, payload[:2])
                self.transport.close()
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
        else:
            header = struct.pack("!BBH", 0x80 | opcode, 0xFE, size)
        self.transport.write(header + mask + masked)

    # --- for tests --------------------------------------------------------------------------

    def send(self, kind: str, **fields: Any) -> int:
        """Send a message with a fresh `id`; returns the id."""
        self._n += 1
        self._send(0x1, orjson.dumps({"type": kind, "id": self._n, **fields}))
        return self._n

    async def wait_for(self, match: Match, timeout: float = 10) -> dict[str, Any]:
        """The first message (of all it got) satisfying `match`."""
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for message in self.messages[seen:]:
                    if match(message):
                        return message
                seen = len(self.messages)
                if self.lost:
                    raise ConnectionError(f"closed ({self.close_code}) before a match")
                self.changed.clear()
                await self.changed.wait()

    async def reply(self, message_id: int, timeout: float = 10) -> dict[str, Any]:
        """The answer to the message sent with `message_id`."""
        return await self.wait_for(lambda m: m.get("id") == message_id, timeout)

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The messages of one type, in order."""
        return [m for m in self.messages if m.get("type") == kind]

    def abort(self) -> None:
        """Drop the connection without a close frame."""
        if self.transport is not None:
            self.transport.abort()


async def gather(
    host: str,
    port: int,
    count: int,
    *,
    headers: Callable[[int], dict[str, str]] | None = None,
    at_once: int = 200,
) -> list[Member]:
    """Open `count` sockets (`at_once` connecting at a time), each past its `welcome`."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(at_once)

    async def one(n: int) -> Member:
        async with gate:
            made = headers(n) if headers else None
            _, member = await loop.create_connection(
                lambda: Member(f"{host}:{port}", "/ws", made), host, port
            )
            await asyncio.wait_for(member.opened, 30)
            return member

    return list(await asyncio.gather(*(one(n) for n in range(count))))
