"""Presence: how many sockets watch a channel, summed over every live web process.

Each process writes its own share of a channel (`count:expires_at_ms`) into one hash per channel
and refreshes it well before it expires; a process that dies stops refreshing, and the next report
from anyone drops its share. The script that writes a share also sums the live shares and, when
the total changed, publishes it as a `video_update` state event, in the same atomic step, so the
order of those events on the channel is the order of the totals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from pubsub import keys
from pubsub.bus import STATE_PREFIX, now_ms
from pubsub.cluster import is_cluster

# KEYS: presence hash. ARGV: process id, its count, its share's ttl (ms), key ttl (s), Redis
# channel, the event's JSON up to the total, and after it.
_REPORT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + tonumber(ARGV[3])))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local total, last = 0, -1
local shares = redis.call('HGETALL', KEYS[1])
for i = 1, #shares, 2 do
  local name, value = shares[i], shares[i + 1]
  if name == '_total' then
    last = tonumber(value)
  else
    local sep = string.find(value, ':', 1, true)
    if tonumber(string.sub(value, sep + 1)) < now then
      redis.call('HDEL', KEYS[1], name)
    else
      total = total + tonumber(string.sub(value, 1, sep - 1))
    end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
if total ~= last then
  redis.call('HSET', KEYS[1], '_total', total)
  if ARGV[5] ~= '' then
    redis.call('PUBLISH', ARGV[5], ARGV[6] .. total .. ARGV[7])
  end
end
return total
"""


class Presence:
    """One process's reports of its socket counts per channel."""

    def __init__(self, client: aioredis.Redis, node: str, ttl_seconds: float) -> None:
        self._client = client
        self._node = node
        self._ttl_ms = int(ttl_seconds * 1000)
        self._sharded = is_cluster(client)
        script = _REPORT
        if self._sharded:  # the shard channel is in the presence hash's slot
            script = script.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
        self._script = client.register_script(script)

    async def report(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Write this process's count of each channel (0 withdraws it); the totals, by channel.

        A channel whose total changed gets a `video_update` with `viewer_count` if it is a video
        channel.
        """
        if not counts:
            return {}
        key_ttl = max(1, self._ttl_ms // 1000 * 2)

        def call(channel: str, count: int, client: Any = None) -> Any:
            prefix, suffix = _viewer_event(channel)
            return self._script(
                keys=[keys.presence(channel)],
                args=[
                    self._node,
                    count,
                    self._ttl_ms,
                    key_ttl,
                    keys.redis_channel(channel, self._sharded) if prefix else "",
                    prefix,
                    suffix,
                ],
                client=client,
            )

        totals: list[Any]
        if self._sharded:  # one script per channel, each on its own shard, all at once
            totals = list(await asyncio.gather(*(call(c, n) for c, n in counts.items())))
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                for channel, count in counts.items():
                    await call(channel, count, pipe)
                totals = await pipe.execute()
        return {channel: int(total) for channel, total in zip(counts, totals, strict=True)}

    async def total(self, channel: str) -> int:
        """The channel's last computed total (0 when nobody watches)."""
        value = await self._client.hget(keys.presence(channel), "_total")
        return int(value or 0)

    @staticmethod
    def queue_total(pipe: Any, channel: str) -> None:
        """Queue `total`'s read on a pipeline the caller runs (one reply: `int(reply or 0)`)."""
        pipe.hget(keys.presence(channel), "_total")


def _viewer_event(channel: str) -> tuple[bytes, bytes]:
    kind, _, video_id = channel.partition(":")
    if kind != "video":
        return b"", b""
    head = orjson.dumps({"type": "video_update", "video_id": video_id})[:-1]
    return (
        STATE_PREFIX + head + b',"data":{"viewer_count":',
        b'},"ts":' + str(now_ms()).encode() + b"}",
    )
