"""Transcode benchmark: wall time to `ready` for Reelwire's ladder against two baselines measured
in the same run, and the server's memory while it receives a 1 GB upload.

  ours   a real `reelwire serve` (embedded default, inline worker): POST /api/videos of the
         source, then poll until status is ready (upload + probe + queue + transcode + store)
  (a)    the Clipsy API's way: one FFmpeg process per rung, run one after another, plus a thumbnail
         run. Measured twice: with our encoder settings (same preset, bitrates, segments, so the
         ratio shows what the single pass itself saves) and with the Clipsy API's implied defaults
         (libx264's default preset, 10 s segments)
  (b)    our exact FFmpeg command (ladder + storyboard tiling) run bare, no server

Targets: ours <= 0.65x of (a), ours <= 1.05x of (b).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transcode.ffmpeg import ffmpeg_path  # noqa: E402
from transcode.ladder import (  # noqa: E402
    LADDER,
    ladder_command,
    plan_ladder,
    plan_storyboard,
    storyboard_command,
)
from transcode.probe import probe  # noqa: E402


def run(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True
    )
    return time.perf_counter() - started


def make_source(path: Path, seconds: int) -> None:
    if path.exists():
        return
    run(
        [
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1920x1080:rate=30:duration={seconds}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "fast",
            "-crf",
            "20",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "160k",
            "-shortest",
            str(path),
        ]
    )


def clipsy_way(source: Path, out: Path, *, ours_settings: bool) -> float:
    """One FFmpeg per rung, sequentially, then the thumbnail at 1 s."""
    shutil.rmtree(out, ignore_errors=True)
    total = 0.0
    for rung in LADDER:
        folder = out / rung.name
        folder.mkdir(parents=True)
        args = [
            "-i",
            str(source),
            "-vf",
            f"scale=-2:{rung.short_side}",
            "-c:v",
            "libx264",
            "-b:v",
            f"{rung.video_kbps}k",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
        ]
        if ours_settings:
            args += [
                "-preset",
                "veryfast",
                "-maxrate",
                f"{round(rung.video_kbps * 1.07)}k",
                "-bufsize",
                f"{round(rung.video_kbps * 1.5)}k",
                "-sc_threshold",
                "0",
                "-force_key_frames",
                "expr:gte(t,n_forced*2)",
                "-hls_time",
                "4",
            ]
        else:
            args += ["-hls_time", "10"]
        args += ["-hls_playlist_type", "vod", "-f", "hls", str(folder / "playlist.m3u8")]
        total += run(args)
    total += run(["-ss", "1", "-i", str(source), "-frames:v", "1", str(out / "thumbnail.jpg")])
    return total


def ours_bare(source: Path, out: Path) -> float:
    """Our ladder command and the storyboard tiling, exactly as a worker runs them."""
    shutil.rmtree(out, ignore_errors=True)
    info = asyncio.run(probe(source))
    rungs, storyboard = plan_ladder(info), plan_storyboard(info)
    frames = out / "frames"
    for name in [r.name for r in rungs] + ["audio", "frames"]:
        (out / name).mkdir(parents=True)
    started = time.perf_counter()
    subprocess.run(
        [
            ffmpeg_path(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            *ladder_command(info, rungs, storyboard, source, out, frames),
        ],
        check=True,
    )
    subprocess.run(
        [
            ffmpeg_path(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            *storyboard_command(storyboard, frames, out / "storyboard.jpg"),
        ],
        check=True,
    )
    return time.perf_counter() - started


class Server:
    """`reelwire serve` on the embedded default in a scratch data dir."""

    def __init__(self, home: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {
            **os.environ,
            "REELWIRE_HOME": str(home),
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
        }
        for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY", "S3_BUCKET"):
            env.pop(name, None)
        self.proc = subprocess.Popen([sys.executable, "-m", "reelwire", "serve"], env=env, cwd=ROOT)
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


async def token(http: aiohttp.ClientSession, url: str) -> str:
    body = {"username": "bench", "email": "bench@example.com", "password": "Benchmark1"}
    async with http.post(f"{url}/api/auth/register", json=body) as resp:
        data = await resp.json()
    return str(data["tokens"]["access_token"])


async def ours_end_to_end(server: Server, source: Path, auth: str) -> tuple[float, dict]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {auth}"}) as http:
        started = time.time()
        form = aiohttp.FormData()
        form.add_field("title", "bench")
        form.add_field(
            "video_file", source.open("rb"), filename=source.name, content_type="video/mp4"
        )
        async with http.post(f"{server.url}/api/videos", data=form) as resp:
            created = await resp.json()
            assert resp.status == 201, created
        while True:
            async with http.get(f"{server.url}/api/videos/{created['id']}") as resp:
                video = await resp.json()
            if video["status"] in ("ready", "failed"):
                break
            # Poll gently (a tight loop would take CPU from the transcode it is timing) and
            # read the moment of `ready` from the server's own timestamp instead.
            await asyncio.sleep(0.5)
        elapsed = datetime.fromisoformat(video["updated_at"]).timestamp() - started
    assert video["status"] == "ready", video
    return elapsed, video


async def upload_memory(server: Server, auth: str, size: int) -> tuple[int, int, float]:
    """(baseline RSS KiB, peak RSS KiB, seconds) while the server receives `size` bytes."""
    chunk = b"\0" * (1 << 20)

    async def body():  # type: ignore[no-untyped-def]
        yield b"\x00\x00\x00\x18ftypisom"  # looks like MP4 for the first bytes only
        sent = 12
        while sent < size:
            piece = chunk[: min(len(chunk), size - sent)]
            sent += len(piece)
            yield piece

    baseline = server.rss_kib()
    peak = baseline
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.rss_kib())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(body(), {"Content-Type": "video/mp4"})
    part.set_content_disposition("form-data", name="video_file", filename="big.mp4")
    started = time.perf_counter()
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {auth}"}) as http,
        http.post(f"{server.url}/api/videos", data=writer) as resp,
    ):
        await resp.read()
        status = resp.status
    elapsed = time.perf_counter() - started
    done.set()
    await sampler
    assert status == 400, f"expected the fake 1 GB file to be rejected after spooling, got {status}"
    return baseline, peak, elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="source length (default 20)")
    parser.add_argument("--upload-mib", type=int, default=1024, help="upload size (default 1024)")
    parser.add_argument(
        "--skip-defaults",
        action="store_true",
        help="skip the Clipsy API with libx264 defaults (the slowest baseline)",
    )
    args = parser.parse_args()

    work = ROOT / ".reelwire-bench"
    work.mkdir(exist_ok=True)
    source = work / f"source-1080p30-{args.seconds}s.mp4"
    make_source(source, args.seconds)
    print(f"source: {source.name} ({source.stat().st_size / 1e6:.1f} MB), cores: {os.cpu_count()}")

    with tempfile.TemporaryDirectory(dir=work) as scratch:
        scratch_path = Path(scratch)
        server = Server(scratch_path / "home")
        try:
            await server.ready()
            async with aiohttp.ClientSession() as http:
                auth = await token(http, server.url)
            ours, video = await ours_end_to_end(server, source, auth)
            base, peak, upload_seconds = await upload_memory(server, auth, args.upload_mib << 20)
        finally:
            server.stop()
        bare = await asyncio.to_thread(ours_bare, source, scratch_path / "bare")
        clipsy_same = clipsy_way(source, scratch_path / "clipsy-same", ours_settings=True)
        clipsy_defaults = (
            None
            if args.skip_defaults
            else clipsy_way(source, scratch_path / "clipsy-defaults", ours_settings=False)
        )

    figures = {
        "rungs": [q["quality"] for q in video["qualities"]],
        "ours_to_ready_s": round(ours, 2),
        "b_bare_command_s": round(bare, 2),
        "a_clipsy_same_settings_s": round(clipsy_same, 2),
        "a_clipsy_defaults_s": None if clipsy_defaults is None else round(clipsy_defaults, 2),
        "ours_vs_b": round(ours / bare, 3),
        "ours_vs_a_same_settings": round(ours / clipsy_same, 3),
        "ours_vs_a_defaults": None if clipsy_defaults is None else round(ours / clipsy_defaults, 3),
        "upload_mib": args.upload_mib,
        "upload_seconds": round(upload_seconds, 2),
        "server_rss_baseline_mib": round(base / 1024, 1),
        "server_rss_peak_mib": round(peak / 1024, 1),
        "server_rss_growth_mib": round((peak - base) / 1024, 1),
    }
    print(f"ours (upload -> ready)           {ours:7.2f} s")
    print(
        f"(b) our command bare             {bare:7.2f} s   ours/b = {ours / bare:.3f} "
        "(target <= 1.05)"
    )
    print(
        f"(a) the Clipsy API way, our settings   {clipsy_same:7.2f} s   "
        f"ours/a = {ours / clipsy_same:.3f} "
        "(target <= 0.65)"
    )
    if clipsy_defaults is not None:
        print(
            f"(a) the Clipsy API way, x264 defaults  {clipsy_defaults:7.2f} s   ours/a = "
            f"{ours / clipsy_defaults:.3f} (target <= 0.65)"
        )
    print(
        f"{args.upload_mib} MiB upload in {upload_seconds:.1f} s: server RSS "
        f"{base / 1024:.1f} -> peak {peak / 1024:.1f} MiB "
        f"(+{(peak - base) / 1024:.1f} MiB)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
