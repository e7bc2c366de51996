"""24-hour clips (seed 000): upload, list, delete, expire."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import aiofiles.os
import asyncpg

from reelwire.domain import media, present
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import NotFound, ValidationFailed
from storage import clips as clip_rows
from storage import videos as video_rows
from transcode.probe import InvalidMedia, probe

logger = logging.getLogger(__name__)

CLIP_LIFETIME = timedelta(hours=24)
CLIP_NOT_FOUND = "Clip not found or unauthorized"


def clip_body(row: Any, ctx: Services) -> dict[str, Any]:
    """Seed 000's clip object plus our media fields."""
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
        "video_id": str(row["video_id"]) if row["video_id"] else None,
        "duration": row["duration"],
        "caption": row["caption"],
        "created_at": present.iso(row["created_at"]),
        "expires_at": present.iso(row["expires_at"]),
    }
    if "uploaded_by" in row:
        body["uploaded_by"] = row["uploaded_by"]
    return body


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
        media.check_limits(ctx, info, "clip")
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
        key = f"clips/{clip_id}/original"
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
    return {"message": "Clip uploaded successfully", "clip": clip_body(row, ctx)}


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
    return {"message": "Clip created successfully", "clip": clip_body(row, ctx)}


async def delete_clip(ctx: Services, principal: Principal, clip_id: UUID) -> dict[str, Any]:
    """Delete the caller's own clip and its media (404 for anyone else's, as seed 000 says)."""
    async with ctx.db.acquire() as conn:
        row = await clip_rows.delete_own(conn, clip_id, principal.user_id)
    if row is None:
        raise NotFound(CLIP_NOT_FOUND)
    await _remove_media(ctx, [row])
    return {"message": "Clip deleted successfully"}


async def sweep_expired(ctx: Services) -> int:
    """Delete expired clips' rows and media; returns how many clips went."""
    total = 0
    while True:
        async with ctx.db.acquire() as conn:
            rows = await clip_rows.delete_expired(conn)
        if not rows:
            break
        await _remove_media(ctx, rows)
        total += len(rows)
    if total:
        logger.info("swept %d expired clip(s)", total)
    return total


async def _remove_media(ctx: Services, rows: list[asyncpg.Record]) -> None:
    for row in rows:
        await ctx.blobs.delete_prefix(f"clips/{row['id']}")
        if row["owns_video"] and row["video_id"]:
            async with ctx.db.acquire() as conn:
                await video_rows.soft_delete(conn, row["video_id"])
            await ctx.video_cache.invalidate(row["video_id"])
            await ctx.blobs.delete_prefix(f"videos/{row['video_id']}")
