"""What an upload really is: magic bytes first, then FFmpeg's own reading of the file under the
same input restrictions the transcode runs with. Never the file name or Content-Type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import aiofiles

from transcode.ffmpeg import INPUT_GUARDS, FFmpegError, run_ffmpeg, signal_name, stopping_signal

VIDEO_FORMATS = {"mp4", "mov", "mkv", "webm", "avi", "flv", "wmv"}
IMAGE_FORMATS = {"jpeg", "png", "gif", "webp", "bmp", "svg"}
CONTENT_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
    "flv": "video/x-flv",
    "wmv": "video/x-ms-wmv",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "svg": "image/svg+xml",
}


class InvalidMedia(ValueError):
    """The file is not media we accept; the message is for the person who uploaded it."""


@dataclass(frozen=True)
class MediaInfo:
    """What the probe learned. Width and height are as displayed (rotation applied)."""

    format: str
    kind: str  # "video" or "image"
    width: int
    height: int
    duration: float | None
    fps: float | None
    has_audio: bool
    video_codec: str
    rotation: int

    @property
    def content_type(self) -> str:
        """The MIME type the content (not the name) says."""
        return CONTENT_TYPES[self.format]

    @property
    def resolution(self) -> str:
        """`WIDTHxHEIGHT` as displayed."""
        return f"{self.width}x{self.height}"

    @property
    def portrait(self) -> bool:
        """Taller than wide."""
        return self.height > self.width


def sniff(head: bytes) -> str:
    """The container named by the first bytes, or InvalidMedia saying what the file looks like."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "mov" if brand == b"qt  " else "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "wmv"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and len(head) > 14:
        return "bmp"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:512].lower()
    if text.startswith(b"#extm3u"):
        raise InvalidMedia("This is an HLS playlist, not a video file")
    if text.startswith(b"ffconcat") or text.startswith(b"file "):
        raise InvalidMedia("This is an FFmpeg concat list, not a video file")
    if (text.startswith(b"<?xml") or text.startswith(b"<svg")) and b"<svg" in text:
        return "svg"
    raise InvalidMedia("The file is not a supported video or image format")


_INPUT = re.compile(r"^Input #0, ([^,]+(?:,[^,]+)*), from ", re.M)
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio): (.*)$", re.M)
_SIZE = re.compile(r", (\d{1,5})x(\d{1,5})(?=[\s,\[]|$)")
_FPS = re.compile(r", (\d+(?:\.\d+)?)(k?) (?:fps|tbr)")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")


def parse_probe(stderr: str, container: str) -> MediaInfo:
    """MediaInfo from `ffmpeg -i` output; InvalidMedia when there is no usable picture."""
    if not _INPUT.search(stderr):
        raise InvalidMedia("The file could not be read as media (it may be damaged or truncated)")
    video = None
    has_audio = False
    for match in _STREAM.finditer(stderr):
        kind, description = match.groups()
        if kind == "Audio":
            has_audio = True
        elif video is None and "attached pic" not in description:
            video = description
    if video is None:
        raise InvalidMedia("The file has no video stream")
    size = _SIZE.search(video)
    if size is None:
        raise InvalidMedia("The video stream has no picture size (the file may be damaged)")
    width, height = int(size.group(1)), int(size.group(2))
    if width < 16 or height < 16:
        raise InvalidMedia(f"The picture is too small ({width}x{height})")
    rotation_match = _ROTATION.search(stderr)
    rotation = round(float(rotation_match.group(1))) % 360 if rotation_match else 0
    if rotation in (90, 270):
        width, height = height, width
    fps_match = _FPS.search(video)
    fps = None
    if fps_match:
        fps = float(fps_match.group(1)) * (1000 if fps_match.group(2) else 1)
    duration_match = _DURATION.search(stderr)
    duration = None
    if duration_match:
        h, m, s = duration_match.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    is_image = container in IMAGE_FORMATS - {"gif"}
    return MediaInfo(
        format=container,
        kind="image" if is_image else "video",
        width=width,
        height=height,
        duration=None if is_image else duration,
        fps=None if is_image else fps,
        has_audio=has_audio and not is_image,
        video_codec=video.split(" ", 1)[0].rstrip(","),
        rotation=rotation,
    )


async def probe(path: Path, *, timeout: float = 30.0) -> MediaInfo:
    """Sniff and probe a local file."""
    async with aiofiles.open(path, "rb") as handle:
        head = await handle.read(4096)
    if not head:
        raise InvalidMedia("The file is empty")
    container = sniff(head)
    result = await run_ffmpeg(
        [*INPUT_GUARDS, "-i", str(path)], timeout=timeout, check=False, nice=False
    )
    stopped_by = stopping_signal(result.returncode, result.stderr)
    if stopped_by is not None:  # its output is cut short: not a verdict on the file
        raise FFmpegError(
            f"ffmpeg was killed by signal {stopped_by} ({signal_name(stopped_by)})",
            result.stderr,
            signal=stopped_by,
        )
    if "Format not on whitelist" in result.stderr:
        raise InvalidMedia("The file's format is not accepted")
    info = parse_probe(result.stderr, container)
    if info.kind == "video" and not info.duration:
        raise InvalidMedia("The video has no duration (it may be damaged or truncated)")
    return info
