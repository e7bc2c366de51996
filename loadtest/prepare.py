"""What a run needs before the first viewer connects: users to act as, and videos to watch.

Made once by the parent process and handed to every load process. The test video is generated
with FFmpeg (FFMPEG_PATH, else the binary imageio-ffmpeg ships, else `ffmpeg` on PATH: the load
tester runs none of the server's code) and uploaded like any client would; player viewers need
one long enough to have segments to fetch, so it lasts `--clip-seconds` (60 by default).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp


class PrepareError(Exception):
    """Setting the run up failed; the message says why."""


async def register_actors(http: aiohttp.ClientSession, count: int) -> list[dict[str, str]]:
    """`count` new users (`{"id", "token"}`), registered a few at a time."""
    stem = f"lt{os.getpid() % 100_000}{secrets.token_hex(2)}x"
    gate = asyncio.Semaphore(4)

    async def one(n: int) -> dict[str, str]:
        async with gate:
            return await _register(http, f"{stem}{n}")

    return list(await asyncio.gather(*(one(n) for n in range(max(1, count)))))


async def _register(http: aiohttp.ClientSession, name: str) -> dict[str, str]:
    body = {"username": name[:30], "email": f"{name}@load.test", "password": "Passw0rd!"}
    async with http.post("/api/auth/register", json=body) as resp:
        data = await resp.json(content_type=None)
        if resp.status != 201:
            raise PrepareError(f"cannot register a user ({resp.status}): {data}")
    return {"id": data["user"]["id"], "token": data["tokens"]["access_token"]}


def ffmpeg_binary() -> str:
    """FFMPEG_PATH, the binary imageio-ffmpeg ships, or `ffmpeg` on PATH."""
    configured = os.environ.get("FFMPEG_PATH")
    if configured:
        return configured
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("ffmpeg")
    if found is None:
        raise PrepareError(
            "no FFmpeg to make a test video with (pip install imageio-ffmpeg, put ffmpeg on "
            "PATH or set FFMPEG_PATH), or watch existing videos with --video ID"
        )
    return found


async def generate_clip(path: Path, seconds: float, height: int) -> None:
    """A test pattern with a tone, `seconds` long, `height` lines high (16:9), H.264 + AAC."""
    width = max(2, round(height * 16 / 9 / 2) * 2)
    process = await asyncio.create_subprocess_exec(
        ffmpeg_binary(),
        "-v", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "60",
        "-c:a", "aac", "-b:a", "64k", "-shortest",
        str(path),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, errors = await process.communicate()
    if process.returncode != 0:
        raise PrepareError(
            f"FFmpeg could not make a test video: {errors.decode(errors='replace')[-300:]}"
        )


async def upload_videos(
    http: aiohttp.ClientSession,
    owner: dict[str, str],
    count: int,
    *,
    seconds: float,
    height: int,
) -> list[str]:
    """Upload a generated clip `count` times and wait until each is ready to play."""
    headers = {"Authorization": f"Bearer {owner['token']}"}
    with tempfile.TemporaryDirectory(prefix="reelwire-loadtest-") as scratch:
        clip = Path(scratch) / "clip.mp4"
        say(f"making a {seconds:g} s {height}p test video with FFmpeg")
        await generate_clip(clip, seconds, height)
        content = await asyncio.to_thread(clip.read_bytes)
    ids = []
    for n in range(count):
        form = aiohttp.FormData()
        form.add_field("title", f"loadtest {n}")
        form.add_field("video_file", content, filename="clip.mp4", content_type="video/mp4")
        async with http.post("/api/videos", data=form, headers=headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 201:
                raise PrepareError(f"upload refused ({resp.status}): {data}")
        ids.append(data["id"])
    say(f"waiting for {count} video(s) to transcode")
    deadline = time.monotonic() + 120 + seconds * 10 * count
    for video in ids:
        while True:
            async with http.get(f"/api/videos/{video}/status", headers=headers) as resp:
                status = (await resp.json(content_type=None)).get("status")
            if status == "ready":
                break
            if status == "failed":
                raise PrepareError(f"video {video} failed to transcode")
            if time.monotonic() > deadline:
                raise PrepareError(f"video {video} was not ready in time (status {status})")
            await asyncio.sleep(0.5)
    return ids


def say(line: str) -> None:
    """A line of progress on stderr."""
    print(f"loadtest: {line}", file=sys.stderr, flush=True)
