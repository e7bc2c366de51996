"""A WebSocket client for tests: send protocol messages, wait for the ones you expect."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson


class Socket:
    """One client socket; messages that are not awaited yet are kept in arrival order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}
        self._n = 0

    @classmethod
    async def open(cls, session: Any, url: str = "/ws", **kwargs: Any) -> Socket:
        """Connect and take the welcome."""
        socket = cls(await session.ws_connect(url, autoping=True, **kwargs))
        welcome = await socket.expect("welcome")
        socket.welcome = welcome
        return socket

    async def send(self, kind: str, **fields: Any) -> int:
        """Send a message with a fresh `id`; returns the id."""
        self._n += 1
        await self.ws.send_str(orjson.dumps({"type": kind, "id": self._n, **fields}).decode())
        return self._n

    async def call(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Send and wait for the reply carrying the same id."""
        message_id = await self.send(kind, **fields)
        return await self.expect(lambda m: m.get("id") == message_id)

    async def subscribe(self, channel: str, **fields: Any) -> dict[str, Any]:
        """Subscribe and return the `subscribed` (or `error`) answer."""
        return await self.call("subscribe", channel=channel, **fields)

    async def receive(self, timeout: float = 5) -> dict[str, Any]:
        """The next message (kept ones first)."""
        if self.inbox:
            return self.inbox.pop(0)
        return await self._read(timeout)

    async def _read(self, timeout: float) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout)
        if message.type is aiohttp.WSMsgType.CLOSE:
            raise ConnectionClosed(message.type, message.data, message.extra)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionClosed(message.type, self.ws.close_code, message.extra)
        data: dict[str, Any] = orjson.loads(message.data)
        return data

    async def expect(self, match: Any, timeout: float = 5) -> dict[str, Any]:
        """The first message of a type (or satisfying a predicate); others are kept."""
        test = match if callable(match) else (lambda m: m.get("type") == match)
        for i, message in enumerate(self.inbox):
            if test(message):
                return self.inbox.pop(i)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {match!r} within {timeout}s; got {self.inbox}")
            try:
                message = await self._read(left)
            except TimeoutError:
                continue
            if test(message):
                return message
            self.inbox.append(message)

    async def until(self, match: Any, timeout: float = 5) -> dict[str, Any]:
        """Like expect, but drops what does not match (for streams of updates)."""
        message = await self.expect(match, timeout)
        self.inbox.clear()
        return message

    async def closed(self, timeout: float = 10) -> int | None:
        """Wait until the server closes the socket; its close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            try:
                self.inbox.append(await self._read(deadline - asyncio.get_running_loop().time()))
            except ConnectionClosed as closed:
                return closed.code
            except TimeoutError:
                break
        raise AssertionError("socket still open")

    async def close(self) -> None:
        """Close from our side."""
        await self.ws.close()


class ConnectionClosed(Exception):
    """The socket closed (or sent something other than text) while a message was awaited."""

    def __init__(self, kind: aiohttp.WSMsgType, code: int | None, extra: Any) -> None:
        super().__init__(f"{kind.name} code={code} {extra!r}")
        self.kind = kind
        self.code = code
