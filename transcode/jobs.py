"""Job functions: `async def job(ctx, target)`. Each is safe to run again: outputs go to fixed
keys and replace what a previous run wrote, and a finished target is skipped."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import aiofiles

from reelwire.domain import events
from reelwire.domain.clips import media_changed
from reelwire.domain.context import Services
from reelwire.domain.errors import ValidationFailed
from reelwire.domain.media import check_video, probe_columns, stored_probe
from reelwire.domain.processing import mark_ready
from storage import blob_keys
from storage import clips as clip_rows
from storage import videos as video_rows
from transcode.ffmpeg import FFmpegError, run_ffmpeg
from transcode.hls import finalize
from transcode.ladder import (
    MAX_FPS,
    image_command,
    ladder_command,
    plan_ladder,
    plan_storyboard,
    storyboard_command,
)
from transcode.probe import InvalidMedia, probe
from transcode.scratch import scratch_dir

logger = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 1.0


class PermanentFailure(Exception):
    """Running the job again cannot help (bad media); the reason is shown to the owner."""


class TransientFailure(Exception):
    """Running the job again may well work; the message is a reason a person can read."""


def stopped_transcoder(exc: FFmpegError) -> TransientFailure:
    """FFmpeg stopped from outside (a signal, the OOM killer, our timeout): not the media's
    fault, so the job is retried."""
    if exc.timed_out:
        return TransientFailure(f"The transcoder did not finish in time ({exc})")
    return TransientFailure(f"The transcoder was stopped (killed by signal {exc.signal})")


def _ffmpeg_failure(exc: FFmpegError) -> Exception:
    """Only FFmpeg failing on the media is bad media."""
    if exc.stopped:
        return stopped_transcoder(exc)
    return PermanentFailure(_readable(exc.detail))


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

    with scratch_dir(ctx.spool_dir) as work:
        source = await ctx.blobs.local_file(row["source_key"], work / "source")
        try:
            # The original under its key never changes after the upload was probed.
            info = await check_video(ctx, source, "video", probed=stored_probe(row))
        except ValidationFailed as exc:
            raise PermanentFailure(str(exc)) from None
        except FFmpegError as exc:
            raise _ffmpeg_failure(exc) from None
        rungs, storyboard = plan_ladder(info), plan_storyboard(info)
        out = work / "out"
        for rung in rungs:
            (out / rung.name).mkdir(parents=True)
        if info.has_audio:
            (out / "audio").mkdir()

        frames = work / "storyboard-frames"
        frames.mkdir()
        reporter = _ProgressReporter(ctx, video_id, owner)
        try:
            await run_ffmpeg(
                ladder_command(info, rungs, storyboard, source, out, frames),
                timeout=ctx.settings.transcode_timeout,
                duration=info.duration,
                on_progress=reporter,
            )
        except FFmpegError as exc:
            raise _ffmpeg_failure(exc) from None
        # Playlists from the segments as written: tails merged, BANDWIDTH measured, CODECS read
        # from the streams; the master playlist is written here.
        fps = min(info.fps, MAX_FPS) if info.fps else None
        measured = await asyncio.to_thread(finalize, out, [r.name for r in rungs], fallback_fps=fps)
        try:
            await run_ffmpeg(
                storyboard_command(storyboard, frames, out / blob_keys.STORYBOARD), timeout=60
            )
        except FFmpegError as exc:  # our own frames: any failure here is not the upload's
            raise stopped_transcoder(exc) if exc.stopped else TransientFailure(str(exc)) from None
        async with aiofiles.open(out / blob_keys.STORYBOARD_INDEX, "w") as vtt:
            await vtt.write(storyboard.webvtt(blob_keys.STORYBOARD, info.duration or 0.0))
        prefix = blob_keys.video_outputs(video_id)
        sizes = {r.name: await asyncio.to_thread(_dir_size, out / r.name) for r in rungs}
        await ctx.blobs.put_tree(prefix, out, consume=True)
        qualities = [
            {
                "quality": rung.name,
                "resolution": rung.resolution,
                # kbps as measured: the variant's AVERAGE-BANDWIDTH (video + audio)
                "bitrate": round(stats.average_bandwidth / 1000),
                "file_size": sizes[rung.name],
            }
            for rung, stats in zip(rungs, measured, strict=True)
        ]

    async with ctx.db.acquire() as conn, conn.transaction():
        current = await video_rows.get_for_update(conn, video_id)
        if current is None:  # deleted while we worked: leave nothing behind
            await ctx.blobs.delete_prefix(blob_keys.video_prefix(video_id))
            return
        await mark_ready(
            conn,
            current,
            **dataclasses.asdict(blob_keys.video_output_keys(video_id)),
            qualities=qualities,
            processed_at=_now(),
            **probe_columns(info),
        )
    if not ctx.settings.keep_originals and current["source"] != "library":
        await ctx.blobs.delete(row["source_key"])
        async with ctx.db.acquire() as conn:
            await video_rows.update(conn, video_id, source_key=None)
    await events.processing(ctx, video_id, owner, "ready", 100.0)
    if current["source"] == "clip":
        await media_changed(ctx, owner, video_id=video_id)
    logger.info("video %s ready: %s", video_id, ", ".join(r.name for r in rungs))


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


async def process_image_clip(ctx: Services, target: str) -> None:
    """Resize an image clip and make its thumbnail."""
    clip_id = UUID(target)
    async with ctx.db.acquire() as conn:
        clip = await clip_rows.get_any(conn, clip_id)
    if clip is None or clip["status"] == "ready" or not clip["source_key"]:
        return
    with scratch_dir(ctx.spool_dir) as work:
        source = await ctx.blobs.local_file(clip["source_key"], work / "source")
        try:
            info = await probe(source)
        except InvalidMedia as exc:
            raise PermanentFailure(str(exc)) from None
        except FFmpegError as exc:
            raise _ffmpeg_failure(exc) from None
        out = work / "out"
        out.mkdir()
        try:
            await run_ffmpeg(image_command(info, source, out), timeout=120)
        except FFmpegError as exc:
            raise _ffmpeg_failure(exc) from None
        await ctx.blobs.put_tree(blob_keys.clip_media(clip_id), out, consume=True)
    async with ctx.db.acquire() as conn:
        await clip_rows.mark_ready(
            conn,
            clip_id,
            image_key=blob_keys.clip_image(clip_id),
            thumbnail_key=blob_keys.clip_thumbnail(clip_id),
            width=info.width,
            height=info.height,
        )
    await media_changed(ctx, clip["user_id"], clip_id=clip_id)


async def fail_image_clip(ctx: Services, target: str, reason: str) -> None:
    """Mark an image clip failed."""
    async with ctx.db.acquire() as conn:
        await clip_rows.mark_failed(conn, UUID(target), reason)
        clip = await clip_rows.get_any(conn, UUID(target))
    if clip is not None:
        await media_changed(ctx, clip["user_id"], clip_id=clip["id"])


JOBS = {"video": (transcode_video, fail_video), "image": (process_image_clip, fail_image_clip)}


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


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


_NOISE = re.compile(r"^\[[^\]]+\] ")


def _readable(detail: str) -> str:
    """The last meaningful FFmpeg line, as a reason a person can read."""
    lines = [_NOISE.sub("", line).strip() for line in detail.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(("Conversion failed", "frame="))]
    last = meaningful[-1] if meaningful else "unknown error"
    return f"The video could not be decoded: {last}"[:500]


def _now() -> datetime:
    return datetime.now(UTC)
