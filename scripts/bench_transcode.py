"""Transcode benchmark: how soon an upload plays and how long its whole ladder takes, against
baselines measured in the same run, and the server's memory while it receives a 1 GB upload.

For each source (a 20 s 1920x1080 landscape and a 60 s 1080x1920 portrait clip, both a moving
test pattern with camera-like grain, 30 fps, AAC):

  first playable   a real `reelwire serve` (embedded default, inline worker): from the upload's
                   201 response until the master playlist, every variant playlist and each
                   variant's first segment are fetchable (then each segment is decoded by
                   FFmpeg to prove it plays)
  ready            the same upload until `status: ready` (the server's own timestamp)
  bare             our exact FFmpeg command (ladder + storyboard tiling) run bare, no server
  one thread       the same command with one thread per encoder, as the ladder ran before
                   sliced threads (then nothing played before the whole ladder was done, so
                   its time to first playable is its ladder time)
  (a)              optionally (--clipsy), the Clipsy API's way: one FFmpeg per rung in turn

Targets: first playable <= 6 s for the 60 s portrait clip; bare <= 0.6x one thread.
The machine's load average is printed beside every figure.
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


def make_source(path: Path, size: str, seconds: int) -> None:
    """A moving test pattern with temporal grain (so it encodes like camera footage rather than
    a flat synthetic picture) and a tone; made once and kept."""
    if path.exists():
        return
    partial = path.with_suffix(".partial.mp4")
    # fmt: off
    run([
        "-f", "lavfi",
        "-i", f"testsrc2=size={size}:rate=30:duration={seconds},noise=alls=10:allf=t",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "160k", "-shortest", "-movflags", "+faststart", str(partial),
    ])
    # fmt: on
    partial.rename(path)


def load() -> str:
    """The machine's load average (1, 5, 15 min), to print beside a figure."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


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


def bare(source: Path, out: Path, *, one_thread: bool = False) -> float:
    """Our ladder command and the storyboard tiling, exactly as a worker runs them (or with one
    thread per encoder, as before sliced threads)."""
    shutil.rmtree(out, ignore_errors=True)
    info = asyncio.run(probe(source))
    rungs, storyboard = plan_ladder(info), plan_storyboard(info)
    frames = out / "frames"
    for name in [r.name for r in rungs] + ["audio", "frames"]:
        (out / name).mkdir(parents=True)
    command = ladder_command(info, rungs, storyboard, source, out, frames)
    if one_thread:
        at = command.index("-x264-params")
        del command[at : at + 2]
        command[command.index("-threads") + 1] = "1"
    quiet = [ffmpeg_path(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    started = time.perf_counter()
    subprocess.run([*quiet, *command], check=True)
    subprocess.run([*quiet, *storyboard_command(storyboard, frames, out / "sb.jpg")], check=True)
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


async def decodes(path: Path) -> bool:
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_path(),
        "-hide_banner",
        "-v",
        "error",
        "-i",
        str(path),
        "-f",
        "null",
        "-",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    return proc.returncode == 0 and not err.strip()


async def first_playable(
    http: aiohttp.ClientSession, url: str, video_id: str, scratch: Path
) -> tuple[float, int]:
    """Seconds from now until the master, each variant playlist and each variant's first
    segment can be fetched; and how many of those first segments FFmpeg decodes cleanly."""
    started = time.perf_counter()
    while True:
        async with http.get(f"{url}/api/videos/{video_id}") as resp:
            video = await resp.json()
        if video["playable"] or video["status"] == "failed":
            break
        await asyncio.sleep(0.1)
    assert video["playable"], video
    base = video["playback_url"].rsplit("/", 1)[0]
    async with http.get(url + video["playback_url"]) as resp:
        assert resp.status == 200
        master = await resp.text()
    variants = [line for line in master.splitlines() if line and not line.startswith("#")]
    segments = []
    for variant in variants:
        async with http.get(f"{url}{base}/{variant}") as resp:
            playlist = await resp.text()
        first = next(line for line in playlist.splitlines() if line.endswith(".ts"))
        async with http.get(f"{url}{base}/{variant.rsplit('/', 1)[0]}/{first}") as resp:
            assert resp.status == 200
            segments.append(await resp.read())
    elapsed = time.perf_counter() - started
    good = 0
    for i, data in enumerate(segments):
        path = scratch / f"first-{i}.ts"
        path.write_bytes(data)
        good += await decodes(path)
    return elapsed, good


async def ours_end_to_end(
    server: Server, source: Path, auth: str, scratch: Path
) -> tuple[float, float, int, dict]:
    """(upload response -> first playable, upload response -> ready, first segments that
    decode, the video)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {auth}"}) as http:
        form = aiohttp.FormData()
        form.add_field("title", "bench")
        form.add_field(
            "video_file", source.open("rb"), filename=source.name, content_type="video/mp4"
        )
        async with http.post(f"{server.url}/api/videos", data=form) as resp:
            created = await resp.json()
            assert resp.status == 201, created
        answered = time.time()
        playable, decoded = await first_playable(http, server.url, created["id"], scratch)
        while True:
            async with http.get(f"{server.url}/api/videos/{created['id']}") as resp:
                video = await resp.json()
            if video["status"] in ("ready", "failed"):
                break
            # Poll gently (a tight loop would take CPU from the transcode it is timing) and
            # read the moment of `ready` from the server's own timestamp instead.
            await asyncio.sleep(0.5)
        ready = datetime.fromisoformat(video["updated_at"]).timestamp() - answered
    assert video["status"] == "ready", video
    return playable, ready, decoded, video


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


SOURCES = (("landscape", "1920x1080", 20), ("portrait", "1080x1920", 60))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upload-mib", type=int, default=1024, help="upload size (default 1024)")
    parser.add_argument("--clipsy", action="store_true", help="also time the Clipsy API's way")
    parser.add_argument("--only", choices=[name for name, _, _ in SOURCES], help="one source")
    args = parser.parse_args()

    work = ROOT / ".reelwire-bench"
    work.mkdir(exist_ok=True)
    print(f"cores: {os.cpu_count()}, {load()}")
    results = {}
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        scratch_path = Path(scratch)
        for name, size, seconds in SOURCES:
            if args.only and name != args.only:
                continue
            source = work / f"source-{name}-{size}-{seconds}s-grain.mp4"
            make_source(source, size, seconds)
            print(f"\n{name}: {source.name} ({source.stat().st_size / 1e6:.1f} MB)")
            server = Server(scratch_path / f"home-{name}")
            try:
                await server.ready()
                async with aiohttp.ClientSession() as http:
                    auth = await token(http, server.url)
                print(f"  serve: upload -> first playable -> ready ... ({load()})", flush=True)
                playable, ready, decoded, video = await ours_end_to_end(
                    server, source, auth, scratch_path
                )
                during = load()
            finally:
                server.stop()
            rungs = [q["quality"] for q in video["qualities"]]
            print(
                f"  first playable {playable:6.2f} s  "
                f"({decoded}/{len(rungs)} first segments decode)"
            )
            print(f"  ready          {ready:6.2f} s  ({during})")
            ours_bare = await asyncio.to_thread(bare, source, scratch_path / "bare")
            print(f"  bare command   {ours_bare:6.2f} s  ({load()})", flush=True)
            before = await asyncio.to_thread(bare, source, scratch_path / "one", one_thread=True)
            print(f"  one thread     {before:6.2f} s  ({load()})", flush=True)
            figures = {
                "rungs": rungs,
                "first_playable_s": round(playable, 2),
                "first_segments_decoded": decoded,
                "ready_s": round(ready, 2),
                "bare_s": round(ours_bare, 2),
                "one_thread_bare_s": round(before, 2),
                "bare_vs_one_thread": round(ours_bare / before, 3),
                "ready_vs_one_thread": round(ready / before, 3),
                "load_after": load(),
            }
            print(
                f"  sliced/one thread {ours_bare / before:.3f} (target <= 0.6); first playable "
                f"{playable:.2f} s vs {before:.2f} s before (nothing played until the end)"
            )
            if args.clipsy:
                clipsy = clipsy_way(source, scratch_path / "clipsy", ours_settings=True)
                figures["a_clipsy_same_settings_s"] = round(clipsy, 2)
                print(f"  (a) Clipsy way {clipsy:6.2f} s  ({load()})")
            results[name] = figures

        server = Server(scratch_path / "home-upload")
        try:
            await server.ready()
            async with aiohttp.ClientSession() as http:
                auth = await token(http, server.url)
            base, peak, upload_seconds = await upload_memory(server, auth, args.upload_mib << 20)
        finally:
            server.stop()
    results["upload"] = {
        "upload_mib": args.upload_mib,
        "upload_seconds": round(upload_seconds, 2),
        "server_rss_baseline_mib": round(base / 1024, 1),
        "server_rss_peak_mib": round(peak / 1024, 1),
        "server_rss_growth_mib": round((peak - base) / 1024, 1),
    }
    print(
        f"\n{args.upload_mib} MiB upload in {upload_seconds:.1f} s: server RSS "
        f"{base / 1024:.1f} -> peak {peak / 1024:.1f} MiB "
        f"(+{(peak - base) / 1024:.1f} MiB)  ({load()})"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
