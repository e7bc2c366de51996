"""The events operations publish after their transaction commits (PROTOCOL.md shapes)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from redis.asyncio.client import Pipeline

from pubsub import keys
from reelwire.domain.context import Services
from storage import blob_keys
from storage.videos import COUNTERS


async def video_counts(ctx: Services, video_id: UUID, counts: Any) -> None:
    """`video_update` with the counters kept in PostgreSQL, absolute and versioned.

    The cache is updated first, so no reader can see counts older than an event already sent.
    Two commits may publish in either order; `counts_version` tells a merger which is newer.
    """
    data = {name: counts[name] for name in COUNTERS}
    version = counts["counts_version"]

    async def update_cache(pipe: Pipeline) -> None:
        await ctx.video_cache.set_counts(video_id, data, version, pipe)

    event = {
        "type": "video_update",
        "video_id": str(video_id),
        "data": {**data, "counts_version": version},
    }
    await ctx.bus.publish_state(keys.video_channel(video_id), event, first=update_cache)


async def video_views(ctx: Services, video_id: UUID, view_count: int) -> None:
    """`video_update` with the live view count (only ever grows, so the largest wins)."""
    event = {"type": "video_update", "video_id": str(video_id), "data": {"view_count": view_count}}
    await ctx.bus.publish_state(keys.video_channel(video_id), event)


async def processing(
    ctx: Services,
    video_id: UUID,
    owner: UUID,
    status: str,
    progress: float,
    error: str | None = None,
) -> None:
    """`processing`: progress to the owner, status to everyone on the video channel (the
    video's cached row is fenced first, so readers see the new status)."""
    event: dict[str, Any] = {
        "type": "processing",
        "video_id": str(video_id),
        "status": status,
        "progress": round(progress, 1),
    }
    if error:
        event["error"] = error
    await ctx.video_cache.invalidate(video_id)
    await ctx.bus.publish(keys.user_channel(owner), event)
    # Watchers of the video see its status; its progress is the owner's business.
    status_only = {name: event[name] for name in ("type", "video_id", "status")}
    await ctx.bus.publish(keys.video_channel(video_id), status_only)


async def rendition_ready(
    ctx: Services, video_id: UUID, owner: UUID, quality: str, resolution: str, progress: float
) -> None:
    """A rung of the ladder can be played (its playlist is up with a first segment). As with
    `processing`, the owner's copy carries the progress (and is told apart by it)."""
    event = {
        "type": "rendition_ready",
        "video_id": str(video_id),
        "quality": quality,
        "resolution": resolution,
    }
    await ctx.bus.publish(keys.user_channel(owner), {**event, "progress": round(progress, 1)})
    await ctx.bus.publish(keys.video_channel(video_id), event)


async def playable(
    ctx: Services,
    video_id: UUID,
    owner: UUID,
    *,
    plain: bool,
    progress: float,
    playable: bool = True,
) -> None:
    """The video can be watched while it transcodes (or, withdrawn, no longer can). The URL
    goes out only where it is the same for everyone (`plain`); a private video's watchers
    fetch it, signed for them. The video's cached row is fenced first; the owner's copy
    carries the progress, as `processing` does."""
    url = (
        ctx.blobs.url(blob_keys.video_output_keys(video_id).hls_key) if plain and playable else None
    )
    event = {
        "type": "playable",
        "video_id": str(video_id),
        "playable": playable,
        "playback_url": url,
    }
    await ctx.video_cache.invalidate(video_id)
    await ctx.bus.publish(keys.user_channel(owner), {**event, "progress": round(progress, 1)})
    await ctx.bus.publish(keys.video_channel(video_id), event)


async def new_comment(ctx: Services, video_id: UUID, comment: dict[str, Any]) -> None:
    """A comment or reply was posted."""
    event = {"type": "new_comment", "video_id": str(video_id), "comment": comment}
    await ctx.bus.publish(keys.video_channel(video_id), event)


async def comment_updated(ctx: Services, video_id: UUID, comment: dict[str, Any]) -> None:
    """A comment's text or reaction counts changed."""
    event = {"type": "comment_updated", "video_id": str(video_id), "comment": comment}
    await ctx.bus.publish(keys.video_channel(video_id), event)


async def comment_deleted(
    ctx: Services, video_id: UUID, comment_id: UUID, parent_id: UUID | None
) -> None:
    """A comment (and its replies) went."""
    event = {
        "type": "comment_deleted",
        "video_id": str(video_id),
        "comment_id": str(comment_id),
        "parent_comment_id": str(parent_id) if parent_id else None,
    }
    await ctx.bus.publish(keys.video_channel(video_id), event)


async def clip_feed(ctx: Services, owner: UUID, action: str, clip: dict[str, Any]) -> None:
    """`clip_feed` to followers of `owner`: a clip was `added`, `updated` (its media finished
    processing, or failed), `removed` or has `expired`."""
    event = {"type": "clip_feed", "action": action, "clip": clip}
    await ctx.bus.publish(keys.clip_channel(owner), event)


async def new_follower(
    ctx: Services, followed: UUID, follower: dict[str, Any], follower_count: int
) -> None:
    """Someone followed `followed`."""
    event = {"type": "new_follower", "follower": follower, "follower_count": follower_count}
    await ctx.bus.publish(keys.user_channel(followed), event)


async def clip_viewed(
    ctx: Services,
    owner: UUID,
    clip_id: UUID,
    viewer: dict[str, Any],
    viewed_at: str | None,
    view_count: int,
) -> None:
    """Someone viewed `owner`'s clip for the first time (`view_count` only grows: the largest
    wins when two commits publish out of order)."""
    event = {
        "type": "clip_viewed",
        "clip_id": str(clip_id),
        "viewer": viewer,
        "viewed_at": viewed_at,
        "view_count": view_count,
    }
    await ctx.bus.publish(keys.user_channel(owner), event)


async def notification(ctx: Services, user_id: UUID, kind: str, data: dict[str, Any]) -> None:
    """A notification for one user (a clip reaction, ...)."""
    event = {"type": "notification", "kind": kind, **data}
    await ctx.bus.publish(keys.user_channel(user_id), event)


async def following_changed(ctx: Services, follower: UUID, followed: UUID, action: str) -> None:
    """Internal: `follower` started (`added`) or stopped (`removed`) following `followed`; their
    live feed:clips sockets join or leave that user's clip channel."""
    event = {"type": "following", "action": action, "user_id": str(followed)}
    await ctx.bus.publish_state(keys.follows_channel(follower), event)
