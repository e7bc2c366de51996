"""Process-wide instruments, and whether this process shares them with its siblings.

`reelwire serve --processes N` gives its children a PROMETHEUS_MULTIPROC_DIR (reelwire.supervisor):
prometheus_client then keeps every value below in a file per process, and a scrape of any child
sums the files of all of them (http_api.metrics). Without it (one process) the values live in
memory and are exposed as they are.

Hot paths never call prometheus_client: they bump plain ints in `REALTIME` (one attribute add),
and `flush()` moves the increments into the counters (every second, and before each scrape), so
a fan-out to thousands of sockets costs one add per event and channel.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess() -> bool:
    """Whether values go to files shared with sibling processes."""
    return bool(os.environ.get(MULTIPROC_ENV))


# The instruments' own registry: exposed as is by one process, or never (its values are read
# from the files instead). Never prometheus_client's global registry.
INSTRUMENTS = CollectorRegistry(auto_describe=True)

_TRANSCODE = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)

ws_connections = Gauge(
    "reelwire_ws_connections",
    "Open WebSocket connections",
    registry=INSTRUMENTS,
    multiprocess_mode="livesum",
)
ws_subscriptions = Gauge(
    "reelwire_ws_subscriptions",
    "Channel memberships of open WebSocket connections",
    registry=INSTRUMENTS,
    multiprocess_mode="livesum",
)
ws_delivered = Counter(
    "reelwire_ws_messages_delivered",
    "Channel messages (events and video_update states) handed to sockets",
    registry=INSTRUMENTS,
)
ws_writes = Counter(
    "reelwire_ws_channel_writes",
    "Socket writes that carried channel messages (messages delivered / writes: how many "
    "shared a write)",
    registry=INSTRUMENTS,
)
ws_coalesced = Counter(
    "reelwire_ws_video_updates_coalesced",
    "video_update events folded into a later frame instead of sent on their own",
    registry=INSTRUMENTS,
)
ws_slow_closes = Counter(
    "reelwire_ws_slow_closes",
    "Sockets closed for not reading fast enough (close code 4008)",
    registry=INSTRUMENTS,
)
ws_recoveries = Counter(
    "reelwire_ws_recoveries",
    "History recoveries: a client subscribing with `since`, or a channel after Redis came back",
    ["kind"],
    registry=INSTRUMENTS,
)
outbox_depth = Gauge(
    "reelwire_outbox_depth",
    "Redis writes held in the outbox while Redis is unavailable",
    registry=INSTRUMENTS,
    multiprocess_mode="livesum",
)
db_pool_size = Gauge(
    "reelwire_db_pool_size",
    "PostgreSQL connections open in the pool",
    registry=INSTRUMENTS,
    multiprocess_mode="livesum",
)
db_pool_in_use = Gauge(
    "reelwire_db_pool_in_use",
    "PostgreSQL connections of the pool in use",
    registry=INSTRUMENTS,
    multiprocess_mode="livesum",
)
db_pool_max = Gauge(
    "reelwire_db_pool_max",
    "Most PostgreSQL connections the pool may open",
    registry=INSTRUMENTS,
    multiprocess_mode="livesum",
)
_ROUND_TRIP = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
db_acquire_seconds = Histogram(
    "reelwire_db_acquire_seconds",
    "Time waiting for a PostgreSQL connection from the pool",
    registry=INSTRUMENTS,
    buckets=_ROUND_TRIP,
)
redis_command_seconds = Histogram(
    "reelwire_redis_command_seconds",
    "Round trip of one Redis command, script or pipeline (PIPELINE, or MULTI for a transaction)",
    ["command"],
    registry=INSTRUMENTS,
    buckets=_ROUND_TRIP,
)
transcode_job_seconds = Histogram(
    "reelwire_transcode_job_seconds",
    "Time to run one transcode job, by outcome",
    ["kind", "outcome"],
    registry=INSTRUMENTS,
    buckets=_TRANSCODE,
)
# FFmpeg renders every rung of a video in one run, so the time is per ladder, labelled by its
# top rung (360p ... 1080p): what a rung adds shows as the difference between the labels.
transcode_ladder_seconds = Histogram(
    "reelwire_transcode_ladder_seconds",
    "Time FFmpeg took to render a video's ladder, by its top rung",
    ["top_rung"],
    registry=INSTRUMENTS,
    buckets=_TRANSCODE,
)
# From FFmpeg's start until every rung has its first segment stored and the master playlist is
# up (the video plays), by the ladder's top rung.
transcode_first_playable_seconds = Histogram(
    "reelwire_transcode_first_playable_seconds",
    "Time from the start of a video's ladder until it could be played",
    ["top_rung"],
    registry=INSTRUMENTS,
    buckets=(0.5, 1, 2, 3, 4, 6, 8, 12, 20, 30, 60),
)
ffmpeg_failures = Counter(
    "reelwire_ffmpeg_failures",
    "FFmpeg runs that failed, by kind (exit: it gave up on the input; timeout; signal)",
    ["kind"],
    registry=INSTRUMENTS,
)
# The process's own use, named as prometheus_client's process collector names it but written like
# every instrument above, so that under `serve --processes N` a scrape sums the processes: CPU as
# a counter (a replaced process's seconds stay counted), memory of the live ones. Set by flush().
process_cpu_seconds = Counter(
    "process_cpu_seconds",
    "Total user and system CPU time spent in seconds",
    registry=INSTRUMENTS,
)
process_resident_memory = Gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes",
    multiprocess_mode="livesum",
    registry=INSTRUMENTS,
)


for _kind in ("client", "channel"):
    ws_recoveries.labels(_kind)
for _kind in ("exit", "timeout", "signal"):
    ffmpeg_failures.labels(_kind)


class RealtimeCounts:
    """Plain counters the realtime hot paths bump; `flush()` publishes them."""

    __slots__ = (
        "channel_recoveries",
        "client_recoveries",
        "coalesced",
        "delivered",
        "slow",
        "writes",
    )

    def __init__(self) -> None:
        self.delivered = 0
        self.writes = 0
        self.coalesced = 0
        self.slow = 0
        self.client_recoveries = 0
        self.channel_recoveries = 0


REALTIME = RealtimeCounts()
_flushed = RealtimeCounts()
_cpu_counted = 0.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def flush() -> None:
    """Move what the hot paths counted since the last flush into the counters, and read this
    process's CPU time and memory."""
    for name, counter in (
        ("delivered", ws_delivered),
        ("writes", ws_writes),
        ("coalesced", ws_coalesced),
        ("slow", ws_slow_closes),
        ("client_recoveries", ws_recoveries.labels("client")),
        ("channel_recoveries", ws_recoveries.labels("channel")),
    ):
        now = getattr(REALTIME, name)
        delta = now - getattr(_flushed, name)
        if delta > 0:
            counter.inc(delta)
            setattr(_flushed, name, now)
    _sample_process()


def _sample_process() -> None:
    global _cpu_counted
    cpu = time.process_time()
    if cpu > _cpu_counted:
        process_cpu_seconds.inc(cpu - _cpu_counted)
        _cpu_counted = cpu
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):  # not Linux: no memory figure
        return
    process_resident_memory.set(pages * _PAGE)
