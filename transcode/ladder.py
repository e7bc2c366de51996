"""The HLS ladder: which rungs a source gets, and the one FFmpeg command that makes them all.

One process decodes the source once, splits the picture, scales and encodes every rung with
keyframes forced at the same instants (so segments align across rungs and players can switch
at any boundary), encodes audio once as a shared rendition, and writes a thumbnail and storyboard
frames from the same decode. The playlists are then measured and rewritten by transcode.hls
(the master playlist is ours, not FFmpeg's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from storage import blob_keys
from transcode.ffmpeg import INPUT_GUARDS
from transcode.probe import MediaInfo

SEGMENT_SECONDS = 4
# The first segment is shorter, so the first frame is playable sooner (every rung has one
# complete segment after this much of the video is encoded).
FIRST_SEGMENT_SECONDS = 2
# x264 slices per frame: each encoder uses this many threads, and the output stays the same
# bytes whatever the machine (slices, unlike frame threads, are deterministic under VBV).
ENCODER_SLICES = 4
PREVIEW_SECONDS = 3.0
PREVIEW_SHORT_SIDE = 240
PREVIEW_FPS = 15
PREVIEW_KBPS = 300
POSTER_WINDOW_SECONDS = 10.0  # the poster is the most representative frame of the opening
POSTER_FPS = 2
AUDIO_KBPS = 128
MAX_FPS = 60
STORYBOARD_TILE = 160  # long side of one storyboard tile, px
STORYBOARD_MAX_TILES = 100
IMAGE_MAX_SIDE = 1080
THUMBNAIL_LONG_SIDE = 1280


@dataclass(frozen=True)
class RungSpec:
    """A rung of the Clipsy API's ladder, named by the short side of the picture."""

    name: str
    short_side: int
    video_kbps: int


LADDER = (
    RungSpec("360p", 360, 800),
    RungSpec("480p", 480, 1400),
    RungSpec("720p", 720, 2800),
    RungSpec("1080p", 1080, 5000),
)


@dataclass(frozen=True)
class Rung:
    """A rung sized for one source."""

    name: str
    width: int
    height: int
    video_kbps: int

    @property
    def resolution(self) -> str:
        """`WIDTHxHEIGHT`."""
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Storyboard:
    """Geometry of the scrubbing sprite: `count` tiles every `interval` seconds."""

    interval: float
    count: int
    columns: int
    rows: int
    tile_width: int
    tile_height: int

    def webvtt(self, sprite_url: str, duration: float) -> str:
        """The WebVTT index players use to show a tile while scrubbing."""
        lines = ["WEBVTT", ""]
        for i in range(self.count):
            start, end = i * self.interval, min(duration, (i + 1) * self.interval)
            x, y = (i % self.columns) * self.tile_width, (i // self.columns) * self.tile_height
            lines += [
                f"{_vtt_time(start)} --> {_vtt_time(end)}",
                f"{sprite_url}#xywh={x},{y},{self.tile_width},{self.tile_height}",
                "",
            ]
        return "\n".join(lines)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _fit(info: MediaInfo, short_side: int) -> tuple[int, int]:
    """Display size with the short side set to `short_side`, aspect kept, both even."""
    if info.portrait:
        return _even(short_side), _even(info.height * short_side / info.width)
    return _even(info.width * short_side / info.height), _even(short_side)


def plan_ladder(info: MediaInfo) -> list[Rung]:
    """The Clipsy API's rungs up to the source's size (never upscaled); a small source gets one."""
    short = min(info.width, info.height)
    rungs = [
        Rung(s.name, *_fit(info, s.short_side), s.video_kbps)
        for s in LADDER
        if s.short_side <= short
    ]
    if not rungs:
        smallest = LADDER[0]
        kbps = max(200, round(smallest.video_kbps * short / smallest.short_side))
        rungs = [Rung(f"{_even(short)}p", *_fit(info, short), kbps)]
    return rungs


def plan_storyboard(info: MediaInfo) -> Storyboard:
    """At most 100 tiles spread over the whole video, 10 per row."""
    duration = info.duration or 1.0
    interval = max(1.0, duration / STORYBOARD_MAX_TILES)
    count = max(1, math.ceil(duration / interval))
    columns = min(10, count)
    rows = math.ceil(count / columns)
    if info.portrait:
        tile_h, tile_w = STORYBOARD_TILE, _even(STORYBOARD_TILE * info.width / info.height)
    else:
        tile_w, tile_h = STORYBOARD_TILE, _even(STORYBOARD_TILE * info.height / info.width)
    return Storyboard(interval, count, columns, rows, tile_w, tile_h)


def thumbnail_size(info: MediaInfo) -> tuple[int, int]:
    """The thumbnail's size: the picture, long side at most 1280."""
    scale = min(1.0, THUMBNAIL_LONG_SIDE / max(info.width, info.height))
    return _even(info.width * scale), _even(info.height * scale)


def preview_size(info: MediaInfo) -> tuple[int, int]:
    """The animated preview's size: feed size, short side 240 (never upscaled)."""
    return _fit(info, min(PREVIEW_SHORT_SIDE, info.width, info.height))


def preview_start(info: MediaInfo) -> float:
    """Where the 3 s preview is cut from: a fifth into the video (past intros and fades), so
    long as 3 s remain."""
    duration = info.duration or 0.0
    return round(max(0.0, min(duration * 0.2, duration - PREVIEW_SECONDS)), 3)


def keyframe_times(info: MediaInfo) -> str:
    """The `-force_key_frames` expression: a keyframe at 0 and at FIRST_SEGMENT_SECONDS, then
    every SEGMENT_SECONDS, and none in the last second (so no sub-second tail segment is made).
    The same instants in every rung, so segments align and players switch at any boundary."""
    first, every = FIRST_SEGMENT_SECONDS, SEGMENT_SECONDS
    at = f"if(lt(n_forced,2),n_forced*{first},{first}+(n_forced-1)*{every})"
    expression = f"gte(t,{at})"
    if info.duration and info.duration > first + 1:
        expression += f"*lt(t,{info.duration - 1:.3f})"
    return f"expr:{expression}"


def ladder_command(
    info: MediaInfo,
    rungs: list[Rung],
    storyboard: Storyboard,
    source: Path,
    out: Path,
    frames_dir: Path,
) -> list[str]:
    """Arguments for the single FFmpeg run that writes <rung>/playlist.m3u8 and segments,
    audio/..., thumbnail.jpg into `out/`, and storyboard frames into `frames_dir/`.
    transcode.hls.finalize then writes master.m3u8 from the segments."""
    branches = len(rungs) + 3
    labels = "".join(f"[s{i}]" for i in range(branches))
    fps_cap = f"fps={MAX_FPS}," if info.fps and info.fps > MAX_FPS else ""
    graph = [f"[0:v]{fps_cap}split={branches}{labels}"]
    for i, rung in enumerate(rungs):
        graph.append(f"[s{i}]scale={rung.width}:{rung.height}:flags=bicubic,setsar=1[v{i}]")
    # The poster: of two frames a second over the opening seconds, the most representative
    # (FFmpeg's `thumbnail` filter: the frame nearest the average histogram), so never the
    # black first frame of a fade-in unless the whole opening is black.
    window = min(POSTER_WINDOW_SECONDS, info.duration or POSTER_WINDOW_SECONDS)
    batch = max(1, math.ceil(window * POSTER_FPS))
    tw, th = thumbnail_size(info)
    graph.append(
        f"[s{len(rungs)}]trim=end={window:.3f},fps={POSTER_FPS},scale={tw}:{th},setsar=1,"
        f"thumbnail=n={batch}[thumb]"
    )
    pw, ph = preview_size(info)
    start = preview_start(info)
    graph.append(
        f"[s{len(rungs) + 2}]trim=start={start:.3f}:duration={PREVIEW_SECONDS:.3f},"
        f"setpts=PTS-STARTPTS,fps={PREVIEW_FPS},scale={pw}:{ph},setsar=1[preview]"
    )
    sb = storyboard
    # Storyboard frames go out as an image sequence while the video is read (a `tile` output
    # would emit nothing until the end and hold back FFmpeg's progress reports); they are
    # tiled into the sprite by storyboard_command afterwards.
    graph.append(
        f"[s{len(rungs) + 1}]fps=1/{sb.interval:.6f},scale={sb.tile_width}:{sb.tile_height},"
        "setsar=1[frames]"
    )

    args = [*INPUT_GUARDS, "-i", str(source), "-filter_complex", ";".join(graph)]
    for i in range(len(rungs)):
        args += ["-map", f"[v{i}]"]
    if info.has_audio:
        args += ["-map", "0:a:0"]
    # Sliced threads: every encoder splits each frame into ENCODER_SLICES slices encoded in
    # parallel, so one upload keeps the cores busy (the 1080p rung alone used to bound the
    # whole pass to one core). x264's frame threads would be faster still, but with VBV they
    # are not repeatable and a re-run must write the same bytes under the same keys.
    # fmt: off
    args += [
        "-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact",
        "-threads", str(ENCODER_SLICES), "-x264-params", "sliced-threads=1",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-sc_threshold", "0", "-force_key_frames", keyframe_times(info),
        "-flags:v", "+bitexact",
    ]
    for i, rung in enumerate(rungs):
        kbps = rung.video_kbps
        args += [f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{round(kbps * 1.07)}k",
                 f"-bufsize:v:{i}", f"{round(kbps * 1.5)}k"]
    stream_map = [f"v:{i},name:{rung.name}" for i, rung in enumerate(rungs)]
    if info.has_audio:
        args += ["-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2", "-ar", "48000",
                 "-flags:a", "+bitexact"]
        stream_map.append("a:0,name:audio")
    # An EVENT playlist FFmpeg rewrites as each segment closes (renamed into place, like the
    # segments): transcode.progressive reads it to publish segments while the pass runs. The
    # hls muxer cuts at the first keyframe after each FIRST_SEGMENT_SECONDS step, so the
    # forced keyframes above are the boundaries: 2 s, then 4 s segments.
    args += [
        "-f", "hls", "-hls_time", str(FIRST_SEGMENT_SECONDS), "-hls_playlist_type", "event",
        "-hls_flags", "independent_segments+temp_file", "-hls_segment_type", "mpegts",
        "-hls_segment_filename", str(out / "%v" / "segment_%05d.ts"),
        "-var_stream_map", " ".join(stream_map),
        str(out / "%v" / "playlist.m3u8"),
        "-map", "[thumb]", "-frames:v", "1", "-update", "1", "-q:v", "3",
        str(out / blob_keys.THUMBNAIL),
        "-map", "[preview]", "-an", "-c:v", "libx264", "-preset", "veryfast",
        "-profile:v", "high", "-pix_fmt", "yuv420p", "-threads", "1",
        "-b:v", f"{PREVIEW_KBPS}k", "-maxrate", f"{PREVIEW_KBPS * 2}k",
        "-bufsize", f"{PREVIEW_KBPS * 2}k", "-flags:v", "+bitexact", "-fflags", "+bitexact",
        "-movflags", "+faststart", "-f", "mp4", str(out / blob_keys.PREVIEW),
        "-map", "[frames]", "-frames:v", str(sb.count), "-q:v", "5", "-f", "image2",
        str(frames_dir / "%04d.jpg"),
    ]
    # fmt: on
    return args


def storyboard_command(storyboard: Storyboard, frames_dir: Path, sprite: Path) -> list[str]:
    """Arguments that tile the storyboard frames (ours, not user input) into one sprite."""
    # fmt: off
    return [
        "-protocol_whitelist", "file", "-framerate", "1", "-i", str(frames_dir / "%04d.jpg"),
        "-vf", f"tile={storyboard.columns}x{storyboard.rows}", "-frames:v", "1", "-q:v", "5",
        "-y", str(sprite),
    ]
    # fmt: on


def image_command(info: MediaInfo, source: Path, out: Path) -> list[str]:
    """Arguments that write `out/image.webp` (long side <= 1080) and `out/thumbnail.jpg`."""
    scale = min(1.0, IMAGE_MAX_SIDE / max(info.width, info.height))
    w, h = _even(info.width * scale), _even(info.height * scale)
    tscale = min(1.0, 320 / max(info.width, info.height))
    tw, th = _even(info.width * tscale), _even(info.height * tscale)
    graph = f"[0:v]split=2[a][b];[a]scale={w}:{h}[img];[b]scale={tw}:{th}[thumb]"
    # fmt: off
    return [
        *INPUT_GUARDS, "-i", str(source), "-filter_complex", graph, "-map_metadata", "-1",
        "-map", "[img]", "-frames:v", "1", "-update", "1", "-c:v", "libwebp", "-quality", "85",
        str(out / blob_keys.IMAGE),
        "-map", "[thumb]", "-frames:v", "1", "-update", "1", "-q:v", "4",
        str(out / blob_keys.THUMBNAIL),
    ]
    # fmt: on


def _vtt_time(seconds: float) -> str:
    whole = int(seconds)
    millis = round((seconds - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{millis:03d}"
