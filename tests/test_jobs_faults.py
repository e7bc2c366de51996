"""Transcode jobs under faults, with real processes and real signals: an FFmpeg killed (as the
OOM killer does) is retried, a dead worker's scratch is swept, a job whose worker keeps dying
ends with a reason, and a queue with no worker says so."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import redis.asyncio as aioredis

from pubsub import keys
from reelwire.appkeys import SERVICES
from tests.conftest import Backends, WorkerRig
from tests.media import Media, upload, wait_for
from tests.test_worker import ffmpeg_pids_on, scratch_dirs
from transcode import scratch
from transcode.ffmpeg import FFmpegError, run_ffmpeg
from transcode.presence import WAITING_FOR_WORKER, watch_workers

pytestmark = pytest.mark.usefixtures("reset")


async def until(predicate: Any, timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"not within {timeout}s: {what}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def row(db: Any, video_id: str) -> Any:
    return await db.fetchrow(
        "SELECT status, progress, error, playable_at, hls_key FROM videos WHERE id = $1",
        UUID(video_id),
    )


async def ffmpeg_mid_job(db: Any, video_id: str) -> list[int]:
    """The job's FFmpeg, once it has reported progress."""
    current = await row(db, video_id)
    if current["status"] == "processing" and current["progress"] > 0:
        return ffmpeg_pids_on(video_id)
    return []


async def make_retries_due(backends: Backends) -> int:
    """Skip the backoff wait: every scheduled retry is due now."""
    client = aioredis.Redis.from_url(backends.redis_url)
    try:
        waiting = await client.zrange(keys.TRANSCODE_DELAYED, 0, -1)
        if waiting:
            await client.zadd(keys.TRANSCODE_DELAYED, dict.fromkeys(waiting, 0))
        return len(waiting)
    finally:
        await client.aclose()


async def test_ffmpeg_stopped_by_a_signal_says_so(media: Media) -> None:
    # Killed outright (the OOM killer): a negative exit status.
    job = asyncio.create_task(
        run_ffmpeg(["-re", "-i", str(media.long_1080), "-f", "null", "-"], timeout=60)
    )
    pids = await until(lambda: ffmpeg_pids_on(str(media.long_1080)), 10, "ffmpeg started")
    os.kill(pids[0], signal.SIGKILL)
    with pytest.raises(FFmpegError) as killed:
        await job
    assert killed.value.signal == 9 and killed.value.stopped and not killed.value.timed_out
    assert "killed by signal 9 (SIGKILL)" in str(killed.value)
    # Asked to stop (SIGTERM): FFmpeg catches it and exits 255 by itself.
    job = asyncio.create_task(
        run_ffmpeg(["-re", "-i", str(media.long_1080), "-f", "null", "-"], timeout=60)
    )
    pids = await until(lambda: ffmpeg_pids_on(str(media.long_1080)), 10, "ffmpeg started")
    await asyncio.sleep(0.5)  # past its start-up, so its own handler answers
    os.kill(pids[0], signal.SIGTERM)
    with pytest.raises(FFmpegError) as terminated:
        await job
    assert terminated.value.signal == 15 and terminated.value.stopped


@pytest.mark.timeout(90)
async def test_killed_ffmpeg_is_retried_and_the_video_ends_ready(
    rig: WorkerRig,
    media: Media,
    db: Any,
    backends: Backends,
) -> None:
    api, token, log = rig.api, rig.token, rig.log
    worker = rig.start()
    try:
        status, body = await upload(api, token, media.long_1080)
        assert status == 201
        video_id = body["id"]
        # Half-way: the video is already playable (its first segments are published).
        await until(lambda: _playable(db, video_id), 60, "the video to be playable")
        master = f"/media/videos/{video_id}/hls/master.m3u8"
        assert (await api.client.get(master)).status == 200
        pids = await until(lambda: ffmpeg_mid_job(db, video_id), 60, "the job's ffmpeg")
        os.kill(pids[0], signal.SIGKILL)  # only FFmpeg, as the OOM killer would

        retrying = await until(
            lambda: _pending_with_error(db, video_id), 15, "the retry to be recorded"
        )
        assert (
            retrying["error"] == "The transcoder was stopped (killed by signal 9); retrying in 5 s"
        )
        # What was published is withdrawn: no player is left with a stream that stops.
        assert retrying["playable_at"] is None and retrying["hls_key"] is None
        assert (await api.client.get(master)).status == 404
        resp = await api.client.get(f"/api/videos/{video_id}", headers=api.auth(token))
        shown = await resp.json()
        assert shown["status"] in ("pending", "processing"), shown
        if shown["status"] == "pending":
            assert shown["playable"] is False and shown["playback_url"] is None
            assert "killed by signal 9" in shown["error"]
        await make_retries_due(backends)  # the 5 s backoff is not what this test is about
        video = await wait_for(api, video_id, token, timeout=120)
        assert video["status"] == "ready", log.read_text()
        assert worker.poll() is None, "the worker itself survives"
        final = await row(db, video_id)
        assert final["error"] is None and final["progress"] == 100
        assert (await api.client.get(video["hls_playlist"])).status == 200
        assert not scratch_dirs(rig.home)
    finally:
        stop(worker)


async def _playable(db: Any, video_id: str) -> bool:
    return (await row(db, video_id))["playable_at"] is not None


async def _pending_with_error(db: Any, video_id: str) -> Any:
    current = await row(db, video_id)
    return current if current["status"] == "pending" and current["error"] else None


async def test_a_killed_workers_scratch_is_swept_and_its_job_finished(
    rig: WorkerRig,
    media: Media,
    db: Any,
) -> None:
    api, token, log = rig.api, rig.token, rig.log
    first = rig.start()
    second = None
    try:
        _, body = await upload(api, token, media.long_1080)
        video_id = body["id"]
        await until(lambda: ffmpeg_mid_job(db, video_id), 60, "the job mid-way")
        left = scratch_dirs(rig.home)
        assert len(left) == 1 and any((next(iter(left)) / "out").iterdir())
        first.send_signal(signal.SIGKILL)
        first.wait()
        await until(lambda: not ffmpeg_pids_on(video_id), 5, "ffmpeg to die with its worker")
        assert scratch_dirs(rig.home) == left, "nothing removes it while no worker runs"

        second = rig.start()
        # Swept at start, before the job is taken over (after the 2 s lease).
        await until(lambda: not (left & scratch_dirs(rig.home)), 20, "the old scratch gone")
        video = await wait_for(api, video_id, token, timeout=120)
        assert video["status"] == "ready", log.read_text()
        assert not scratch_dirs(rig.home)
        assert "removed the scratch directory of a dead job" in log.read_text()
    finally:
        stop(first)
        if second is not None:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0


HOLDER = """
import sys, time
from pathlib import Path
from transcode.scratch import scratch_dir
with scratch_dir(Path(sys.argv[1])) as work:
    print(work, flush=True)
    time.sleep(600)
"""


def test_sweep_leaves_scratch_held_by_a_live_job_of_another_process(tmp_path: Path) -> None:
    spool = tmp_path / "tmp"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(spool)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        held = Path(holder.stdout.readline().strip())
        (held / "segment.ts").write_bytes(b"x" * 1000)
        dead = spool / "reelwire-job-left-by-an-older-version"  # no lock file at all
        dead.mkdir()
        hidden = spool / ".reelwire-job-crashed-while-creating"
        hidden.mkdir()
        upload_spool = spool / "upload-in-flight"
        upload_spool.write_bytes(b"y")
        assert scratch.sweep(spool) == 1
        assert held.exists() and not dead.exists() and hidden.exists() and upload_spool.exists()
        old = time.time() - scratch.HIDDEN_GRACE_SECONDS - 1
        os.utime(hidden, (old, old))
        assert scratch.sweep(spool) == 1 and not hidden.exists() and held.exists()

        holder.send_signal(signal.SIGKILL)  # the job dies; its lock goes with it
        holder.wait()
        assert held.exists()
        assert scratch.sweep(spool) == 1
        assert not held.exists() and upload_spool.exists()
    finally:
        holder.kill()
        holder.wait()


async def test_a_job_that_keeps_losing_ffmpeg_fails_with_the_reason(
    rig: WorkerRig,
    media: Media,
    db: Any,
) -> None:
    api, token = rig.api, rig.token
    worker = rig.start()
    try:
        _, body = await upload(api, token, media.long_1080)
        video_id = body["id"]
        errors = []
        for _ in range(4):  # MAX_ATTEMPTS
            pids = await until(lambda: ffmpeg_pids_on(video_id), 60, "the job's ffmpeg")
            os.kill(pids[0], signal.SIGKILL)
            await until(lambda: not ffmpeg_pids_on(video_id), 5, "ffmpeg gone")
            current = await until(
                lambda: _finished_or_retrying(db, video_id), 15, "the failure recorded"
            )
            errors.append(current["error"])
            if current["status"] == "pending":
                await until(lambda: make_retries_due(rig.backends), 5, "the retry scheduled")
        video = await wait_for(api, video_id, token, timeout=30)
        assert errors[:3] == [
            f"The transcoder was stopped (killed by signal 9); retrying in {delay} s"
            for delay in (5, 20, 80)
        ]
        assert video["status"] == "failed"
        final = await row(db, video_id)
        assert final["error"] == (
            "Processing failed after 4 attempts. "
            "The last: The transcoder was stopped (killed by signal 9)"
        )
        assert worker.poll() is None
        assert not await make_retries_due(rig.backends), "no retry left scheduled"
        assert not scratch_dirs(rig.home)
    finally:
        stop(worker)


async def _finished_or_retrying(db: Any, video_id: str) -> Any:
    current = await row(db, video_id)
    if current["status"] == "failed" or (current["status"] == "pending" and current["error"]):
        # Clear the marker so the next round waits for its own failure.
        if current["status"] == "pending":
            await db.execute("UPDATE videos SET error = NULL WHERE id = $1", UUID(video_id))
        return current
    return None


async def test_a_job_whose_worker_keeps_dying_ends_failed_with_the_reason(
    rig: WorkerRig,
    media: Media,
    db: Any,
) -> None:
    api, token, log = rig.api, rig.token, rig.log
    _, body = await upload(api, token, media.long_1080)
    video_id = body["id"]
    started = 0
    for _ in range(8):
        worker = rig.start()
        started += 1
        try:
            # Each worker dies at a different moment of the job: right after taking it, or
            # with FFmpeg running.
            await until(
                lambda: _running_or_failed(db, video_id), 60, "the job taken over", every=0.02
            )
            if (await row(db, video_id))["status"] == "failed":
                break
            if started % 2:
                await until(lambda: ffmpeg_pids_on(video_id), 30, "ffmpeg started")
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            await db.execute(
                "UPDATE videos SET status = 'pending' WHERE id = $1 AND status = 'processing'",
                UUID(video_id),
            )
        finally:
            stop(worker)
    final = await row(db, video_id)
    assert final["status"] == "failed", log.read_text()
    assert final["error"] == (
        "Processing was interrupted too many times: the worker running it stopped 5 times "
        "without finishing"
    )
    assert started == 6  # five deliveries died, the sixth gave up
    # The worker that gave up swept, at its start, the scratch the killed ones left.
    assert not scratch_dirs(rig.home)
    assert "removed the scratch directory of a dead job" in log.read_text()


async def _running_or_failed(db: Any, video_id: str) -> bool:
    status = (await row(db, video_id))["status"]
    return status in ("processing", "failed")


async def test_queued_jobs_with_no_worker_are_visible(
    rig: WorkerRig, media: Media, caplog: pytest.LogCaptureFixture
) -> None:
    api, token = rig.api, rig.token
    services = api.client.app[SERVICES]
    caplog.set_level(logging.INFO, logger="transcode.presence")

    def said(level: int = logging.INFO) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "transcode.presence" and r.levelno >= level
        ]

    watch_stopping = asyncio.Event()
    watcher = asyncio.create_task(
        watch_workers(services.jobs, every=0.1, grace=0.5, stopping=watch_stopping)
    )
    worker = None
    try:
        await asyncio.sleep(1.0)  # nothing queued: nothing to say
        assert not said()
        _, body = await upload(api, token, media.video_480)
        status_url = f"/api/videos/{body['id']}/status"
        shown = await (await api.client.get(status_url, headers=api.auth(token))).json()
        assert shown["status"] == "pending" and shown["progress"] == 0
        assert shown["error"] == WAITING_FOR_WORKER
        await until(lambda: said(logging.WARNING), 5, "the warning")
        await asyncio.sleep(1.0)
        warnings = said(logging.WARNING)
        assert len(warnings) == 1, caplog.text  # one line, not one per check
        assert "no transcoding worker is running" in warnings[0]
        assert await services.jobs.live_workers() == 0

        worker = rig.start()
        video = await wait_for(api, body["id"], token, timeout=60)
        assert video["status"] == "ready"
        assert await services.jobs.live_workers() == 1
        await until(
            lambda: any("worker is running" in line for line in said()),
            5,
            "the all-clear",
        )
        worker.send_signal(signal.SIGTERM)  # a clean stop leaves at once
        assert worker.wait(30) == 0
        assert await services.jobs.live_workers() == 0

        worker = rig.start()
        await until(services.jobs.live_workers, 30, "the worker's heartbeat")
        worker.send_signal(signal.SIGKILL)  # a dead one lapses after its lease (2 s)
        worker.wait()
        killed_at = time.monotonic()
        await until(lambda: _no_workers(services), 5, "the dead worker to lapse")
        assert time.monotonic() - killed_at <= 3
    finally:
        watch_stopping.set()
        await asyncio.wait_for(watcher, 10)
        if worker is not None:
            stop(worker)
    assert len(said(logging.WARNING)) == 1


async def _no_workers(services: Any) -> bool:
    return await services.jobs.live_workers() == 0
