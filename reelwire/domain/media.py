"""Videos as media: accept an upload, report status, read, delete."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import aiofiles.os
import asyncpg

from reelwire.domain import events, media_access, present
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import Forbidden, NotFound, PayloadTooLarge, ValidationFailed
from reelwire.domain.visibility import may_see_row
from storage import blob_keys
from storage import videos as video_rows
from transcode.presence import waiting_reason
from transcode.probe import InvalidMedia, MediaInfo, probe

logger = logging.getLogger(__name__)

VIDEO_NOT_FOUND = "Video not found"
UPLOADED_MESSAGE = "Video uploaded successfully. Processing will begin shortly."


async def check_video(
    ctx: Services, path: Path, field: str, *, probed: MediaInfo | None = None
) -> MediaInfo:
    """Probe an upload (unless `probed` already says what it is) and check it is a video within
    the configured limits: a clear 400 on `field` when it is not one we accept. Every path a
    video comes in by (form uploads, clips, direct uploads, the worker) checks it here."""
    try:
        info = probed or await probe(path)
    except InvalidMedia as exc:
        raise ValidationFailed(str(exc), field_errors={field: [str(exc)]}) from None
    if info.kind != "video":
        message = "Expected a video file, got an image"
        raise ValidationFailed(message, field_errors={field: [message]})
    _check_limits(ctx, info, field)
    return info


def _check_limits(ctx: Services, info: MediaInfo, field: str) -> None:
    """Duration and picture size within the configured limits."""
    limits = ctx.settings
    problem = None
    if info.duration and info.duration > limits.max_video_seconds:
        problem = f"Video is {info.duration:.0f} s long; the limit is {limits.max_video_seconds} s"
    elif max(info.width, info.height) > limits.max_video_dimension:
        problem = (
            f"Video is {info.resolution}; the limit is "
            f"{limits.max_video_dimension} px on the long side"
        )
    if problem:
        raise ValidationFailed(problem, field_errors={field: [problem]})


async def accept_upload(
    ctx: Services,
    principal: Principal,
    spool: Path,
    info: MediaInfo,
    *,
    original_filename: str,
    source: str,
    title: str = "",
    description: str = "",
    visibility: str = "public",
) -> asyncpg.Record:
    """Store a probed upload as a new video and queue its transcode."""
    video_id = uuid.uuid4()
    key = blob_keys.video_original(video_id)
    size = (await aiofiles.os.stat(spool)).st_size
    await ctx.blobs.put_file(key, spool, info.content_type, consume=True)
    try:
        async with ctx.db.acquire() as conn:
            await video_rows.insert(
                conn,
                video_id,
                principal.user_id,
                title=title,
                description=description,
                status="pending",
                source=source,
                visibility=visibility,
                source_key=key,
                original_filename=original_filename,
                content_type=info.content_type,
                file_size=size,
                **probe_columns(info),
            )
            row = await video_rows.get(conn, video_id)
    except BaseException:
        await ctx.blobs.delete(key)
        raise
    await queue_transcode(ctx, video_id, principal.user_id)
    assert row is not None
    return row


async def mark_checked(
    conn: asyncpg.Connection, video_id: UUID, info: MediaInfo, size: int, **columns: Any
) -> bool:
    """An existing video's original is stored and passed `check_video`: the row says what it
    is, and that it waits for the transcoder (direct and resumable uploads). False when the
    video was deleted meanwhile."""
    return await video_rows.update(
        conn,
        video_id,
        status="pending",
        file_size=size,
        content_type=info.content_type,
        **probe_columns(info),
        **columns,
    )


async def queue_transcode(ctx: Services, video_id: UUID, owner: UUID) -> None:
    """Queue a stored, checked video's transcode and tell its owner: how every upload path
    (multipart, direct, resumable) hands a video to the workers."""
    await ctx.jobs.enqueue("video", str(video_id))
    await events.processing(ctx, video_id, owner, "pending", 0.0)


def probe_columns(info: MediaInfo) -> dict[str, Any]:
    """Video columns filled from a probe (the whole probe is kept for the worker)."""
    return {
        "duration": info.duration,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "has_audio": info.has_audio,
        "video_codec": info.video_codec,
        "probe": dataclasses.asdict(info),
    }


def stored_probe(row: Any) -> MediaInfo | None:
    """The probe saved at upload, so the worker need not read the file twice."""
    saved = row["probe"]
    try:
        return MediaInfo(**saved) if saved else None
    except TypeError:  # saved by an older version with other fields
        return None


async def video_status(ctx: Services, video_id: UUID, principal: Principal) -> dict[str, Any]:
    """The upload-flow API's status object, for the owner only."""
    async with ctx.db.acquire() as conn:
        row = await video_rows.get(conn, video_id)
    if row is None or not may_see_row(row, principal):
        raise NotFound(VIDEO_NOT_FOUND)
    if row["owner_id"] != principal.user_id:
        raise Forbidden("Access denied")
    shaped = media_access.for_viewer(ctx, present.video(row, ctx.blobs), principal)
    error = row["error"]
    if row["status"] in ("pending", "processing") and row["provider"] == "reelwire":
        # Queued with nobody to take it: say so rather than sit silently.
        waiting = await waiting_reason(ctx.jobs)
        if waiting:
            error = f"{waiting} ({error})" if error else waiting
    return {
        "videoId": str(video_id),
        "status": row["status"],
        "playbackUrl": shaped["hls_playlist"],
        "thumbnailUrl": shaped["thumbnail_url"],
        "duration": row["duration"],
        "provider": row["provider"],
        "progress": shaped["progress"],
        "error": error,
    }


async def original_for_stream(
    ctx: Services, video_id: UUID, viewer: Principal | None
) -> tuple[str, str]:
    """(key, content type) of the original a viewer may stream."""
    async with ctx.db.acquire() as conn:
        row = await video_rows.get(conn, video_id)
    if row is None or not may_see_row(row, viewer) or not row["source_key"]:
        raise NotFound(VIDEO_NOT_FOUND)
    owner = viewer is not None and (viewer.user_id == row["owner_id"] or viewer.is_admin)
    if row["source"] == "clip" and not owner:
        # A story's upload is its owner's: others watch its outputs, and only while it lasts.
        raise NotFound(VIDEO_NOT_FOUND)
    return row["source_key"], row["content_type"] or "application/octet-stream"


async def delete_video(ctx: Services, video_id: UUID, principal: Principal) -> dict[str, Any]:
    """Soft-delete the row and remove every stored file of the video."""
    async with ctx.db.acquire() as conn, conn.transaction():
        row = await video_rows.get_for_update(conn, video_id)
        if row is None or not may_see_row(row, principal):
            raise NotFound(VIDEO_NOT_FOUND)
        if row["owner_id"] != principal.user_id and not principal.is_admin:
            raise Forbidden("Only the owner can delete this video")
        await video_rows.soft_delete(conn, video_id)
    await ctx.video_cache.invalidate(video_id)
    removed = await ctx.blobs.delete_prefix(blob_keys.video_prefix(video_id))
    logger.info("deleted video %s and %d stored files", video_id, removed)
    return {"message": "Video deleted"}


def too_large(limit: int, message: str | None = None) -> PayloadTooLarge:
    """The 413 for an upload over `limit` bytes."""
    return PayloadTooLarge(
        message or f"File size exceeds {_human_size(limit)}", details={"max_bytes": limit}
    )


def _human_size(size: int) -> str:
    """The Stories API writes limits as `100MB`."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if (size >= scale and size % scale == 0) or size >= scale * 10:
            return f"{size // scale}{unit}"
    return f"{size} bytes"
