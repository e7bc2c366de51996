"""View counts and watch time, counted in Redis and written to PostgreSQL in batches.

Each video has a live count in Redis (flushed + pending), so the number a viewer sees and the
number published never wait for the database. Pending deltas sit in one hash; a flush renames it
to a `flushing` hash under a lock, adds it to PostgreSQL in one statement recorded with a batch
id, then deletes it. A crash between the commit and the delete leaves the batch to be retried,
and the batch id makes the retry a no-op, so every view is counted exactly once as long as Redis
keeps its data. On a Redis Cluster the pending views are kept in `keys.VIEWS_SHARDS` groups, each
with its own hashes, lock and generation in one hash slot (a video's live count in its group's
slot too), so every script touches one slot; a flush takes the groups one by one, each batch
with its own id. What a crash can lose: nothing when a web process dies; the pending views (at
most one flush interval of them) when Redis itself loses its memory without persistence.

While Redis is away a view is added to PostgreSQL directly (the caller's fallback), and the
video's live count is rebuilt from PostgreSQL and the pending hash once Redis answers, instead
of counting those views twice or never.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from pubsub import keys
from pubsub.cluster import is_cluster
from pubsub.outbox import Outbox

logger = logging.getLogger(__name__)

LIVE_TTL_SECONDS = 7 * 86400
COLD_ATTEMPTS = 20  # rebuilding a cold live count waits at most ~0.2 s for a flush to finish
REBUILD_ATTEMPTS = 3  # ... and after views went to PostgreSQL directly, a few tries
FLUSH_LOCK_MS = 30_000

# KEYS: live, dirty, flushing, generation. ARGV: flushed count or '', generation read with it,
# views field, watch field, watch seconds, ttl. Returns the live count, or -1 when the caller
# must (re)read the flushed count from PostgreSQL first.
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    if ARGV[1] == '' or redis.call('EXISTS', KEYS[3]) == 1
       or (redis.call('GET', KEYS[4]) or '0') ~= ARGV[2] then
        return -1
    end
    local pending = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
    redis.call('SET', KEYS[1], tonumber(ARGV[1]) + pending)
end
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
if tonumber(ARGV[5]) > 0 then
    redis.call('HINCRBY', KEYS[2], ARGV[4], ARGV[5])
end
return count
"""

# KEYS: live, dirty, flushing, generation. ARGV: flushed count, generation read with it, views
# field, ttl. Sets the live count to the flushed count plus the pending views and returns it, or
# -1 when a flush came in between (the flushed count is to be read again).
_REBUILD = """
if redis.call('EXISTS', KEYS[3]) == 1 or (redis.call('GET', KEYS[4]) or '0') ~= ARGV[2] then
    return -1
end
local count = tonumber(ARGV[1]) + tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
redis.call('SET', KEYS[1], count, 'EX', ARGV[4])
return count
"""

# KEYS: dirty, flushing, lock. ARGV: token, lock ms, new batch id. Returns the batch as a flat
# field/value list (a batch left by a failed flush is resumed first), or nil when locked.
_BEGIN_FLUSH = """
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return false
end
if redis.call('EXISTS', KEYS[2]) == 0 then
    if redis.call('EXISTS', KEYS[1]) == 0 then
        redis.call('DEL', KEYS[3])
        return {}
    end
    redis.call('RENAME', KEYS[1], KEYS[2])
    redis.call('HSET', KEYS[2], '_batch', ARGV[3])
end
return redis.call('HGETALL', KEYS[2])
"""

# KEYS: flushing, lock, generation. ARGV: token. The batch is in PostgreSQL: drop it.
_END_FLUSH = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    redis.call('INCR', KEYS[3])
    redis.call('DEL', KEYS[2])
    return 1
end
return 0
"""

# KEYS: lock. ARGV: token. Give the lock up without finishing (the batch stays for a retry).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class ViewCountUnsettled(Exception):
    """The live count is cold and cannot be rebuilt now; count the view another way."""


@dataclass(frozen=True)
class ViewBatch:
    """Pending views and watch seconds per video, as taken for one flush."""

    batch_id: UUID
    views: dict[UUID, int]
    watch_seconds: dict[UUID, int]


FlushedCount = Callable[[UUID], Awaitable[int | None]]
ApplyBatch = Callable[[ViewBatch], Awaitable[None]]


class ViewCounter:
    """Counts views in Redis; `flush` moves them to PostgreSQL through `apply`."""

    def __init__(self, client: aioredis.Redis, outbox: Outbox) -> None:
        self.redis = client
        self.outbox = outbox
        self._record = client.register_script(_RECORD)
        self._rebuild = client.register_script(_REBUILD)
        self._rebuilding: set[UUID] = set()  # videos whose live count is to be rebuilt
        self._begin = client.register_script(_BEGIN_FLUSH)
        self._end = client.register_script(_END_FLUSH)
        self._release = client.register_script(_RELEASE)
        self._sharded = is_cluster(client)

    def _shard(self, video_id: UUID) -> int | None:
        return keys.views_shard(video_id) if self._sharded else None

    async def record(
        self, video_id: UUID, watch_seconds: int, flushed_count: FlushedCount
    ) -> int | None:
        """Count one view; the live count, or None when the video does not exist."""
        field_views, field_watch = f"v:{video_id}", f"w:{video_id}"
        shard = self._shard(video_id)
        group = keys.view_keys(shard)
        live_keys = [
            keys.live_views(video_id, shard),
            group.dirty,
            group.flushing,
            group.generation,
        ]
        args: list[str | int] = ["", "", field_views, field_watch, watch_seconds, LIVE_TTL_SECONDS]
        for attempt in range(COLD_ATTEMPTS):
            count = int(await self._record(keys=live_keys, args=args))
            if count >= 0:
                return count
            # The live count is cold: read the flushed count, with the flush generation read
            # before it so that a flush landing in between is noticed and the read repeated.
            if attempt:
                await asyncio.sleep(0.01)
            generation = await self.redis.get(group.generation)
            flushed = await flushed_count(video_id)
            if flushed is None:
                return None
            args[0], args[1] = str(flushed), int(generation or 0)
        # A batch is still being flushed (or was left by a flusher that lost Redis mid-way and
        # waits for its lock to lapse): the live count cannot be rebuilt yet.
        raise ViewCountUnsettled(f"the live view count of {video_id} cannot be rebuilt yet")

    async def live(self, video_ids: list[UUID]) -> dict[UUID, int]:
        """Live counts known to Redis (videos nobody viewed lately are absent)."""
        if not video_ids:
            return {}

        async def none_known() -> list[bytes | str | None]:
            return [None] * len(video_ids)

        names = [keys.live_views(v, self._shard(v)) for v in video_ids]

        async def read() -> list[bytes | str | None]:
            if not self._sharded:
                return await self.redis.mget(names)
            async with self.redis.pipeline(transaction=False) as pipe:  # GETs across slots
                for name in names:
                    pipe.get(name)
                return await pipe.execute()

        values: list[bytes | str | None] = await self.outbox.read(read, none_known)
        return {v: int(n) for v, n in zip(video_ids, values, strict=True) if n is not None}

    def queue_live(self, pipe: Any, video_id: UUID) -> None:
        """Queue the read of one video's live count on a pipeline the caller runs (one reply:
        the count, or None when Redis does not know it)."""
        pipe.get(keys.live_views(video_id, self._shard(video_id)))

    async def forget(self, video_id: UUID, flushed_count: FlushedCount) -> None:
        """Views of this video went to PostgreSQL directly: rebuild its live count from there
        and the pending views (now, or when Redis answers again). A live count merely dropped
        would leave readers the cached row's count, which is behind, until the next view.
        One rebuild per video waits at a time (it reads PostgreSQL when it runs, so it counts
        every view written before); the outbox's writes after it wait for it, so it tries a
        few times only: when a flush keeps coming in between (or PostgreSQL fails) the count
        is dropped, and the next view rebuilds it."""
        if video_id in self._rebuilding:
            return
        self._rebuilding.add(video_id)
        shard = self._shard(video_id)
        group = keys.view_keys(shard)
        names = [keys.live_views(video_id, shard), group.dirty, group.flushing, group.generation]

        async def rebuild() -> None:
            self._rebuilding.discard(video_id)  # views written from now on want another
            for attempt in range(REBUILD_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(0.01)
                generation = await self.redis.get(group.generation)
                try:
                    flushed = await flushed_count(video_id)
                except Exception as exc:
                    logger.warning("rebuilding the live views of %s failed: %r", video_id, exc)
                    break
                if flushed is None:  # the video is gone
                    break
                args: list[str | int] = [
                    flushed,
                    int(generation or 0),
                    f"v:{video_id}",
                    LIVE_TTL_SECONDS,
                ]
                if int(await self._rebuild(keys=names, args=args)) >= 0:
                    return
            await self.redis.delete(names[0])

        await self.outbox.run(rebuild)

    async def flush(self, apply: ApplyBatch) -> int:
        """Write pending views to PostgreSQL; how many views went (0 if another process is)."""
        if not self._sharded:
            return await self._flush_group(keys.view_keys(None), apply)
        total = 0
        for shard in range(keys.VIEWS_SHARDS):
            total += await self._flush_group(keys.view_keys(shard), apply)
        return total

    async def _flush_group(self, group: keys.ViewKeys, apply: ApplyBatch) -> int:
        token = uuid.uuid4().hex
        flat = await self._begin(
            keys=[group.dirty, group.flushing, group.lock],
            args=[token, FLUSH_LOCK_MS, str(uuid.uuid4())],
        )
        if not flat:
            return 0
        batch = _parse_batch(flat)
        try:
            await apply(batch)
        except BaseException:
            # Not applied: give the lock up (when Redis answers, if it is away), so the next
            # flush retries the batch instead of waiting for the lock to lapse.
            await self.outbox.run(lambda: self._release(keys=[group.lock], args=[token]))
            raise
        # Applied: drop the batch, now or when Redis answers (a retry would be a no-op anyway).
        await self.outbox.run(
            lambda: self._end(
                keys=[group.flushing, group.lock, group.generation],
                args=[token],
            )
        )
        return sum(batch.views.values())


def _parse_batch(flat: list[bytes]) -> ViewBatch:
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    batch_id = UUID(fields.pop(b"_batch").decode())
    views: dict[UUID, int] = {}
    watch: dict[UUID, int] = {}
    for name, value in fields.items():
        kind, _, video = name.decode().partition(":")
        (views if kind == "v" else watch)[UUID(video)] = int(value)
    return ViewBatch(batch_id, views, watch)
