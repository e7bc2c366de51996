"""Small real media, generated once per session with FFmpeg's testsrc2 and sine sources."""

from __future__ import annotations

import asyncio
import io
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from transcode.ffmpeg import ffmpeg_path


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_video(
    path: Path,
    *,
    size: str,
    seconds: float,
    fps: int = 30,
    audio: bool = True,
    rotate: int | None = None,
) -> Path:
    """An H.264 MP4 of the test pattern (with a tone when `audio`)."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(fps)]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    plain = path.with_suffix(".plain.mp4") if rotate is not None else path
    ffmpeg(*args, str(plain))
    if rotate is not None:
        ffmpeg("-display_rotation", str(rotate), "-i", str(plain), "-c", "copy", str(path))
    return path


@dataclass(frozen=True)
class Media:
    """Paths of the generated files."""

    video_1080: Path
    video_480: Path
    portrait_silent: Path
    long_1080: Path
    image: Path
    audio_only: Path
    text_as_mp4: Path
    truncated: Path
    playlist_as_mp4: Path
    concat_as_mp4: Path


# The "long" 1080p source: long enough that a job is still running when it is playable (a 2 s
# first segment of every rung) and while a test kills its worker or FFmpeg.
LONG_SECONDS = 8


def generate(root: Path) -> Media:
    """Make every file the media tests need."""
    root.mkdir(parents=True, exist_ok=True)
    video_1080 = make_video(root / "v1080.mp4", size="1920x1080", seconds=6)
    truncated = root / "truncated.mp4"
    data = video_1080.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    image = root / "photo.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1600x1200:duration=1", "-frames:v", "1", str(image))
    audio_only = root / "tone.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio_only))
    text = root / "notes.mp4"
    text.write_text("these are not the frames you are looking for\n" * 20)
    playlist = root / "playlist.mp4"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nfile:///etc/passwd\n")
    concat = root / "concat.mp4"
    concat.write_text("ffconcat version 1.0\nfile /etc/passwd\n")
    return Media(
        video_1080=video_1080,
        video_480=make_video(root / "v480.mp4", size="854x480", seconds=2),
        portrait_silent=make_video(
            root / "portrait.mp4", size="640x360", seconds=2, audio=False, rotate=90
        ),
        long_1080=make_video(root / "long1080.mp4", size="1920x1080", seconds=LONG_SECONDS),
        image=image,
        audio_only=audio_only,
        text_as_mp4=text,
        truncated=truncated,
        playlist_as_mp4=playlist,
        concat_as_mp4=concat,
    )


# --- HTTP helpers shared by the media tests ---------------------------------------------


def form(field: str, path: Path, **text: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in text.items():
        data.add_field(name, value)
    data.add_field(
        field, io.BytesIO(path.read_bytes()), filename=path.name, content_type="video/mp4"
    )
    return data


async def upload(api: Any, token: str, path: Path, **text: str) -> tuple[int, dict[str, Any]]:
    resp = await api.client.post(
        "/api/videos", data=form("video_file", path, **text), headers=api.auth(token)
    )
    return resp.status, await resp.json()


async def wait_for(api: Any, video_id: str, token: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = await api.client.get(f"/api/videos/{video_id}", headers=api.auth(token))
        body = await resp.json()
        if body["status"] in ("ready", "failed"):
            return body
        await asyncio.sleep(0.25)
    raise AssertionError(f"video {video_id} not finished in {timeout}s: {body}")


async def until_playable(api: Any, video_id: str, token: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = await api.client.get(f"/api/videos/{video_id}", headers=api.auth(token))
        video = await resp.json()
        if video["playable"] or video["status"] in ("ready", "failed"):
            return video
        await asyncio.sleep(0.05)
    raise AssertionError(f"video {video_id} not playable within {timeout}s")


async def fetch(api: Any, url: str) -> aiohttp.ClientResponse:
    resp = await api.client.get(url)
    assert resp.status == 200, (url, resp.status)
    return resp
