"""Renditions made in a scratch directory: a video's HLS ladder, thumbnail and storyboard, or
an image clip's resized image and thumbnail. What they are for (rows, events, feeds) is the
caller's; failures are raised as `transcode.failures` says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiofiles

from reelwire import telemetry
from storage import blob_keys
from transcode.failures import (
    PermanentFailure,
    TransientFailure,
    ffmpeg_failure,
    stopped_transcoder,
)
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
from transcode.probe import InvalidMedia, MediaInfo, probe
from transcode.progressive import TARGET_DURATION, Publication, Publisher


@dataclass(frozen=True)
class RenderedVideo:
    """A video's outputs, stored under its outputs prefix, and its rungs."""

    out: Path
    qualities: list[dict[str, Any]]
    preview: bool  # a 3 s animated preview was made

    @property
    def rung_names(self) -> list[str]:
        """The rungs made, lowest first."""
        return [q["quality"] for q in self.qualities]


@dataclass(frozen=True)
class RenderedImage:
    """An image clip's outputs tree and the source picture's size."""

    out: Path
    width: int
    height: int


async def render_video(
    source: Path,
    info: MediaInfo,
    work: Path,
    *,
    timeout: float,
    on_progress: Callable[[float], Awaitable[None]],
    publication: Publication,
) -> RenderedVideo:
    """Run the ladder over `source` into `work/out`: renditions, master playlist, poster,
    animated preview, storyboard sprite and index, all stored under `publication`'s prefix;
    the renditions are published while FFmpeg writes them."""
    rungs, storyboard = plan_ladder(info), plan_storyboard(info)
    out = work / "out"
    for rung in rungs:
        (out / rung.name).mkdir(parents=True)
    if info.has_audio:
        (out / "audio").mkdir()

    frames = work / "storyboard-frames"
    frames.mkdir()
    fps = min(info.fps, MAX_FPS) if info.fps else None
    publisher = Publisher(
        publication, out, rungs, has_audio=info.has_audio, duration=info.duration, fps=fps
    )
    publishing = asyncio.create_task(publisher.run())
    started = time.perf_counter()
    try:
        await run_ffmpeg(
            ladder_command(info, rungs, storyboard, source, out, frames),
            timeout=timeout,
            duration=info.duration,
            on_progress=on_progress,
        )
    except FFmpegError as exc:
        raise ffmpeg_failure(exc) from None
    finally:
        publisher.stop()
        await publishing
    if rungs:
        elapsed = time.perf_counter() - started
        telemetry.transcode_ladder_seconds.labels(rungs[-1].name).observe(elapsed)
    # Playlists from the segments as written: tails merged (never into a published segment),
    # ended, BANDWIDTH measured, CODECS read from the streams; the master playlist is written.
    measured = await asyncio.to_thread(
        lambda: finalize(
            out,
            [r.name for r in rungs],
            fallback_fps=fps,
            published=publisher.published,
            target=TARGET_DURATION,
        )
    )
    try:
        await run_ffmpeg(
            storyboard_command(storyboard, frames, out / blob_keys.STORYBOARD), timeout=60
        )
    except FFmpegError as exc:  # our own frames: any failure here is not the upload's
        raise stopped_transcoder(exc) if exc.stopped else TransientFailure(str(exc)) from None
    async with aiofiles.open(out / blob_keys.STORYBOARD_INDEX, "w") as vtt:
        await vtt.write(storyboard.webvtt(blob_keys.STORYBOARD, info.duration or 0.0))
    sizes = {r.name: await asyncio.to_thread(_dir_size, out / r.name) for r in rungs}
    preview = (out / blob_keys.PREVIEW).is_file()
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
    await publisher.complete()
    return RenderedVideo(out, qualities, preview)


async def render_image(source: Path, work: Path) -> RenderedImage:
    """Probe an image and write its resized image and thumbnail into `work/out`."""
    try:
        info = await probe(source)
    except InvalidMedia as exc:
        raise PermanentFailure(str(exc)) from None
    except FFmpegError as exc:
        raise ffmpeg_failure(exc) from None
    out = work / "out"
    out.mkdir()
    try:
        await run_ffmpeg(image_command(info, source, out), timeout=120)
    except FFmpegError as exc:
        raise ffmpeg_failure(exc) from None
    return RenderedImage(out, info.width, info.height)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
