"""Publishing events: each encoded once, sent to the channel's Redis pub/sub channel.

Two kinds of message travel on a channel (ARCHITECTURE.md, PROTOCOL.md):

- *history* events (a comment, a processing status, a clip): a Lua script gives each the next
  offset of its channel, appends it to the channel's bounded history (a stream) and publishes
  `H <epoch> <offset> <frame>`, where `frame` is the exact JSON a socket receives. A client that
  missed some recovers them by offset.
- *state* events (`video_update`): absolute values that a newer one replaces, so they are not
  kept, they are published as `S <json>` and every web process coalesces them per channel.

Publishers call this only after their transaction committed. If Redis is unreachable the change
is already made, so the event waits in a bounded in-process outbox, in order, and goes out when
Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pubsub import keys

logger = logging.getLogger(__name__)

Prepare = Callable[[Pipeline], Awaitable[object]]

HISTORY_PREFIX = b"H "
STATE_PREFIX = b"S "
OUTBOX_LIMIT = 10_000
POSITION_TTL = 30 * 86400  # a quiet channel keeps its epoch, so "nothing missed" still recovers

# KEYS: position hash, history stream. ARGV: new epoch, frame without its closing brace,
# history size, history ttl, position ttl, Redis channel.
_PUBLISH_WITH_HISTORY = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
  redis.call('DEL', KEYS[2])
end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local frame = ARGV[2] .. ',"offset":' .. offset .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'f', frame)
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[6], 'H ' .. epoch .. ' ' .. offset .. ' ' .. frame)
return offset
"""

_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


def new_epoch() -> str:
    """A fresh epoch: any value a client cannot have seen before."""
    return os.urandom(4).hex()


def now_ms() -> int:
    """Publish time carried as `ts` (milliseconds since the epoch)."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class _Message:
    channel: str
    body: bytes  # the event JSON, `ts` included
    history: bool
    first: Prepare | None


class EventBus:
    """Publishes events for one process; owns the outbox used while Redis is away."""

    def __init__(self, client: aioredis.Redis, *, history_size: int, history_ttl: int) -> None:
        self._client = client
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._script = client.register_script(_PUBLISH_WITH_HISTORY)
        self._outbox: deque[_Message] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self.dropped = 0

    async def publish(self, channel: str, event: dict[str, Any]) -> None:
        """Send a history event: it gets an offset and can be recovered by clients who missed it."""
        await self._send(_Message(channel, _encode(event), True, None))

    async def publish_state(
        self, channel: str, event: dict[str, Any], *, first: Prepare | None = None
    ) -> None:
        """Send a state event (absolute values a newer one replaces); not kept in history.

        `first` may queue commands (a cache update the event must not overtake) that go out in
        the same round trip, ahead of the publish.
        """
        await self._send(_Message(channel, _encode(event), False, first))

    @property
    def backlog(self) -> int:
        """Events waiting for Redis to come back."""
        return len(self._outbox)

    async def aclose(self, timeout: float = 2.0) -> None:
        """Give a waiting outbox a last chance, then stop."""
        if self._drainer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._drainer), timeout)
        if not self._drainer.done():
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
            logger.warning("%d event(s) not published: Redis did not come back", self.backlog)

    async def _send(self, message: _Message) -> None:
        if not self._outbox:
            try:
                await self._execute(message)
                return
            except _REDIS_DOWN as exc:
                logger.warning("Redis unreachable, holding events until it answers: %r", exc)
        self._hold(message)

    def _hold(self, message: _Message) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.error("event outbox full: %d oldest event(s) dropped", self.dropped)
        self._outbox.append(message)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="event-outbox")

    async def _drain(self) -> None:
        delay = 0.1
        while self._outbox:
            try:
                await self._execute(self._outbox[0])
            except _REDIS_DOWN:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self._outbox.popleft()
            delay = 0.1
        logger.info("Redis is back; held events published")

    async def _execute(self, message: _Message) -> None:
        redis_channel = keys.redis_channel(message.channel)
        if message.history:
            # One EVALSHA round trip (a pipeline would first ask SCRIPT EXISTS every time).
            await self._script(
                keys=[keys.history_position(message.channel), keys.history_stream(message.channel)],
                args=[
                    new_epoch(),
                    message.body[:-1],
                    self._history_size,
                    self._history_ttl,
                    POSITION_TTL,
                    redis_channel,
                ],
            )
            return
        async with self._client.pipeline(transaction=False) as pipe:
            if message.first is not None:
                await message.first(pipe)
            pipe.publish(redis_channel, STATE_PREFIX + message.body)
            await pipe.execute()


def _encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps({**event, "ts": now_ms()})
