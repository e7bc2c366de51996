"""Running FFmpeg: an argument list (never a shell), its own process group, niced, with a
wall-clock timeout that kills the whole group, and progress parsed from `-progress pipe:1`."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache

logger = logging.getLogger(__name__)

# Input restrictions for every FFmpeg run on user media: local files only (no http, no
# concat/playlist protocols), and only the demuxers of the formats we accept.
INPUT_GUARDS = (
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    "mov,mp4,matroska,webm,avi,flv,asf,gif,jpeg_pipe,png_pipe,webp_pipe,bmp_pipe,svg_pipe",
)

_PR_SET_PDEATHSIG = 1

ProgressCallback = Callable[[float], Awaitable[None]]


class FFmpegError(RuntimeError):
    """FFmpeg failed; `detail` is the tail of its log, `timed_out` says whether we killed it."""

    def __init__(self, message: str, detail: str = "", *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.detail = detail
        self.timed_out = timed_out


@cache
def ffmpeg_path() -> str:
    """FFMPEG_PATH, else `ffmpeg` on PATH, else the binary imageio-ffmpeg ships."""
    configured = os.environ.get("FFMPEG_PATH")
    if configured:
        return configured
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True)
class Completed:
    """A finished FFmpeg run."""

    returncode: int
    stderr: str


def _child_setup(nice: bool) -> Callable[[], None]:
    parent = os.getpid()

    def setup() -> None:
        if nice:  # transcodes must not starve the web process of CPU on the same machine
            os.nice(10)
        # FFmpeg runs in its own process group (so a timeout kills all of it); this makes it
        # die with its worker too, instead of running on as an orphan nobody will read.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return setup


async def run_ffmpeg(
    args: Sequence[str],
    *,
    timeout: float,
    duration: float | None = None,
    on_progress: ProgressCallback | None = None,
    check: bool = True,
    nice: bool = True,
) -> Completed:
    """Run `ffmpeg args...`; report progress (0-100) when `duration` is known."""
    command = [ffmpeg_path(), "-hide_banner", "-nostdin", *args]
    if on_progress is not None:
        command[3:3] = ["-progress", "pipe:1", "-nostats"]
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE if on_progress else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_child_setup(nice),
    )
    stderr_task = asyncio.create_task(_read_tail(proc.stderr))
    progress_task = (
        asyncio.create_task(_follow_progress(proc.stdout, duration, on_progress))
        if on_progress is not None
        else None
    )
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            await proc.wait()
    except TimeoutError:
        timed_out = True
    finally:
        if proc.returncode is None:
            _kill_group(proc.pid)
            await proc.wait()
        if progress_task is not None:
            progress_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress_task
    stderr = await stderr_task
    if timed_out:
        raise FFmpegError(f"ffmpeg did not finish within {timeout:.0f}s", stderr, timed_out=True)
    if check and proc.returncode != 0:
        raise FFmpegError(f"ffmpeg exited with code {proc.returncode}", stderr)
    return Completed(proc.returncode or 0, stderr)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _read_tail(stream: asyncio.StreamReader | None, keep: int = 64 * 1024) -> str:
    """All of stderr, keeping only the last `keep` bytes (FFmpeg can be chatty)."""
    if stream is None:
        return ""
    tail = bytearray()
    while chunk := await stream.read(65536):
        tail += chunk
        if len(tail) > keep:
            del tail[: len(tail) - keep]
    return tail.decode(errors="replace")


async def _follow_progress(
    stream: asyncio.StreamReader | None, duration: float | None, on_progress: ProgressCallback
) -> None:
    if stream is None:
        return
    async for raw in stream:
        key, _, value = raw.decode(errors="replace").strip().partition("=")
        if key == "out_time_us" and duration and value.isdigit():
            percent = min(99.0, int(value) / 1e6 / duration * 100)
            await on_progress(percent)
        elif key == "progress" and value == "end":
            await on_progress(100.0)
