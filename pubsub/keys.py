"""Every Redis key and channel name Reelwire uses, built here and nowhere else."""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID

PREFIX = "rw:"

# On a Redis Cluster every Lua script and every transaction touches keys of one hash slot only.
# Keys that work together share a hash tag (`{...}`) there. Names with a tag that plain Redis did
# not have before are used on a cluster only, so a plain Redis keeps exactly its old key names
# (and the data under them: queued jobs, pending views) across an upgrade.


def revoked_session(family: UUID) -> str:
    """Set while a logged-out (or leaked) session's access tokens may still be unexpired."""
    return f"{PREFIX}session:revoked:{family}"


# --- live counters and caches --------------------------------------------------------------

VIEWS_DIRTY = f"{PREFIX}views:dirty"  # views and watch time not yet in PostgreSQL
VIEWS_FLUSHING = f"{PREFIX}views:flushing"  # the batch being written
VIEWS_FLUSH_LOCK = f"{PREFIX}views:flush-lock"
VIEWS_FLUSH_GENERATION = f"{PREFIX}views:flush-gen"


VIEWS_SHARDS = 16  # on a cluster: pending views are kept in this many groups of one slot each


class ViewKeys(NamedTuple):
    """The pending-views keys of one group (all of them on plain Redis)."""

    dirty: str
    flushing: str
    lock: str
    generation: str


def views_shard(video_id: UUID) -> int:
    """On a cluster, the group (0 .. VIEWS_SHARDS - 1) whose keys count this video's views."""
    return video_id.int % VIEWS_SHARDS


def view_keys(shard: int | None) -> ViewKeys:
    """Pending views of every video (shard None: plain Redis) or of one group on a cluster."""
    if shard is None:
        return ViewKeys(VIEWS_DIRTY, VIEWS_FLUSHING, VIEWS_FLUSH_LOCK, VIEWS_FLUSH_GENERATION)
    base = f"{PREFIX}views:{{views-{shard}}}"
    return ViewKeys(f"{base}:dirty", f"{base}:flushing", f"{base}:flush-lock", f"{base}:flush-gen")


def live_views(video_id: UUID | str, shard: int | None = None) -> str:
    """A video's view count including what is not flushed yet (in its group's slot on a
    cluster)."""
    if shard is None:
        return f"{PREFIX}video:{video_id}:views"
    return f"{PREFIX}views:{{views-{shard}}}:live:{video_id}"


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


def redis_channel(channel: str, sharded: bool = False) -> str:
    """The Redis pub/sub channel carrying a protocol channel.

    Sharded (a cluster's SPUBLISH/SSUBSCRIBE): the name carries the channel's hash tag, so it
    lives in the slot of the channel's history and presence keys.
    """
    if sharded:
        return f"{PREFIX}ch:{{{channel}}}"
    return f"{PREFIX}ch:{channel}"


def channel_of(redis_name: bytes) -> str:
    """The protocol channel a Redis pub/sub channel carries (the inverse of redis_channel)."""
    name = redis_name[len(PREFIX) + 3 :].decode()
    if name.startswith("{") and name.endswith("}"):
        return name[1:-1]
    return name


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
TRANSCODE_WORKERS = f"{PREFIX}jobs:transcode:workers"


class QueueKeys(NamedTuple):
    """The transcode queue's keys: one hash slot on a cluster."""

    stream: str
    delayed: str
    deliveries: str
    workers: str


def transcode_keys(cluster: bool) -> QueueKeys:
    """The queue's keys on plain Redis (unchanged names) or, tagged, on a cluster."""
    if not cluster:
        return QueueKeys(
            TRANSCODE_STREAM, TRANSCODE_DELAYED, TRANSCODE_DELIVERIES, TRANSCODE_WORKERS
        )
    base = f"{PREFIX}jobs:{{transcode}}"
    return QueueKeys(base, f"{base}:delayed", f"{base}:deliveries", f"{base}:workers")
