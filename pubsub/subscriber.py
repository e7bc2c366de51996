"""One Redis pub/sub connection per process; a channel is subscribed while anyone local needs it.

`acquire` counts a local interest in a channel and returns once Redis has confirmed the
subscription (so nothing published afterwards can be missed); `release` drops it and unsubscribes
when the count reaches zero. Messages go to one callback with the protocol channel name and the
raw payload; nothing the callback raises stops the reader. When the connection drops, the
subscriber reconnects with backoff, subscribes again to everything still wanted, and calls
`on_reconnect` so the caller can fetch what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pubsub import keys

logger = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes], None]
OnReconnect = Callable[[], None]

_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


class ChannelSubscriber:
    """Reference-counted subscriptions over one connection, read by one task."""

    def __init__(
        self, client: aioredis.Redis, on_message: OnMessage, on_reconnect: OnReconnect
    ) -> None:
        self._client = client
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._refs: dict[str, int] = {}
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        self._connection: Any = None
        self._last_seen = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and start reading."""
        self._task = asyncio.create_task(self._run(), name="redis-subscriber")

    async def stop(self) -> None:
        """Stop reading (cancelled and awaited) and close the connection."""
        self._stopping = True
        if self._task is not None:
            # redis-py's connect can swallow a cancellation; closing the connection as well
            # makes the reader fail, and the loop then sees _stopping.
            self._task.cancel()
            await self._close()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    async def acquire(self, channel: str, timeout: float = 10.0) -> None:
        """Count one more local interest; return once the Redis subscription is confirmed."""
        count = self._refs.get(channel, 0)
        self._refs[channel] = count + 1
        name = keys.redis_channel(channel).encode()
        waiter = self._confirmed.get(name)
        if count == 0 or waiter is not None:
            if waiter is None:
                waiter = asyncio.get_running_loop().create_future()
                self._confirmed[name] = waiter
                if self._connected.is_set():
                    with contextlib.suppress(*_DOWN):
                        await self._send("SUBSCRIBE", name)
                # else: the reader subscribes to everything wanted when it (re)connects
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except BaseException:
                self.release(channel)
                raise

    def release(self, channel: str) -> None:
        """Drop one local interest; unsubscribe when it was the last."""
        count = self._refs.get(channel, 0)
        if count > 1:
            self._refs[channel] = count - 1
            return
        self._refs.pop(channel, None)
        name = keys.redis_channel(channel).encode()
        waiter = self._confirmed.pop(name, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()
        if self._connected.is_set():
            task = asyncio.create_task(self._unsubscribe(name))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _unsubscribe(self, name: bytes) -> None:
        if keys.channel_of(name) in self._refs:
            return  # wanted again meanwhile
        if self._connected.is_set():
            with contextlib.suppress(*_DOWN):
                await self._send("UNSUBSCRIBE", name)

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while not self._stopping:
            try:
                await self._connect()
                if self._stopping:  # stop() came while connecting
                    break
                if not first:
                    logger.info("Redis pub/sub back; %d channel(s) resubscribed", len(self._refs))
                    try:
                        self._on_reconnect()
                    except Exception:
                        logger.exception("recovering after a Redis reconnect failed")
                first = False
                delay = 0.1
                async with _watchdog(self):
                    await self._read()
            except Exception as exc:
                if self._stopping:
                    break
                if not isinstance(exc, _DOWN):
                    logger.exception("Redis pub/sub reader failed; reconnecting")
                elif self._connected.is_set():
                    logger.warning("Redis pub/sub connection lost: %r", exc)
                self._connected.clear()
                await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        await self._close()

    async def _connect(self) -> None:
        # A connection of our own, used by this task only: redis-py's PubSub would resubscribe
        # behind our back on reconnect, and its health checks read replies our reader expects.
        pool = self._client.connection_pool
        self._connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        await self._connection.connect()
        wanted = [keys.redis_channel(c).encode() for c in self._refs]
        for name in wanted:
            if name not in self._confirmed or self._confirmed[name].done():
                self._confirmed[name] = asyncio.get_running_loop().create_future()
        await self._send("SUBSCRIBE", *wanted) if wanted else await self._send("PING")
        self._connected.set()

    async def _send(self, *args: bytes | str) -> None:
        await self._connection.send_command(*args, check_health=False)

    async def _read(self) -> None:
        connection = self._connection
        loop = asyncio.get_running_loop()
        while True:
            response = await connection.read_response(
                timeout=math.inf, disconnect_on_error=False, push_request=True
            )
            self._last_seen = loop.time()
            kind = response[0] if isinstance(response, list) else None
            if kind == b"message":
                self._deliver(response[1], response[2])
            elif kind == b"subscribe":
                waiter = self._confirmed.get(response[1])
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def _deliver(self, name: bytes, payload: bytes) -> None:
        """Hand one message to the callback; whatever it raises, the reader reads on."""
        try:
            self._on_message(keys.channel_of(name), payload)
        except Exception:
            logger.exception("delivering a message of %r failed; reading on", name)

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            with contextlib.suppress(Exception):
                await self._client.connection_pool.release(connection)


@contextlib.asynccontextmanager
async def _watchdog(subscriber: ChannelSubscriber) -> AsyncIterator[None]:
    """PING the idle connection every 10 s; drop it when nothing came back for 25 s.

    A Redis host that vanishes without a reset would otherwise leave the reader waiting forever.
    """
    loop = asyncio.get_running_loop()
    subscriber._last_seen = loop.time()

    async def ping() -> None:
        while True:
            await asyncio.sleep(10)
            if loop.time() - subscriber._last_seen > 25:
                logger.warning("Redis pub/sub silent for 25 s; reconnecting")
                await subscriber._close()
                return
            with contextlib.suppress(*_DOWN):
                await subscriber._send("PING")

    task = asyncio.create_task(ping(), name="redis-subscriber-watchdog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
