"""What happens to a video or clip as it is processed: the rows, the events, the fenced caches
and feeds. The transcoder's mechanics (FFmpeg, the ladder, the queue, the worker loop) live in
`transcode/`; the composition root hands the worker the job functions here.

Job functions are `async def job(ctx, target)`, each safe to run again: outputs go to fixed
keys and replace what a previous run wrote, and a finished target is skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from reelwire.domain import events
from reelwire.domain.clips import media_changed
from reelwire.domain.context import Services
from reelwire.domain.errors import ValidationFailed
from reelwire.domain.media import check_video, probe_columns, stored_probe
from reelwire.domain.media_access import needs_signing
from storage import blob_keys
from storage import clips as clip_rows
from storage import videos as video_rows
from transcode.failures import PermanentFailure, ffmpeg_failure
from transcode.ffmpeg import FFmpegError
from transcode.progressive import Publication
from transcode.render import render_image, render_video
from transcode.scratch import scratch_dir

logger = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 1.0


async def transcode_video(ctx: Services, target: str) -> None:
    """Probe the original, run the ladder, store the outputs, mark the video ready."""
    video_id = UUID(target)
    async with ctx.db.acquire() as conn:
        row = await video_rows.get(conn, video_id)
    if row is None or row["status"] == "ready" or not row["source_key"]:
        return
    owner = row["owner_id"]
    async with ctx.db.acquire() as conn:
        await video_rows.update(conn, video_id, status="processing", progress=0.0, error=None)
    await events.processing(ctx, video_id, owner, "processing", 0.0)

    outputs = blob_keys.video_outputs(video_id)
    # A run that died half-way may have published: start from nothing (the same keys are
    # written again, with the same bytes).
    await withdraw(ctx, video_id)
    publication = Publication(
        ctx.blobs,
        outputs,
        on_rendition=lambda name, resolution: _rendition_ready(
            ctx, video_id, owner, name, resolution
        ),
        on_playable=lambda: _playable(ctx, video_id, owner),
    )
    with scratch_dir(ctx.spool_dir) as work:
        source = await ctx.blobs.local_file(row["source_key"], work / "source")
        try:
            # The original under its key never changes after the upload was probed.
            info = await check_video(ctx, source, "video", probed=stored_probe(row))
        except ValidationFailed as exc:
            raise PermanentFailure(str(exc)) from None
        except FFmpegError as exc:
            raise ffmpeg_failure(exc) from None
        try:
            rendered = await render_video(
                source,
                info,
                work,
                timeout=ctx.settings.transcode_timeout,
                on_progress=_ProgressReporter(ctx, video_id, owner),
                publication=publication,
            )
        except BaseException:
            # Half a ladder is not left up: players get 404s at once rather than a stream
            # that stops, and the status (failed, or pending for a retry) says why.
            await withdraw(ctx, video_id, announce=owner)
            raise

    async with ctx.db.acquire() as conn, conn.transaction():
        current = await video_rows.get_for_update(conn, video_id)
        if current is None:  # deleted while we worked: leave nothing behind
            await ctx.blobs.delete_prefix(blob_keys.video_prefix(video_id))
            return
        await mark_ready(
            conn,
            current,
            **dataclasses.asdict(blob_keys.video_output_keys(video_id)),
            preview_key=blob_keys.video_preview(video_id) if rendered.preview else None,
            qualities=rendered.qualities,
            processed_at=datetime.now(UTC),
            **probe_columns(info),
        )
    if not ctx.settings.keep_originals and current["source"] != "library":
        await ctx.blobs.delete(row["source_key"])
        async with ctx.db.acquire() as conn:
            await video_rows.update(conn, video_id, source_key=None)
    await events.processing(ctx, video_id, owner, "ready", 100.0)
    if current["source"] == "clip":
        await media_changed(ctx, owner, video_id=video_id)
    logger.info("video %s ready: %s", video_id, ", ".join(rendered.rung_names))


async def _playable(ctx: Services, video_id: UUID, owner: UUID) -> None:
    """Every rung has its first segment up, and the master playlist: the video plays."""
    async with ctx.db.acquire() as conn:
        await video_rows.update(
            conn,
            video_id,
            playable_at=datetime.now(UTC),
            hls_key=blob_keys.video_output_keys(video_id).hls_key,
        )
        row = await video_rows.get(conn, video_id)
    if row is not None:
        plain = not needs_signing(row)
        await events.playable(ctx, video_id, owner, plain=plain, progress=row["progress"])


async def _rendition_ready(
    ctx: Services, video_id: UUID, owner: UUID, quality: str, resolution: str
) -> None:
    async with ctx.db.acquire() as conn:
        row = await video_rows.get(conn, video_id)
    progress = row["progress"] if row is not None else 0.0
    await events.rendition_ready(ctx, video_id, owner, quality, resolution, progress)


async def withdraw(ctx: Services, video_id: UUID, *, announce: UUID | None = None) -> None:
    """Take down whatever a run of the ladder published; the video is no longer playable.
    With `announce` (the owner), watchers hear `playable: false`."""
    await ctx.blobs.delete_prefix(blob_keys.video_outputs(video_id))
    async with ctx.db.acquire() as conn:
        row = await video_rows.get(conn, video_id)
        if row is None or row["playable_at"] is None:
            return
        await video_rows.update(conn, video_id, playable_at=None, hls_key=None)
    if announce is not None:
        progress = row["progress"]
        await events.playable(
            ctx, video_id, announce, plain=False, progress=progress, playable=False
        )


async def mark_ready(conn: asyncpg.Connection, row: Any, **outputs: Any) -> None:
    """Set a video ready to watch: full progress, no error, published now unless it already
    was, and `outputs` (where its playback comes from, what was measured). Whoever made the
    renditions, our transcoder or an external one (the CLUTCH API's webhooks), ends here."""
    await video_rows.update(
        conn,
        row["id"],
        status="ready",
        progress=100.0,
        error=None,
        published_at=row["published_at"] or datetime.now(UTC),
        playable_at=row["playable_at"] or datetime.now(UTC),
        **outputs,
    )


async def fail_video(ctx: Services, target: str, reason: str) -> None:
    """Mark a video failed with a reason a person can read."""
    video_id = UUID(target)
    async with ctx.db.acquire() as conn:
        row = await video_rows.get(conn, video_id)
        if row is None:
            return
        await video_rows.update(conn, video_id, status="failed", error=reason)
    await events.processing(ctx, video_id, row["owner_id"], "failed", row["progress"], reason)
    if row["source"] == "clip":
        await media_changed(ctx, row["owner_id"], video_id=video_id)


async def video_retrying(ctx: Services, target: str, reason: str) -> None:
    """A video's job failed for now and waits for its retry: its status says why and when."""
    async with ctx.db.acquire() as conn:
        await video_rows.update(conn, UUID(target), status="pending", error=reason)


async def process_image_clip(ctx: Services, target: str) -> None:
    """Resize an image clip and make its thumbnail."""
    clip_id = UUID(target)
    async with ctx.db.acquire() as conn:
        clip = await clip_rows.get_any(conn, clip_id)
    if clip is None or clip["status"] == "ready" or not clip["source_key"]:
        return
    with scratch_dir(ctx.spool_dir) as work:
        source = await ctx.blobs.local_file(clip["source_key"], work / "source")
        rendered = await render_image(source, work)
        await ctx.blobs.put_tree(blob_keys.clip_media(clip_id), rendered.out, consume=True)
    async with ctx.db.acquire() as conn:
        await clip_rows.mark_ready(
            conn,
            clip_id,
            image_key=blob_keys.clip_image(clip_id),
            thumbnail_key=blob_keys.clip_thumbnail(clip_id),
            width=rendered.width,
            height=rendered.height,
        )
    await media_changed(ctx, clip["user_id"], clip_id=clip_id)


async def fail_image_clip(ctx: Services, target: str, reason: str) -> None:
    """Mark an image clip failed."""
    async with ctx.db.acquire() as conn:
        await clip_rows.mark_failed(conn, UUID(target), reason)
        clip = await clip_rows.get_any(conn, UUID(target))
    if clip is not None:
        await media_changed(ctx, clip["user_id"], clip_id=clip["id"])


async def requeue_stale_videos(ctx: Services) -> None:
    """Queue again the videos nobody has touched for ten leases (their job was lost)."""
    stale_after = ctx.jobs.lease * 10
    async with ctx.db.acquire() as conn:
        stale = await video_rows.stale_unfinished(conn, stale_after)
        for video_id in stale:
            await video_rows.update(conn, video_id, status="pending")
    for video_id in stale:
        logger.warning("re-queueing video %s (untouched for %.0fs)", video_id, stale_after)
        await ctx.jobs.enqueue("video", str(video_id))


class _ProgressReporter:
    """Writes progress to the row and publishes it, at most once a second (and at 100%)."""

    def __init__(self, ctx: Services, video_id: UUID, owner: UUID) -> None:
        self.ctx, self.video_id, self.owner = ctx, video_id, owner
        self.last_sent = 0.0

    async def __call__(self, percent: float) -> None:
        now = time.monotonic()
        if percent < 100 and now - self.last_sent < PROGRESS_EVERY_SECONDS:
            return
        self.last_sent = now
        shown = min(percent, 99.0)  # 100 is said once the outputs are stored
        async with self.ctx.db.acquire() as conn:
            await video_rows.update(conn, self.video_id, progress=shown)
        await events.processing(self.ctx, self.video_id, self.owner, "processing", shown)
