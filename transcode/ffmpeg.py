"""Running FFmpeg: an argument list (never a shell), its own process group, niced, with a
wall-clock timeout that kills the whole group, and progress parsed from `-progress pipe:1`."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache

from reelwire import telemetry

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
    """FFmpeg failed; `detail` is the tail of its log, `timed_out` says whether we killed it,
    `signal` the signal that stopped it (the OOM killer's SIGKILL, an operator's SIGTERM)."""

    def __init__(
        self,
        message: str,
        detail: str = "",
        *,
        timed_out: bool = False,
        signal: int | None = None,
    ) -> None:
        super().__init__(message)
        self.detail = detail
        self.timed_out = timed_out
        self.signal = signal

    @property
    def stopped(self) -> bool:
        """FFmpeg did not fail on the media: it was stopped from outside (a signal or our
        timeout). Running it again may well succeed."""
        return self.timed_out or self.signal is not None


# FFmpeg catches SIGINT, SIGTERM, SIGQUIT and SIGPIPE, finishes what it can and exits 255 with
# this line; the exit status alone does not say a signal stopped it.
_SIGNAL_EXIT = re.compile(r"(?:Exiting normally, )?received signal (\d+)")


def signal_name(number: int) -> str:
    """`SIGKILL` for 9 (the number again when the platform has no name for it)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def stopping_signal(returncode: int, stderr: str) -> int | None:
    """The signal that stopped FFmpeg: a negative exit status (killed outright) or the line
    FFmpeg writes when it caught one and exited on its own."""
    if returncode < 0:
        return -returncode
    if returncode == 255:
        match = _SIGNAL_EXIT.search(stderr[-2000:])
        if match:
            return int(match.group(1))
    return None


# --- which FFmpeg ------------------------------------------------------------------------
#
# FFmpeg 6.0 or later: `-display_rotation` (an input option new in 6.0) is how the test media
# get their rotation, and the pipeline's outputs (the exact segment boundaries, byte-identical
# re-runs, `ffmpeg -i` wording the probe parses, the displaymatrix rotation it reads) are only
# checked against 6.0 and later. Git builds (`N-12345-g...`) carry no release number; for them
# libavutil stands in (FFmpeg 6.0 shipped libavutil 58.2).
MIN_VERSION = (6, 0)
MIN_LIBAVUTIL = (58, 2)
MIN_VERSION_WHY = "-display_rotation and the outputs the pipeline is tested with"

_FORMAT_NAMES = tuple(INPUT_GUARDS[3].split(","))
REQUIRED: dict[str, tuple[str, ...]] = {
    # the ladder (x264 + AAC), image clips (WebP), thumbnails and storyboards (MJPEG)
    "encoders": ("libx264", "aac", "libwebp", "mjpeg"),
    # HLS writes MPEG-TS segments; thumbnails and storyboard frames go out through image2
    "muxers": ("hls", "mpegts", "image2", "mp4"),
    # the ladder's and the storyboard's filtergraphs
    "filters": ("split", "scale", "trim", "setpts", "thumbnail", "fps", "tile", "setsar"),
    # every format INPUT_GUARDS lets in, and image2 for reading back the storyboard frames
    "demuxers": (*_FORMAT_NAMES, "image2"),
}


class FFmpegUnavailable(RuntimeError):
    """No FFmpeg that fits: the message is one line, fit for a start-up error."""


@dataclass(frozen=True)
class FFmpegBuild:
    """An FFmpeg binary that passed the checks."""

    path: str
    version: str  # "9.0.2", or the git describe of a development build
    origin: str  # "FFMPEG_PATH", "PATH" or "bundled"

    def describe(self) -> str:
        """`ffmpeg 9.0.2 (bundled)`, `ffmpeg 7.1 (/usr/bin/ffmpeg)`."""
        where = "bundled" if self.origin == "bundled" else self.path
        return f"ffmpeg {self.version} ({where})"


_RELEASE = re.compile(r"^n?(\d+)\.(\d+)(?:\.(\d+))?")
_LIBAVUTIL = re.compile(r"^libavutil\s+(\d+)\.\s*(\d+)\.", re.M)
_FLAGS = re.compile(r"[A-Z.|]{1,6}|d")


def parse_version(output: str) -> tuple[str, tuple[int, ...] | None, bool]:
    """From `ffmpeg -version`: (version text, release numbers or None, new enough).

    `n9.0.2-17-g2a571b6068-20260930` and `5.1.6-0+deb12u1` are releases; `N-12345-g...` and
    `git-...` are development builds, judged by their libavutil."""
    first = output.splitlines()[0] if output else ""
    match = re.match(r"ffmpeg version (\S+)", first)
    if match is None:
        raise ValueError(f"not an ffmpeg -version output: {first[:80]!r}")
    text = match.group(1)
    release = _RELEASE.match(text)
    if release:
        numbers = tuple(int(n) for n in release.groups() if n is not None)
        return ".".join(map(str, numbers)), numbers, numbers[:2] >= MIN_VERSION
    util = _LIBAVUTIL.search(output)
    if util is None:
        return text, None, False
    return text, None, (int(util.group(1)), int(util.group(2))) >= MIN_LIBAVUTIL


def parse_names(listing: str) -> set[str]:
    """Names in an `ffmpeg -encoders/-muxers/-demuxers/-filters` listing (`mov,mp4,...` is
    several), read after the legend's `---` line."""
    lines = listing.splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"\s*-+\s*", line):
            lines = lines[i + 1 :]
            break
    names: set[str] = set()
    for line in lines:
        tokens = line.split()
        while tokens and _FLAGS.fullmatch(tokens[0]):
            tokens.pop(0)
        if tokens:
            names.update(tokens[0].split(","))
    return names


def inspect_ffmpeg(path: str, origin: str) -> FFmpegBuild:
    """Ask the binary (its version and four listings, all at once) whether it fits; raise
    FFmpegUnavailable with the reason (one line) when it does not."""
    queries = ["-version", *(f"-{kind}" for kind in REQUIRED)]
    try:
        procs = [
            subprocess.Popen(
                [path, "-hide_banner", query] if query != "-version" else [path, query],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                errors="replace",
            )
            for query in queries
        ]
    except OSError as exc:
        raise FFmpegUnavailable(f"{path} cannot be run ({exc.strerror or exc})") from None
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=_INSPECT_TIMEOUT)
            outputs.append(out)
    except subprocess.TimeoutExpired:
        raise FFmpegUnavailable(f"{path} did not answer -version within 10s") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    try:
        version, _, recent = parse_version(outputs[0])
    except ValueError:
        raise FFmpegUnavailable(f"{path} does not look like ffmpeg (-version)") from None
    if not recent:
        minimum = ".".join(map(str, MIN_VERSION))
        raise FFmpegUnavailable(
            f"ffmpeg {version} at {path} is older than {minimum} (needed for {MIN_VERSION_WHY})"
        )
    missing = []
    for (kind, names), listing in zip(REQUIRED.items(), outputs[1:], strict=True):
        found = parse_names(listing)
        missing += [f"{kind[:-1]} {name}" for name in names if name not in found]
    if missing:
        raise FFmpegUnavailable(f"ffmpeg {version} at {path} lacks {', '.join(missing)}")
    return FFmpegBuild(path, version, origin)


_INSPECT_TIMEOUT = 10.0


def _bundled() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:
        return None


@cache
def ffmpeg_build() -> FFmpegBuild:
    """The FFmpeg every run uses, checked once per process: FFMPEG_PATH (which must fit), else
    `ffmpeg` on PATH when it fits, else the binary imageio-ffmpeg ships."""
    configured = os.environ.get("FFMPEG_PATH")
    if configured:
        try:
            return inspect_ffmpeg(configured, "FFMPEG_PATH")
        except FFmpegUnavailable as exc:
            raise FFmpegUnavailable(f"FFMPEG_PATH refused: {exc}") from None
    on_path = shutil.which("ffmpeg")
    passed_over = None
    if on_path:
        try:
            return inspect_ffmpeg(on_path, "PATH")
        except FFmpegUnavailable as exc:
            passed_over = str(exc)
    bundled = _bundled()
    if bundled is None or (on_path and os.path.realpath(bundled) == os.path.realpath(on_path)):
        reason = passed_over or "no ffmpeg on PATH"
        raise FFmpegUnavailable(
            f"no usable ffmpeg: {reason}, and no bundled one (pip install imageio-ffmpeg, "
            "or set FFMPEG_PATH)"
        )
    try:
        build = inspect_ffmpeg(bundled, "bundled")
    except FFmpegUnavailable as exc:
        raise FFmpegUnavailable(
            f"no usable ffmpeg: {passed_over + '; ' if passed_over else ''}bundled: {exc}"
        ) from None
    if passed_over:
        logger.warning("%s; using the bundled ffmpeg %s", passed_over, build.version)
    return build


def ffmpeg_path() -> str:
    """The checked FFmpeg binary (see ffmpeg_build)."""
    return ffmpeg_build().path


def check_ffmpeg() -> str:
    """Choose and check FFmpeg now (call once at start-up); returns what the start-up banner
    shows, e.g. `ffmpeg 9.0.2 (bundled)`. Raises FFmpegUnavailable (one line) when none fits."""
    return ffmpeg_build().describe()


def reset_ffmpeg_choice() -> None:
    """Forget the chosen FFmpeg (tests that change PATH or FFMPEG_PATH)."""
    ffmpeg_build.cache_clear()


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
        telemetry.ffmpeg_failures.labels("timeout").inc()
        raise FFmpegError(f"ffmpeg did not finish within {timeout:.0f}s", stderr, timed_out=True)
    returncode = proc.returncode or 0
    if check and returncode != 0:
        stopped_by = stopping_signal(returncode, stderr)
        if stopped_by is not None:
            telemetry.ffmpeg_failures.labels("signal").inc()
            raise FFmpegError(
                f"ffmpeg was killed by signal {stopped_by} ({signal_name(stopped_by)})",
                stderr,
                signal=stopped_by,
            )
        telemetry.ffmpeg_failures.labels("exit").inc()
        raise FFmpegError(f"ffmpeg exited with code {returncode}", stderr)
    return Completed(returncode, stderr)


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
