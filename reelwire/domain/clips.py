"""24-hour clips (the Stories API): upload, list, delete, expire."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import aiofiles.os
import asyncpg
import orjson

from reelwire.domain import events, media, media_access, present
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import Forbidden, NotFound, ValidationFailed
from reelwire.domain.paging import PageRequest, decode_time_cursor, next_cursor, pagination
from storage import blob_keys
from storage import clips as clip_rows
from storage import follows as follow_rows
from storage import users as user_rows
from storage import videos as video_rows
from transcode.probe import InvalidMedia, MediaInfo, probe

logger = logging.getLogger(__name__)

CLIP_LIFETIME = timedelta(hours=24)
CLIP_NOT_FOUND = "Clip not found or unauthorized"
FEED_CACHE_MAX = timedelta(minutes=5)


def clip_body(row: Any, ctx: Services) -> dict[str, Any]:
    """The Stories API's clip object plus our media fields."""
    blobs = ctx.blobs
    playable = None
    if row["kind"] == "image":
        key = row["image_key"] or row["source_key"]
        playable = blobs.url(key) if key else None
    elif row["hls_key"] and row["video_status"] == "ready":
        playable = blobs.url(row["hls_key"])
    elif row["video_id"]:
        playable = f"/api/videos/{row['video_id']}/stream"
    thumb_key = row["thumbnail_key"] or row["video_thumbnail_key"]
    status = row["status"] if row["kind"] == "image" else _video_clip_status(row["video_status"])
    body = {
        "id": str(row["id"]),
        "clip_id": str(row["id"]),
        "user_id": str(row["user_id"]),
        "kind": row["kind"],
        "status": status,
        "file_url": playable,
        "thumbnail_url": blobs.url(thumb_key) if thumb_key else None,
        "preview_url": blobs.url(row["video_preview_key"]) if row["video_preview_key"] else None,
        "video_id": str(row["video_id"]) if row["video_id"] else None,
        "duration": row["duration"],
        "caption": row["caption"],
        "created_at": present.iso(row["created_at"]),
        "expires_at": present.iso(row["expires_at"]),
        "view_count": row["view_count"],
    }
    if "uploaded_by" in row:
        body["uploaded_by"] = row["uploaded_by"]
    # A clip's media exists for its 24 hours: only at URLs signed to expire with it.
    return media_access.sign_urls(ctx, body, None, not_after=row["expires_at"])


# Frames of an animated image (GIF, WebP) decoded for its clip; with MAX_IMAGE_PIXELS per frame
# this bounds the memory and time an image job can take.
MAX_IMAGE_FRAMES = 600


def check_image_limits(ctx: Services, info: MediaInfo, field: str) -> None:
    """400 naming the limit when an image (by what its header claims, before anything decodes
    it) has more pixels than MAX_IMAGE_PIXELS, or an animation more than MAX_IMAGE_FRAMES."""
    limit = ctx.settings.max_image_pixels
    if info.width * info.height > limit:
        message = (
            f"The image is {info.width}x{info.height} "
            f"({info.width * info.height:,} pixels); at most {limit:,} pixels (MAX_IMAGE_PIXELS)"
        )
        raise ValidationFailed(
            message, field_errors={field: [message]}, details={"max_image_pixels": limit}
        )
    frames = round(info.duration * info.fps) if info.duration and info.fps else 1
    if frames > MAX_IMAGE_FRAMES:
        message = f"The animation has about {frames} frames; at most {MAX_IMAGE_FRAMES}"
        raise ValidationFailed(
            message, field_errors={field: [message]}, details={"max_frames": MAX_IMAGE_FRAMES}
        )


def _video_clip_status(video_status: str | None) -> str:
    return {"ready": "ready", "failed": "failed"}.get(video_status or "", "processing")


async def upload_clip(
    ctx: Services, principal: Principal, spool: Path, original_filename: str, caption: str
) -> dict[str, Any]:
    """A new clip from an uploaded image or video; expires 24 hours after creation."""
    try:
        info = await probe(spool)
    except InvalidMedia as exc:
        message = f"Invalid file format: {exc}"
        raise ValidationFailed(message, field_errors={"clip": [message]}) from None
    clip_id = uuid.uuid4()
    now = datetime.now(UTC)
    if info.kind == "video":
        await media.check_video(ctx, spool, "clip", probed=info)
        video = await media.accept_upload(
            ctx,
            principal,
            spool,
            info,
            original_filename=original_filename,
            source="clip",
            title=caption[:100],
            visibility="unlisted",
        )
        fields: dict[str, Any] = {"kind": "video", "video_id": video["id"], "owns_video": True}
    else:
        check_image_limits(ctx, info, "clip")
        key = blob_keys.clip_original(clip_id)
        size = (await aiofiles.os.stat(spool)).st_size
        await ctx.blobs.put_file(key, spool, info.content_type, consume=True)
        fields = {
            "kind": "image",
            "source_key": key,
            "content_type": info.content_type,
            "file_size": size,
            "width": info.width,
            "height": info.height,
        }
    async with ctx.db.acquire() as conn:
        await clip_rows.insert(
            conn,
            clip_id,
            principal.user_id,
            caption=caption,
            created_at=now,
            expires_at=now + CLIP_LIFETIME,
            **fields,
        )
        row = await clip_rows.get_active(conn, clip_id)
    if info.kind != "video":
        await ctx.jobs.enqueue("image", str(clip_id))
    assert row is not None
    clip = clip_body(row, ctx)
    await feeds_changed(ctx, principal.user_id)
    await events.clip_feed(ctx, principal.user_id, "added", clip)
    return {"message": "Clip uploaded successfully", "clip": clip}


async def clip_from_library(
    ctx: Services, principal: Principal, video_id: UUID, caption: str
) -> dict[str, Any]:
    """A clip that reuses one of the caller's videos: no second upload, no second object."""
    async with ctx.db.acquire() as conn:
        video = await video_rows.get(conn, video_id)
        if video is None or video["owner_id"] != principal.user_id:
            raise NotFound(media.VIDEO_NOT_FOUND)
        if video["status"] == "failed":
            raise ValidationFailed("That video failed to process")
        clip_id = uuid.uuid4()
        now = datetime.now(UTC)
        await clip_rows.insert(
            conn,
            clip_id,
            principal.user_id,
            caption=caption,
            kind="video",
            video_id=video_id,
            created_at=now,
            expires_at=now + CLIP_LIFETIME,
        )
        row = await clip_rows.get_active(conn, clip_id)
    assert row is not None
    clip = clip_body(row, ctx)
    await feeds_changed(ctx, principal.user_id)
    await events.clip_feed(ctx, principal.user_id, "added", clip)
    return {"message": "Clip created successfully", "clip": clip}


async def delete_clip(ctx: Services, principal: Principal, clip_id: UUID) -> dict[str, Any]:
    """Delete the caller's own clip and its media (404 for anyone else's, per the Stories API)."""
    async with ctx.db.acquire() as conn:
        row = await clip_rows.delete_own(conn, clip_id, principal.user_id)
    if row is None:
        raise NotFound(CLIP_NOT_FOUND)
    await _remove_media(ctx, [row])
    await feeds_changed(ctx, principal.user_id)
    await events.clip_feed(ctx, principal.user_id, "removed", _gone(row))
    return {"message": "Clip deleted successfully"}


async def user_clips(ctx: Services, user_id: UUID) -> dict[str, Any]:
    """A user's live clips, newest first (the Stories API)."""
    async with ctx.db.acquire() as conn:
        if not await user_rows.exists(conn, user_id):
            raise NotFound("User not found")
        rows = await clip_rows.user_clips(conn, user_id)
    clips = [clip_body(r, ctx) for r in rows]
    return {"user_id": str(user_id), "clips": clips, "count": len(clips)}


async def followed_clips_json(ctx: Services, principal: Principal, limit: int) -> bytes:
    """Live clips of everyone the caller follows, newest first, with `uploaded_by`: the JSON
    body, served from a per-user cache that is fenced whenever the feed changes."""
    variant = str(limit)
    cached = await ctx.clip_feed_cache.get(principal.user_id, variant)
    if cached is not None:
        return cached
    async with ctx.db.acquire() as conn:
        rows = await clip_rows.followed_clips(conn, principal.user_id, limit)
    clips = [clip_body(r, ctx) for r in rows]
    body = orjson.dumps({"clips": clips, "count": len(clips)})
    # valid until the first of these clips expires (then the query would drop it)
    now = datetime.now(UTC)
    lifetime = min([r["expires_at"] - now for r in rows], default=FEED_CACHE_MAX)
    ttl_ms = int(min(lifetime, FEED_CACHE_MAX).total_seconds() * 1000)
    await ctx.clip_feed_cache.put(principal.user_id, variant, body, ttl_ms)
    return body


async def feeds_changed(ctx: Services, owner: UUID) -> None:
    """`owner`'s clips changed: fence the cached feeds of everyone following them."""
    async with ctx.db.acquire() as conn:
        followers = await follow_rows.follower_ids(conn, owner)
    for start in range(0, len(followers), 1000):
        await ctx.clip_feed_cache.invalidate(followers[start : start + 1000])


async def media_changed(
    ctx: Services, owner: UUID, *, clip_id: UUID | None = None, video_id: UUID | None = None
) -> None:
    """A clip's media finished (or failed) processing: fence the followers' cached feeds and
    tell their open feeds (`clip_feed updated`), so a story shows its picture without a reload."""
    await feeds_changed(ctx, owner)
    async with ctx.db.acquire() as conn:
        if clip_id is not None:
            row = await clip_rows.get_active(conn, clip_id)
            rows = [row] if row is not None else []
        else:
            assert video_id is not None
            rows = await clip_rows.active_by_video(conn, video_id)
    for row in rows:
        await events.clip_feed(ctx, owner, "updated", clip_body(row, ctx))


async def cleanup_expired(ctx: Services) -> dict[str, Any]:
    """The Stories API's manual cleanup: delete expired clips now."""
    deleted = await sweep_expired(ctx)
    return {"message": "Cleanup completed", "deleted_count": deleted}


async def view(ctx: Services, principal: Principal, clip_id: UUID) -> dict[str, Any]:
    """Record that the caller saw a clip: once per viewer, and the owner's own views not at all.
    A counted view tells the owner (`clip_viewed`)."""
    async with ctx.db.acquire() as conn, conn.transaction():
        row = await clip_rows.get_active(conn, clip_id)
        if row is None:
            raise NotFound(CLIP_NOT_FOUND)
        if row["user_id"] == principal.user_id:
            return {"counted": False, "view_count": row["view_count"]}
        viewed_at, count = await clip_rows.record_view(conn, clip_id, principal.user_id)
        if viewed_at is not None:
            viewer = await user_rows.get_public(conn, principal.user_id)
    if viewed_at is not None:
        assert viewer is not None
        await events.clip_viewed(
            ctx,
            row["user_id"],
            clip_id,
            present.user_card(viewer),
            present.iso(viewed_at),
            count,
        )
    return {"counted": viewed_at is not None, "view_count": count}


async def viewers(
    ctx: Services, principal: Principal, clip_id: UUID, page: PageRequest
) -> dict[str, Any]:
    """Who saw your clip (the owner only), newest first, by page or by cursor."""
    async with ctx.db.acquire() as conn:
        row = await clip_rows.get_active(conn, clip_id)
        if row is None:
            raise NotFound(CLIP_NOT_FOUND)
        if row["user_id"] != principal.user_id:
            raise Forbidden("Only the clip's owner can see who viewed it")
        after = decode_time_cursor(page.cursor) if page.cursor else None
        rows = await clip_rows.viewers(
            conn, clip_id, limit=page.limit, offset=page.offset, after=after
        )
    return {
        "clip_id": str(clip_id),
        "view_count": row["view_count"],
        "viewers": [
            {**present.user_card(r), "viewed_at": present.iso(r["viewed_at"])} for r in rows
        ],
        "pagination": pagination(page, row["view_count"], len(rows)),
        "next_cursor": next_cursor(rows, page, "viewed_at"),
    }


async def react(ctx: Services, principal: Principal, clip_id: UUID, emoji: str) -> dict[str, Any]:
    """Send an emoji reaction to a live clip; its owner is notified."""
    async with ctx.db.acquire() as conn, conn.transaction():
        row = await clip_rows.get_active(conn, clip_id)
        if row is None:
            raise NotFound(CLIP_NOT_FOUND)
        added = await clip_rows.add_reaction(conn, clip_id, principal.user_id, emoji)
        counts = await clip_rows.reaction_counts(conn, clip_id)
    if added and row["user_id"] != principal.user_id:
        await events.notification(
            ctx,
            row["user_id"],
            "clip_reaction",
            {"clip_id": str(clip_id), "emoji": emoji, "user_id": str(principal.user_id)},
        )
    return {"clip_id": str(clip_id), "reactions": counts}


def _gone(row: Any) -> dict[str, Any]:
    """What followers need to drop a clip from their tray."""
    return {"id": str(row["id"]), "clip_id": str(row["id"]), "user_id": str(row["user_id"])}


async def sweep_expired(ctx: Services) -> int:
    """Delete expired clips' rows and media; returns how many clips went."""
    total = 0
    while True:
        async with ctx.db.acquire() as conn:
            rows = await clip_rows.delete_expired(conn)
        if not rows:
            break
        await _remove_media(ctx, rows)
        for row in rows:
            await events.clip_feed(ctx, row["user_id"], "expired", _gone(row))
        total += len(rows)
    if total:
        logger.info("swept %d expired clip(s)", total)
    return total


async def _remove_media(ctx: Services, rows: list[asyncpg.Record]) -> None:
    for row in rows:
        await ctx.blobs.delete_prefix(blob_keys.clip_prefix(row["id"]))
        if row["owns_video"] and row["video_id"]:
            async with ctx.db.acquire() as conn:
                await video_rows.soft_delete(conn, row["video_id"])
            await ctx.video_cache.invalidate(row["video_id"])
            await ctx.blobs.delete_prefix(blob_keys.video_prefix(row["video_id"]))
