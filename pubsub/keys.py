"""Every Redis key and channel name Reelwire uses, built here and nowhere else."""

from __future__ import annotations

from uuid import UUID

PREFIX = "rw:"


def revoked_session(family: UUID) -> str:
    """Set while a logged-out (or leaked) session's access tokens may still be unexpired."""
    return f"{PREFIX}session:revoked:{family}"


# --- live counters and caches --------------------------------------------------------------

VIEWS_DIRTY = f"{PREFIX}views:dirty"  # views and watch time not yet in PostgreSQL
VIEWS_FLUSHING = f"{PREFIX}views:flushing"  # the batch being written
VIEWS_FLUSH_LOCK = f"{PREFIX}views:flush-lock"
VIEWS_FLUSH_GENERATION = f"{PREFIX}views:flush-gen"


def live_views(video_id: UUID | str) -> str:
    """A video's view count including what is not flushed yet."""
    return f"{PREFIX}video:{video_id}:views"


def video_cache(video_id: UUID | str) -> str:
    """Cached video metadata plus its counters and their version."""
    return f"{PREFIX}cache:video:{video_id}"


def profile_cache(user_id: UUID | str) -> str:
    """A cached public profile."""
    return f"{PREFIX}cache:user:{user_id}"


def clip_feed_cache(user_id: UUID | str) -> str:
    """A user's rendered followed-clips feed."""
    return f"{PREFIX}cache:clipfeed:{user_id}"


def trending_cache(filters: str) -> str:
    """Trending video ids for one combination of list filters."""
    return f"{PREFIX}cache:trending:{filters}"


def list_count_cache(filters: str) -> str:
    """A cached total for one combination of list filters."""
    return f"{PREFIX}cache:count:{filters}"


def rate_limit(bucket: str, subject: str) -> str:
    """One limit's state (its theoretical arrival time) for one user or address."""
    return f"{PREFIX}rl:{bucket}:{subject}"


# --- channels (names as clients write them in PROTOCOL.md) -----------------------------------


def video_channel(video_id: UUID | str) -> str:
    """Everything that happens to one video: counts, comments, processing status."""
    return f"video:{video_id}"


def user_channel(user_id: UUID | str) -> str:
    """Private to one user: transcode progress, new followers, notifications."""
    return f"user:{user_id}"


def clip_channel(user_id: UUID | str) -> str:
    """One user's clips; followers' feed:clips sockets are subscribed to it server-side."""
    return f"clips:{user_id}"


def follows_channel(user_id: UUID | str) -> str:
    """Internal: tells a user's live sockets whom they started or stopped following."""
    return f"follows:{user_id}"


def redis_channel(channel: str) -> str:
    """The Redis pub/sub channel carrying a protocol channel."""
    return f"{PREFIX}ch:{channel}"


def channel_of(redis_name: bytes) -> str:
    """The protocol channel a Redis pub/sub channel carries (the inverse of redis_channel)."""
    return redis_name[len(PREFIX) + 3 :].decode()


# The history keys of one channel share a hash tag, so a Lua script may touch both on a Redis
# Cluster; the stream expires with HISTORY_TTL, the position (epoch and top offset) lives longer
# so a quiet channel keeps its epoch and clients still recover "nothing missed".


def history_stream(channel: str) -> str:
    """The last HISTORY_SIZE messages of a channel, stream ids `<offset>-0`."""
    return f"{PREFIX}hist:{{{channel}}}:stream"


def history_position(channel: str) -> str:
    """Hash: `epoch` (changes when the history is lost) and `top` (the last offset)."""
    return f"{PREFIX}hist:{{{channel}}}:pos"


def presence(channel: str) -> str:
    """Hash: each live process's socket count on a channel, with the time that share expires."""
    return f"{PREFIX}presence:{{{channel}}}"


def socket_ticket(ticket: str) -> str:
    """A single-use WebSocket ticket (POST /api/ws/ticket), valid for 30 s."""
    return f"{PREFIX}ws-ticket:{ticket}"


# --- transcode job queue -------------------------------------------------------------------

TRANSCODE_STREAM = f"{PREFIX}jobs:transcode"
TRANSCODE_GROUP = "transcoders"
TRANSCODE_DELAYED = f"{PREFIX}jobs:transcode:delayed"
TRANSCODE_DELIVERIES = f"{PREFIX}jobs:transcode:deliveries"
