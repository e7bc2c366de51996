"""Publishing events: each encoded once, sent to the channel's Redis pub/sub channel.

Two kinds of message travel on a channel (ARCHITECTURE.md, PROTOCOL.md):

- *history* events (a comment, a processing status, a clip): a Lua script gives each the next
  offset of its channel, appends it to the channel's bounded history (a stream) and publishes
  `H <epoch> <offset> <frame>`, where `frame` is the exact JSON a socket receives. A client that
  missed some recovers them by offset.
- *state* events (`video_update`): absolute values that a newer one replaces, so they are not
  kept, they are published as `S <json>` and every web process coalesces them per channel.
- *fence* notices, `F <json>`: a video's metadata (its visibility, say) changed, published by the
  cache fence itself (`cache.reads.VideoCache.invalidate`), so a process that remembers who may
  watch the video forgets it before anyone can read the new row. The JSON is an empty
  `video_update`, which a process that does not know `F` merges as "nothing new".

On a Redis Cluster the channel is a shard channel (SPUBLISH) named with the channel's hash tag, so
the script's keys and its channel are in one slot and the message goes only to the shard that
owns it (and its replicas), where the subscribers of that channel are.

Publishers call this only after their transaction committed. If Redis is unreachable the change
is already made, so the event waits in the process's outbox (`pubsub.outbox`), in order with the
other held Redis writes, and gets its history offset when Redis answers again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from pubsub import keys
from pubsub.cluster import is_cluster
from pubsub.outbox import Outbox

Prepare = Callable[[Pipeline], Awaitable[object]]

HISTORY_PREFIX = b"H "
STATE_PREFIX = b"S "
FENCE_PREFIX = b"F "
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


def new_epoch() -> str:
    """A fresh epoch: any value a client cannot have seen before."""
    return os.urandom(4).hex()


def now_ms() -> int:
    """Publish time carried as `ts` (milliseconds since the epoch)."""
    return int(time.time() * 1000)


def fence_notice(video_id: object) -> bytes:
    """The message telling a video channel's subscribers that the video's metadata changed."""
    return FENCE_PREFIX + orjson.dumps(
        {"type": "video_update", "video_id": str(video_id), "data": {}}
    )


@dataclass(frozen=True)
class _Message:
    channel: str
    body: bytes  # the event JSON, `ts` included
    history: bool
    first: Prepare | None


class EventBus:
    """Publishes events for one process; while Redis is away they wait in the outbox."""

    def __init__(
        self, client: aioredis.Redis, outbox: Outbox, *, history_size: int, history_ttl: int
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._sharded = is_cluster(client)
        script = _PUBLISH_WITH_HISTORY
        if self._sharded:
            script = script.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
        self._script = client.register_script(script)

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

    async def _send(self, message: _Message) -> None:
        await self._outbox.run(lambda: self._execute(message))

    async def _execute(self, message: _Message) -> None:
        redis_channel = keys.redis_channel(message.channel, self._sharded)
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
        if self._sharded:
            # The commands of `first` may live on other shards than the channel: they go first,
            # in their own round trip, so the event cannot overtake them.
            if message.first is not None:
                async with self._client.pipeline(transaction=False) as pipe:
                    await message.first(pipe)
                    await pipe.execute()
            await self._client.spublish(redis_channel, STATE_PREFIX + message.body)
            return
        async with self._client.pipeline(transaction=False) as pipe:
            if message.first is not None:
                await message.first(pipe)
            pipe.publish(redis_channel, STATE_PREFIX + message.body)
            await pipe.execute()


def _encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps({**event, "ts": now_ms()})
