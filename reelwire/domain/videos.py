"""Videos as a catalogue: read, list, edit, like, view. One function per action, for REST and
WebSocket alike; each publishes its event after its transaction commits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from cache.reads import VideoCache
from cache.views import ViewBatch, ViewCountUnsettled
from pubsub import keys
from pubsub.outbox import nothing
from reelwire.domain import events, media_access, present
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import Forbidden, NotFound, ValidationFailed
from reelwire.domain.paging import (
    PageRequest,
    decode_cursor,
    encode_cursor,
    next_cursor,
    pagination,
)
from reelwire.domain.visibility import may_see, may_see_row, may_see_video
from storage import videos as video_rows
from storage.videos import COUNTERS

VIDEO_NOT_FOUND = "Video not found"
REACTIONS = {"like": 1, "dislike": -1, "remove": 0}
TRENDING_SIZE = 500
TRENDING_TTL_SECONDS = 60
COUNT_TTL_SECONDS = 10


@dataclass(frozen=True)
class VideoQuery:
    """The filters and order of `GET /api/videos`."""

    sort: str = "latest"
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    q: str | None = None
    author: UUID | None = None

    @property
    def filters(self) -> dict[str, Any]:
        """Keyword arguments for the storage queries."""
        return {"category": self.category, "tags": self.tags, "q": self.q, "author": self.author}

    @property
    def cache_key(self) -> str:
        """A short stable name for this combination of filters."""
        raw = orjson.dumps([self.category, sorted(self.tags), self.q, str(self.author or "")])
        return hashlib.blake2b(raw, digest_size=12).hexdigest()


async def load(ctx: Services, video_id: UUID) -> dict[str, Any] | None:
    """The rendered video (without viewer-specific fields), from the cache or PostgreSQL."""
    video = await ctx.video_cache.get(video_id)
    if video is None:
        video = await _load_and_cache(ctx, video_id)
    return video


async def _load_and_cache(ctx: Services, video_id: UUID) -> dict[str, Any] | None:
    async with ctx.db.acquire() as conn:
        row = await video_rows.get(conn, video_id)
    if row is None:
        return None
    video = present.video(row, ctx.blobs)
    await ctx.video_cache.put(video_id, video)
    return video


async def visible(ctx: Services, video_id: UUID, viewer: Principal | None) -> dict[str, Any]:
    """The video if `viewer` may see it; 404 otherwise (a private video does not exist to you)."""
    video = await load(ctx, video_id)
    if video is None or not may_see_video(video, viewer):
        raise NotFound(VIDEO_NOT_FOUND)
    return video


LIVE_FIELDS = ("view_count", *COUNTERS, "counts_version")


@dataclass(frozen=True)
class Watchable:
    """What a `video:{id}` channel needs of its video: whether there is one, who may watch it,
    and its live counters (what the channel starts from)."""

    exists: bool
    visibility: str = "public"
    owner_id: str = ""
    counts: dict[str, Any] = field(default_factory=dict)

    def check(self, viewer: Principal | None) -> None:
        """NotFound unless `viewer` may watch (a private video does not exist to others)."""
        if not self.exists or not may_see(self.visibility, self.owner_id, viewer):
            raise NotFound(VIDEO_NOT_FOUND)


Also = Callable[[Any], None]  # queues the caller's own reads on the same Redis pipeline


async def watchable(
    ctx: Services, video_id: UUID, also: Also | None = None
) -> tuple[Watchable, list[Any]]:
    """The video's `Watchable` and the replies to the commands `also` queued, read together:
    one Redis round trip while the video is cached (a miss reads PostgreSQL and refills).

    `also`'s commands go to Redis whatever the outbox says, and their failure is raised; the video
    itself is read from PostgreSQL while the outbox says a fence may not have landed yet.
    """
    cached = ctx.outbox.usable

    async def read() -> list[Any]:
        async with ctx.redis.pipeline(transaction=False) as pipe:
            if cached:
                VideoCache.queue_get(pipe, video_id)
                ctx.views.queue_live(pipe, video_id)
            if also is not None:
                also(pipe)
            return list(await pipe.execute())

    replies = await ctx.outbox.attempt(read) if cached or also is not None else []
    video, live = None, None
    if cached:
        video, live, replies = VideoCache.from_hash(replies[0]), replies[1], replies[2:]
    if video is None:
        video = await _load_and_cache(ctx, video_id)
        if video is not None and not cached:
            await _with_live_views(ctx, [video])
    if video is None:
        return Watchable(False), replies
    counts = {name: video[name] for name in LIVE_FIELDS}
    if live is not None and int(live) > counts["view_count"]:
        counts["view_count"] = int(live)
    return Watchable(True, video["visibility"], str(video["author"]["id"]), counts), replies


async def live_counts(ctx: Services, video_id: UUID) -> dict[str, Any] | None:
    """The live counters of a video, or None once it is gone (a channel refreshing its state)."""
    video = await load(ctx, video_id)
    if video is None:
        return None
    await _with_live_views(ctx, [video])
    return {name: video[name] for name in LIVE_FIELDS}


async def get(ctx: Services, video_id: UUID, viewer: Principal | None) -> dict[str, Any]:
    """The full video object, with live views and the viewer's own reaction."""
    video = await visible(ctx, video_id, viewer)
    await _with_live_views(ctx, [video])
    kind = 0
    if viewer is not None:
        async with ctx.db.acquire() as conn:
            kind = await video_rows.reaction_of(conn, video_id, viewer.user_id)
    return {
        **media_access.for_viewer(ctx, video, viewer),
        "user_reaction": present.REACTION_NAMES[kind],
        "user_interaction": {"liked": kind == 1, "disliked": kind == -1},
    }


async def list_public(ctx: Services, query: VideoQuery, page: PageRequest) -> dict[str, Any]:
    """Public, ready videos: latest or popular by keyset cursor, trending from a cached ranking."""
    if query.sort == "trending":
        return await _trending(ctx, query, page)
    after = decode_cursor(page.cursor) if page.cursor else None
    async with ctx.db.acquire() as conn:
        rows = await video_rows.public_page(
            conn,
            sort=query.sort,
            limit=page.limit,
            offset=page.offset,
            after=after,
            **query.filters,
        )
        total = await _cached_count(ctx, conn, query)
    position = "published_at" if query.sort == "latest" else "view_count"
    return await _video_page(ctx, rows, page, total, next_cursor(rows, page, position))


async def following_feed(ctx: Services, principal: Principal, page: PageRequest) -> dict[str, Any]:
    """Public videos by the users the caller follows, newest first."""
    after = decode_cursor(page.cursor) if page.cursor else None
    async with ctx.db.acquire() as conn:
        rows = await video_rows.followed_page(
            conn, principal.user_id, limit=page.limit, offset=page.offset, after=after
        )
        total = await video_rows.followed_count(conn, principal.user_id)
    return await _video_page(ctx, rows, page, total, next_cursor(rows, page, "published_at"))


async def _trending(ctx: Services, query: VideoQuery, page: PageRequest) -> dict[str, Any]:
    # The ranking (ids only) is cached for a minute; the videos themselves are read fresh, so
    # their counts are current. A cursor here is a position in the cached ranking.
    key = keys.trending_cache(query.cache_key)
    cached = await ctx.outbox.read(lambda: ctx.redis.get(key), nothing)
    if cached is None:
        async with ctx.db.acquire() as conn:
            ids = await video_rows.trending_ids(
                conn,
                window_days=ctx.settings.trending_window_days,
                limit=TRENDING_SIZE,
                **query.filters,
            )
        ranking = orjson.dumps([str(i) for i in ids])
        await ctx.outbox.read(lambda: ctx.redis.set(key, ranking, ex=TRENDING_TTL_SECONDS), nothing)
    else:
        ids = [UUID(i) for i in orjson.loads(cached)]
    start = page.offset
    if page.cursor:
        position, _ = decode_cursor(page.cursor)
        if not isinstance(position, int) or position < 0:
            raise ValidationFailed("Invalid cursor", field_errors={"cursor": ["Invalid cursor"]})
        start = position
    window = ids[start : start + page.limit]
    async with ctx.db.acquire() as conn:
        rows = await video_rows.by_ids(conn, window)
    end = start + len(window)
    cursor = encode_cursor(end, window[-1]) if window and end < len(ids) else None
    return await _video_page(ctx, rows, page, len(ids), cursor)


async def _cached_count(ctx: Services, conn: asyncpg.Connection, query: VideoQuery) -> int:
    # Counting a large catalogue on every page costs more than the page; totals may lag 10 s.
    key = keys.list_count_cache(query.cache_key)
    cached = await ctx.outbox.read(lambda: ctx.redis.get(key), nothing)
    if cached is not None:
        return int(cached)
    total = await video_rows.public_count(conn, **query.filters)
    await ctx.outbox.read(lambda: ctx.redis.set(key, total, ex=COUNT_TTL_SECONDS), nothing)
    return total


async def _video_page(
    ctx: Services,
    rows: list[asyncpg.Record],
    page: PageRequest,
    total: int,
    cursor: str | None,
) -> dict[str, Any]:
    # Lists hold public videos only, at plain media URLs.
    videos = [present.video(r, ctx.blobs) for r in rows]
    await _with_live_views(ctx, videos)
    return {
        "videos": videos,
        "pagination": pagination(page, total, len(videos)),
        "next_cursor": cursor,
    }


async def _with_live_views(ctx: Services, videos: list[dict[str, Any]]) -> None:
    """Replace flushed view counts by the live ones (flushed + pending)."""
    live = await ctx.views.live([UUID(v["id"]) for v in videos])
    for video in videos:
        count = live.get(UUID(video["id"]))
        if count is not None and count > video["view_count"]:
            video["view_count"] = video["views"] = count


async def update(
    ctx: Services, principal: Principal, video_id: UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Edit title, description, tags, category or visibility of your own video."""
    async with ctx.db.acquire() as conn, conn.transaction():
        row = await video_rows.get_for_update(conn, video_id)
        if row is None or not may_see_row(row, principal):
            raise NotFound(VIDEO_NOT_FOUND)
        if row["owner_id"] != principal.user_id:
            raise Forbidden("Only the owner can edit this video")
        if changes:
            await video_rows.update(conn, video_id, **changes)
    await ctx.video_cache.invalidate(video_id)
    return await get(ctx, video_id, principal)


async def react(ctx: Services, principal: Principal, video_id: UUID, action: str) -> dict[str, Any]:
    """Like, dislike or remove your reaction; one per user per video, exact under concurrency."""
    async with ctx.db.acquire() as conn:
        row = await video_rows.set_reaction(
            conn, video_id, principal.user_id, REACTIONS[action], admin=principal.is_admin
        )
    if row is None:
        raise NotFound(VIDEO_NOT_FOUND)
    if row["changed"]:
        await events.video_counts(ctx, video_id, row)
    return {
        "user_action": present.REACTION_NAMES[REACTIONS[action]],
        "like_count": row["like_count"],
        "dislike_count": row["dislike_count"],
    }


async def view(
    ctx: Services, video_id: UUID, viewer: Principal | None, watch_time_seconds: float = 0
) -> dict[str, Any]:
    """Count a view (in Redis; PostgreSQL catches up in batches) and publish the live count.
    While Redis is away, or its live count cannot be rebuilt yet, the view goes straight to
    PostgreSQL: slower, never lost."""
    await visible(ctx, video_id, viewer)
    watched = round(watch_time_seconds)

    async def flushed_count(vid: UUID) -> int | None:
        async with ctx.db.acquire() as conn:
            row = await video_rows.counts(conn, vid)
        return None if row is None else int(row["view_count"])

    async def durably() -> int | None:
        async with ctx.db.acquire() as conn:
            stored = await video_rows.add_view(conn, video_id, watched)
        await ctx.views.forget(video_id, flushed_count)
        return stored

    async def live() -> int | None:
        try:
            return await ctx.views.record(video_id, watched, flushed_count)
        except ViewCountUnsettled:
            return await durably()

    count = await ctx.outbox.read(live, durably)
    if count is None:
        raise NotFound(VIDEO_NOT_FOUND)
    await events.video_views(ctx, video_id, count)
    return {"new_view_count": count}


async def flush_views(ctx: Services) -> int:
    """Write pending views and watch time to PostgreSQL; how many views were written."""

    async def apply(batch: ViewBatch) -> None:
        ids = sorted(set(batch.views) | set(batch.watch_seconds))
        async with ctx.db.acquire() as conn, conn.transaction():
            await video_rows.add_views_once(
                conn,
                batch.batch_id,
                ids,
                [batch.views.get(i, 0) for i in ids],
                [batch.watch_seconds.get(i, 0) for i in ids],
            )

    return await ctx.views.flush(apply)
