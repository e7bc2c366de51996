"""How a resumable upload ends: finished (the same content checks as every other upload path,
then the transcode queued as for a multipart upload), abandoned (terminated, failed, or its
video deleted) or expired (the janitor's `sweep`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from reelwire.domain import clips, events, media
from reelwire.domain.context import Services
from reelwire.domain.errors import NotFound, ValidationFailed
from storage import blob_keys, upload_parts
from storage import clips as clip_rows
from storage import resumable_uploads as upload_rows
from storage import videos as video_rows
from storage.upload_parts import PartsLost, PartStore, Progress, Target
from transcode.probe import CONTENT_TYPES, InvalidMedia, MediaInfo, probe
from transcode.scratch import scratch_dir

logger = logging.getLogger(__name__)

EXPIRED = "The upload expired before all of its bytes arrived"
SWEEP_SECONDS = 60  # how often the janitor looks for expired and stalled uploads
STALLED_SECONDS = 60  # a whole upload this long unfinished lost its process while being checked
_KNOWN_TYPES = set(CONTENT_TYPES.values())


def store_of(ctx: Services) -> PartStore:
    """Where resumable uploads keep their bytes with this process's media storage."""
    return upload_parts.for_blobs(ctx.blobs, ctx.spool_dir / "resumable")


def target_of(row: Any) -> Target:
    """The upload as its store sees it: the whole file goes to the original of its video."""
    filetype = row["metadata"].get("filetype") or ""
    return Target(
        row["id"],
        row["upload_length"],
        blob_keys.video_original(row["video_id"] or row["id"]),
        filetype if filetype in _KNOWN_TYPES else "application/octet-stream",
    )


async def finish(ctx: Services, conn: asyncpg.Connection, row: Any) -> None:
    """Every byte is in: check the file and queue it, or mark the upload failed and raise the
    reason (400). `conn` holds the upload's lock."""
    store, target = store_of(ctx), target_of(row)
    with scratch_dir(ctx.spool_dir) as work:
        try:
            local = await store.assemble(target, Progress.of(row), work / "upload")
            in_place = store.stores_in_place
        except PartsLost:  # moved into place by a process that died before recording it
            if await ctx.blobs.size(target.key) != target.length:
                raise
            local, in_place = await ctx.blobs.local_file(target.key, work / "upload"), True
        try:
            if row["kind"] == "video":
                await _finish_video(ctx, row, target, local, in_place)
            else:
                await _finish_clip(ctx, row, target, local, in_place)
        except ValidationFailed as exc:
            await ctx.blobs.delete(target.key)
            await abandon(ctx, row, exc.message)
            await upload_rows.update(conn, row["id"], state="failed", error=exc.message)
            raise
        except NotFound:  # its video was deleted meanwhile: so goes the upload
            await abandon(ctx, row, None)
            await upload_rows.delete(conn, row["id"])
            raise
    await upload_rows.update(conn, row["id"], state="complete")


async def _store_original(
    ctx: Services, key: str, local: Path, info: MediaInfo, in_place: bool
) -> None:
    if not in_place:
        await ctx.blobs.put_file(key, local, info.content_type, consume=True)


async def _finish_video(
    ctx: Services, row: Any, target: Target, local: Path, in_place: bool
) -> None:
    info = await media.check_video(ctx, local, "file")
    await _store_original(ctx, target.key, local, info, in_place)
    async with ctx.db.acquire() as conn:
        found = await media.mark_checked(
            conn, row["video_id"], info, target.length, source_key=target.key
        )
    if not found:
        await ctx.blobs.delete_prefix(blob_keys.video_prefix(row["video_id"]))
        raise NotFound("The video this upload was for has been deleted")
    await media.queue_transcode(ctx, row["video_id"], row["owner_id"])


async def _finish_clip(
    ctx: Services, row: Any, target: Target, local: Path, in_place: bool
) -> None:
    """An image or a video, as `POST /api/clips/upload` takes; posted now, for 24 hours."""
    try:
        info = await probe(local)
    except InvalidMedia as exc:
        message = f"Invalid file format: {exc}"
        raise ValidationFailed(message, field_errors={"clip": [message]}) from None
    owner, clip_id, video_id = row["owner_id"], row["clip_id"], row["video_id"]
    now = datetime.now(UTC)
    posted = {"created_at": now, "expires_at": now + clips.CLIP_LIFETIME}
    if info.kind == "video":
        await media.check_video(ctx, local, "clip", probed=info)
        await _store_original(ctx, target.key, local, info, in_place)
        async with ctx.db.acquire() as conn, conn.transaction():
            await media.mark_checked(conn, video_id, info, target.length, source_key=target.key)
            await clip_rows.update(conn, clip_id, **posted)
        await media.queue_transcode(ctx, video_id, owner)
    else:
        clips.check_image_limits(ctx, info, "clip")
        key = blob_keys.clip_original(clip_id)
        await ctx.blobs.put_file(key, local, info.content_type, consume=True)
        if in_place:
            await ctx.blobs.delete(target.key)  # the video the clip would have been
        async with ctx.db.acquire() as conn, conn.transaction():
            await clip_rows.update(
                conn,
                clip_id,
                kind="image",
                video_id=None,
                owns_video=False,
                source_key=key,
                content_type=info.content_type,
                file_size=target.length,
                width=info.width,
                height=info.height,
                **posted,
            )
            await video_rows.soft_delete(conn, video_id)
            await upload_rows.update(conn, row["id"], video_id=None)
        await ctx.video_cache.invalidate(video_id)
        await ctx.jobs.enqueue("image", str(clip_id))
    async with ctx.db.acquire() as conn:
        clip = await clip_rows.get_active(conn, clip_id)
    if clip is not None:
        await clips.feeds_changed(ctx, owner)
        await events.clip_feed(ctx, owner, "added", clips.clip_body(clip, ctx))


async def abandon(ctx: Services, row: Any, reason: str | None) -> None:
    """An unfinished upload ends without a file. Its bytes go (an S3 multipart upload is
    aborted); a clip that was never posted goes; its video is removed (`reason` None: the upload
    was terminated or its video deleted) or, for a video upload, marked failed with `reason`."""
    await store_of(ctx).remove(target_of(row), Progress.of(row))
    video_id, clip_id, owner = row["video_id"], row["clip_id"], row["owner_id"]
    async with ctx.db.acquire() as conn, conn.transaction():
        if clip_id is not None:
            await clip_rows.delete(conn, clip_id)
        if video_id is not None and (reason is None or row["kind"] == "clip"):
            await video_rows.soft_delete(conn, video_id)
        elif video_id is not None:
            await video_rows.update(conn, video_id, status="failed", error=reason)
    if video_id is not None:
        await ctx.video_cache.invalidate(video_id)
        if reason is not None:
            await events.processing(ctx, video_id, owner, "failed", 0.0, reason)


async def sweep(ctx: Services) -> int:
    """The janitor's pass: expired uploads lose their bytes, S3 multipart uploads and rows (an
    unfinished one's video is marked failed, its clip removed); uploads whose last byte arrived
    but whose check was cut off by a dying process are finished; part files whose upload is
    gone are removed. Returns how many uploads were removed."""
    dsn = ctx.settings.database_url or ""
    async with ctx.db.acquire() as conn:
        expired = await upload_rows.expired(conn)
        stalled = await upload_rows.stalled_at_the_end(conn, STALLED_SECONDS)
    removed = 0
    for row in expired:
        async with upload_rows.locked(dsn, row["id"]) as lock:
            fresh = await upload_rows.get(lock, row["id"]) if lock is not None else None
            if fresh is None or fresh["expires_at"] > datetime.now(UTC):
                continue  # being written right now, or gone: the next pass sees
            if fresh["state"] == "receiving":
                await abandon(ctx, fresh, EXPIRED)
            await upload_rows.delete(lock, fresh["id"])
            removed += 1
    for row in stalled:
        await _finish_stalled(ctx, dsn, row)
    await _remove_leftovers(ctx)
    if removed:
        logger.info("removed %d expired resumable upload(s)", removed)
    return removed


async def _finish_stalled(ctx: Services, dsn: str, row: Any) -> None:
    async with upload_rows.locked(dsn, row["id"]) as lock:
        fresh = await upload_rows.get(lock, row["id"]) if lock is not None else None
        if fresh is None or fresh["state"] != "receiving":
            return
        if fresh["upload_offset"] != fresh["upload_length"]:
            return
        logger.warning("finishing resumable upload %s, cut off while checked", fresh["id"])
        try:
            await finish(ctx, lock, fresh)
        except (ValidationFailed, NotFound) as exc:
            logger.info("resumable upload %s failed its checks: %s", fresh["id"], exc)


async def _remove_leftovers(ctx: Services) -> None:
    root = ctx.spool_dir / "resumable"
    files = await asyncio.to_thread(upload_parts.files_by_upload, root, STALLED_SECONDS)
    if not files:
        return
    async with ctx.db.acquire() as conn:
        live = await upload_rows.ids_of(conn, list(files))
    for upload_id, paths in files.items():
        if upload_id not in live:
            for path in paths:
                await asyncio.to_thread(path.unlink, missing_ok=True)
