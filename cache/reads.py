"""Read caches in Redis that never serve counts older than the last event published.

A cached video is a hash: `meta` (the rendered video without its counters), the counters kept
in PostgreSQL and their `version`. A counter change writes its new counts into the hash before
its event is published, and only if its version is newer; a reader refilling from PostgreSQL
cannot overwrite newer counts with the ones it read. A metadata change (edit, status, delete)
replaces the entry with a short-lived fence, so a reader that read the old row before the change
cannot put it back; the next reader after the fence refills. The fence of a video also tells its
channel (`pubsub.bus.fence_notice`, in the same step on a plain Redis), so a web process that
remembers who may watch the video forgets it.

While Redis is away every read is a miss (PostgreSQL answers), fills are skipped, and fences wait
in the outbox, ahead of anything published after them.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from pubsub import keys
from pubsub.bus import fence_notice
from pubsub.cluster import is_cluster
from pubsub.outbox import Outbox, nothing
from storage.videos import COUNTERS

VIDEO_TTL_MS = 3_600_000  # the CLUTCH API: video metadata, 1 hour
PROFILE_TTL_MS = 300_000  # follower counts, 5 minutes (a follow fences the profile anyway)
FENCE_MS = 2_000

# KEYS: entry. ARGV: meta json, like, dislike, comment, version, ttl ms.
_REFILL = """
if redis.call('HEXISTS', KEYS[1], 'fence') == 1 then
    return 0
end
local cached = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if cached >= tonumber(ARGV[5]) then
    redis.call('HSETNX', KEYS[1], 'meta', ARGV[1])
else
    redis.call('HSET', KEYS[1], 'meta', ARGV[1], 'like_count', ARGV[2], 'dislike_count', ARGV[3],
               'comment_count', ARGV[4], 'version', ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
"""

# KEYS: entry. ARGV: like, dislike, comment, version, ttl ms.
_COUNTS = """
if redis.call('HEXISTS', KEYS[1], 'fence') == 1 then
    return 0
end
local cached = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if cached >= tonumber(ARGV[4]) then
    return 0
end
redis.call('HSET', KEYS[1], 'like_count', ARGV[1], 'dislike_count', ARGV[2],
           'comment_count', ARGV[3], 'version', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS: entry. ARGV: json, ttl ms.
_PUT_UNFENCED = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
redis.call('HSET', KEYS[1], 'meta', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: entry. ARGV: fence ms.
_FENCE = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fence', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS: entry. ARGV: fence ms, Redis channel, notice. The fence, then the notice, in one step.
_FENCE_AND_TELL = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fence', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


class VideoCache:
    """Video metadata and counters, cached per video."""

    def __init__(self, client: aioredis.Redis, outbox: Outbox) -> None:
        self.redis = client
        self.outbox = outbox
        self._refill = client.register_script(_REFILL)
        self._counts = client.register_script(_COUNTS)
        self._sharded = is_cluster(client)
        # On a cluster the notice goes to the channel's shard after the fence, separately.
        self._fence = client.register_script(_FENCE if self._sharded else _FENCE_AND_TELL)

    async def get(self, video_id: UUID) -> dict[str, Any] | None:
        """The cached video (meta with counters merged in), or None."""
        raw: dict[bytes | str, bytes | str] = await self.outbox.read(
            lambda: self.redis.hgetall(keys.video_cache(video_id)), _empty_hash
        )
        return self.from_hash(raw)

    @staticmethod
    def queue_get(pipe: Any, video_id: UUID) -> None:
        """Queue the read `get` does on a pipeline the caller runs (one reply, for `from_hash`)."""
        pipe.hgetall(keys.video_cache(video_id))

    @staticmethod
    def from_hash(raw: Any) -> dict[str, Any] | None:
        """The cached video from its hash as read, or None (not cached, or fenced)."""
        if not raw or b"meta" not in raw:
            return None
        video: dict[str, Any] = orjson.loads(raw[b"meta"])
        for name in COUNTERS:
            video[name] = int(raw[name.encode()])
        video["counts_version"] = int(raw[b"version"])
        return video

    async def put(self, video_id: UUID, video: dict[str, Any]) -> None:
        """Cache a video read from PostgreSQL (refused while fenced or if counts are older)."""
        meta = {k: v for k, v in video.items() if k not in COUNTERS and k != "counts_version"}
        await self.outbox.read(
            lambda: self._refill(
                keys=[keys.video_cache(video_id)],
                args=[
                    orjson.dumps(meta),
                    *(video[name] for name in COUNTERS),
                    video["counts_version"],
                    VIDEO_TTL_MS,
                ],
            ),
            nothing,
        )

    async def set_counts(
        self,
        video_id: UUID,
        counts: dict[str, int],
        version: int,
        pipe: Pipeline | None = None,
    ) -> None:
        """Newer counters for a video (ignored if the cache already has these or newer);
        queued on `pipe` when one is given (on a cluster, where a pipeline cannot carry
        scripts, run now)."""
        await self._counts(
            keys=[keys.video_cache(video_id)],
            args=[*(counts[name] for name in COUNTERS), version, VIDEO_TTL_MS],
            client=pipe if isinstance(pipe, Pipeline) else None,
        )

    async def invalidate(self, video_id: UUID) -> None:
        """The video's metadata changed: fence it so no reader caches the old row, and tell its
        channel's subscribers."""
        entry = keys.video_cache(video_id)
        channel = keys.redis_channel(keys.video_channel(video_id), self._sharded)
        notice = fence_notice(video_id)

        async def fence_and_tell() -> None:
            if not self._sharded:
                await self._fence(keys=[entry], args=[FENCE_MS, channel, notice])
                return
            await self._fence(keys=[entry], args=[FENCE_MS])
            await self.redis.spublish(channel, notice)

        await self.outbox.run(fence_and_tell)


class ProfileCache:
    """Public profiles, fenced on every change (profile edit, follow, unfollow)."""

    def __init__(self, client: aioredis.Redis, outbox: Outbox) -> None:
        self.redis = client
        self.outbox = outbox
        self._put = client.register_script(_PUT_UNFENCED)
        self._fence = client.register_script(_FENCE)

    async def get(self, user_id: UUID) -> dict[str, Any] | None:
        """The cached profile, or None."""
        raw = await self.outbox.read(
            lambda: self.redis.hget(keys.profile_cache(user_id), "meta"), nothing
        )
        return orjson.loads(raw) if raw else None

    async def put(self, user_id: UUID, profile: dict[str, Any]) -> None:
        """Cache a profile read from PostgreSQL, unless fenced."""
        await self.outbox.read(
            lambda: self._put(
                keys=[keys.profile_cache(user_id)], args=[orjson.dumps(profile), PROFILE_TTL_MS]
            ),
            nothing,
        )

    async def invalidate(self, *user_ids: UUID) -> None:
        """These profiles changed."""

        async def fence() -> None:
            for user_id in user_ids:
                await self._fence(keys=[keys.profile_cache(user_id)], args=[FENCE_MS])

        await self.outbox.run(fence)


# KEYS: entry. ARGV: field, value, ttl ms. Adds one variant unless fenced; the entry lives as
# long as its shortest-lived variant allows.
_PUT_VARIANT = """
if redis.call('HEXISTS', KEYS[1], 'fence') == 1 then
    return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or ttl > tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""


class ClipFeedCache:
    """Each user's rendered followed-clips feed (one variant per page size), as response bytes.

    Fenced when someone they follow adds, removes or finishes a clip, and when they follow or
    unfollow; it expires by itself when its earliest clip does.
    """

    def __init__(self, client: aioredis.Redis, outbox: Outbox) -> None:
        self.redis = client
        self.outbox = outbox
        self._put = client.register_script(_PUT_VARIANT)
        self._fence = client.register_script(_FENCE)

    async def get(self, user_id: UUID, variant: str) -> bytes | None:
        """The cached response body, or None."""
        raw = await self.outbox.read(
            lambda: self.redis.hget(keys.clip_feed_cache(user_id), variant), nothing
        )
        return raw.encode() if isinstance(raw, str) else raw

    async def put(self, user_id: UUID, variant: str, body: bytes, ttl_ms: int) -> None:
        """Cache a rendered feed for at most `ttl_ms`, unless fenced."""
        if ttl_ms > 0:
            await self.outbox.read(
                lambda: self._put(
                    keys=[keys.clip_feed_cache(user_id)], args=[variant, body, ttl_ms]
                ),
                nothing,
            )

    async def invalidate(self, user_ids: list[UUID]) -> None:
        """These users' feeds changed."""

        async def fence() -> None:
            if is_cluster(self.redis):  # a pipeline of scripts cannot span shards
                for user_id in user_ids:
                    await self._fence(keys=[keys.clip_feed_cache(user_id)], args=[FENCE_MS])
                return
            async with self.redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    await self._fence(
                        keys=[keys.clip_feed_cache(user_id)], args=[FENCE_MS], client=pipe
                    )
                await pipe.execute()

        await self.outbox.run(fence)


async def _empty_hash() -> dict[bytes | str, bytes | str]:
    return {}
