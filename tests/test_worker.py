"""Workers as real processes: a worker killed mid-job has its job finished by another."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from reelwire.app import create_app
from reelwire.appkeys import SERVICES
from reelwire.domain import clips
from reelwire.settings import Settings
from tests.conftest import Api, WorkerRig
from tests.media import Media, form, upload, wait_for

pytestmark = pytest.mark.usefixtures("reset")


def ffmpeg_pids_on(video_id: str) -> list[int]:
    """FFmpeg processes whose command line names `video_id` (its source path does)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        program = cmdline.split(b"\0", 1)[0]
        if b"ffmpeg" in program and video_id.encode() in cmdline:
            found.append(int(pid))
    return found


def ffmpeg_running_on(video_id: str) -> bool:
    return bool(ffmpeg_pids_on(video_id))


def scratch_dirs(home: Path) -> set[Path]:
    """The jobs' scratch directories under a worker's REELWIRE_HOME."""
    return set((home / "tmp").glob("reelwire-job-*"))


async def test_killed_worker_job_is_finished_by_another(
    rig: WorkerRig,
    media: Media,
    db: Any,
) -> None:
    api, token, log = rig.api, rig.token, rig.log
    first = rig.start()
    try:
        status, body = await upload(api, token, media.long_1080)
        assert status == 201
        video_id = body["id"]
        deadline = time.monotonic() + 60
        progress = 0.0
        while time.monotonic() < deadline and progress <= 0:
            row = await db.fetchrow(
                "SELECT status, progress FROM videos WHERE id = $1", UUID(video_id)
            )
            progress = row["progress"] if row["status"] == "processing" else 0.0
            await asyncio.sleep(0.1)
        assert 0 < progress < 100, f"never seen mid-job: {row}\n{log.read_text()}"
        first.send_signal(signal.SIGKILL)
        first.wait()
        # Its FFmpeg goes with it rather than running on as an orphan.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and ffmpeg_running_on(video_id):
            await asyncio.sleep(0.1)
        assert not ffmpeg_running_on(video_id)
        assert (
            await db.fetchval("SELECT status FROM videos WHERE id = $1", UUID(video_id))
        ) == "processing"

        second = rig.start()
        try:
            video = await wait_for(api, video_id, token, timeout=90)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
        assert video["status"] == "ready", log.read_text()
        assert [q["quality"] for q in video["qualities"]] == ["360p", "480p", "720p", "1080p"]
        master = await api.client.get(video["hls_playlist"])
        assert master.status == 200
    finally:
        if first.poll() is None:
            first.kill()


async def test_sweep_removes_expired_clips_rows_and_media(
    aiohttp_client: Any, media_settings: Settings, media: Media, db: Any
) -> None:
    api = Api(await aiohttp_client(create_app(media_settings.replace(clip_sweep_seconds=1))))
    user = await api.register("ephemeral")
    resp = await api.client.post(
        "/api/clips/upload", data=form("clip", media.image), headers=api.auth(user["token"])
    )
    clip = (await resp.json())["clip"]
    stored = Path(media_settings.home) / "media" / "clips" / clip["id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (stored / "media" / "image.webp").exists():
        await asyncio.sleep(0.1)
    assert (stored / "media" / "image.webp").exists()
    await db.execute("UPDATE clips SET expires_at = now() - interval '1 second'")
    # The inline worker's janitor sweeps every CLIP_SWEEP_SECONDS (1 s here).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and await db.fetchval("SELECT count(*) FROM clips"):
        await asyncio.sleep(0.2)
    assert await db.fetchval("SELECT count(*) FROM clips") == 0
    assert not stored.exists()
    assert await clips.sweep_expired(api.client.app[SERVICES]) == 0


async def test_originals_can_be_dropped_after_processing(
    aiohttp_client: Any, media_settings: Settings, media: Media
) -> None:
    api = Api(await aiohttp_client(create_app(media_settings.replace(keep_originals=False))))
    user = await api.register("minimalist")
    _, body = await upload(api, user["token"], media.video_480)
    video = await wait_for(api, body["id"], user["token"])
    assert video["status"] == "ready" and video["stream_url"] is None
    original = Path(media_settings.home) / "media" / "videos" / body["id"] / "original"
    assert not original.exists()
    assert (await api.client.get(f"/api/videos/{body['id']}/stream")).status == 404
    assert (await api.client.get(video["hls_playlist"])).status == 200


async def test_ffmpeg_timeout_kills_the_whole_process_group(media: Media, tmp_path: Path) -> None:
    from transcode.ffmpeg import FFmpegError, run_ffmpeg

    started = time.monotonic()
    with pytest.raises(FFmpegError) as failure:
        await run_ffmpeg(
            ["-re", "-i", str(media.long_1080), "-c:v", "libx264", "-f", "null", "-"],
            timeout=1.0,
        )
    assert failure.value.timed_out
    assert time.monotonic() - started < 5
    assert not ffmpeg_running_on(str(media.long_1080))


async def test_rerunning_a_job_produces_the_same_outputs(
    aiohttp_client: Any, media_settings: Settings, media: Media
) -> None:
    from reelwire.domain.processing import transcode_video

    api = Api(await aiohttp_client(create_app(media_settings)))
    user = await api.register("rerun")
    _, body = await upload(api, user["token"], media.video_480)
    await wait_for(api, body["id"], user["token"])
    outputs = Path(media_settings.home) / "media" / "videos" / body["id"] / "hls"

    def snapshot() -> dict[str, bytes]:
        return {
            str(p.relative_to(outputs)): p.read_bytes()
            for p in sorted(outputs.rglob("*"))
            if p.is_file() and p.suffix in (".m3u8", ".vtt")
        }

    first = snapshot()
    files_first = sorted(str(p.relative_to(outputs)) for p in outputs.rglob("*") if p.is_file())
    services = api.client.app[SERVICES]
    async with services.db.acquire() as conn:
        await conn.execute("UPDATE videos SET status = 'pending' WHERE id = $1", UUID(body["id"]))
    await transcode_video(services, body["id"])
    files_second = sorted(str(p.relative_to(outputs)) for p in outputs.rglob("*") if p.is_file())
    assert files_second == files_first
    assert snapshot() == first


async def test_outputs_carry_no_source_metadata(
    aiohttp_client: Any, media_settings: Settings, tmp_path: Path
) -> None:
    from tests.media import ffmpeg
    from transcode.ffmpeg import ffmpeg_path

    tagged = tmp_path / "tagged.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-metadata",
        "title=SECRET-TITLE",
        "-metadata",
        "location=+48.8584+002.2945/",
        str(tagged),
    )
    api = Api(await aiohttp_client(create_app(media_settings)))
    user = await api.register("privacy")
    _, body = await upload(api, user["token"], tagged)
    video = await wait_for(api, body["id"], user["token"])
    segment = next(
        (Path(media_settings.home) / "media" / "videos" / body["id"] / "hls" / "360p").glob("*.ts")
    )
    probe = await asyncio.to_thread(
        subprocess.run,
        [ffmpeg_path(), "-hide_banner", "-i", str(segment)],
        capture_output=True,
        text=True,
    )
    assert video["status"] == "ready"
    assert "SECRET-TITLE" not in probe.stderr and "48.8584" not in probe.stderr
