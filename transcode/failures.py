"""How a job fails: for good (bad media) or for now (retried with backoff by the worker)."""

from __future__ import annotations

import re

from transcode.ffmpeg import FFmpegError


class PermanentFailure(Exception):
    """Running the job again cannot help (bad media); the reason is shown to the owner."""


class TransientFailure(Exception):
    """Running the job again may well work; the message is a reason a person can read."""


def stopped_transcoder(exc: FFmpegError) -> TransientFailure:
    """FFmpeg stopped from outside (a signal, the OOM killer, our timeout): not the media's
    fault, so the job is retried."""
    if exc.timed_out:
        return TransientFailure(f"The transcoder did not finish in time ({exc})")
    return TransientFailure(f"The transcoder was stopped (killed by signal {exc.signal})")


def ffmpeg_failure(exc: FFmpegError) -> Exception:
    """Only FFmpeg failing on the media is bad media."""
    if exc.stopped:
        return stopped_transcoder(exc)
    return PermanentFailure(_readable(exc.detail))


_NOISE = re.compile(r"^\[[^\]]+\] ")


def _readable(detail: str) -> str:
    """The last meaningful FFmpeg line, as a reason a person can read."""
    lines = [_NOISE.sub("", line).strip() for line in detail.splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(("Conversion failed", "frame="))]
    last = meaningful[-1] if meaningful else "unknown error"
    return f"The video could not be decoded: {last}"[:500]
