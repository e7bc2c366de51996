"""Every Redis key and channel name Reelwire uses, built here and nowhere else."""

from __future__ import annotations

from uuid import UUID

PREFIX = "rw:"


def revoked_session(family: UUID) -> str:
    """Set while a logged-out (or leaked) session's access tokens may still be unexpired."""
    return f"{PREFIX}session:revoked:{family}"


# --- channels (names as clients write them in PROTOCOL.md) -----------------------------------


def video_channel(video_id: UUID | str) -> str:
    """Everything that happens to one video: counts, comments, processing status."""
    return f"video:{video_id}"


def user_channel(user_id: UUID | str) -> str:
    """Private to one user: transcode progress, new followers, notifications."""
    return f"user:{user_id}"


def redis_channel(channel: str) -> str:
    """The Redis pub/sub channel carrying a protocol channel."""
    return f"{PREFIX}ch:{channel}"


# --- transcode job queue -------------------------------------------------------------------

TRANSCODE_STREAM = f"{PREFIX}jobs:transcode"
TRANSCODE_GROUP = "transcoders"
TRANSCODE_DELAYED = f"{PREFIX}jobs:transcode:delayed"
TRANSCODE_DELIVERIES = f"{PREFIX}jobs:transcode:deliveries"
