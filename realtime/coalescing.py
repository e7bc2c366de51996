"""Coalescing of `video_update`: one merged state per video channel, sent at most every
COALESCE_MS (a change of `viewer_count` alone at most every VIEWERS_EVERY), or sooner along
with any other frame the channel's members are being written (it then costs no write).

`VideoState` folds every event and snapshot about a video into its latest values (counters by
`counts_version`, views by maximum, viewers by latest); `Coalescer` sends a channel's state to
its members now, or at the end of its coalescing window, and reloads the counters after a Redis
reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import orjson

from realtime.channels import STATE_ENTRY, ChannelFeed, queue
from realtime.wire import text_frame
from reelwire.telemetry import REALTIME
from storage.videos import COUNTERS

logger = logging.getLogger(__name__)

# Every field of a `video_update`'s data that a client may name in a subscription's `events`.
VIDEO_FIELDS = ("view_count", *COUNTERS, "viewer_count")

LoadCounts = Callable[[UUID], Awaitable[dict[str, Any] | None]]

# A change of the viewer count alone (the presence reports of every process, summed) is sent at
# most this often: while a crowd of sockets joins, it changes on every report, and each change
# is a frame to every socket watching the video.
VIEWERS_EVERY = 1.0


class VideoState:
    """The latest known counters of one video, merged from every event about it."""

    __slots__ = ("_frame", "counts", "ts", "version", "video_id", "view_count", "viewer_count")

    def __init__(self, video_id: str) -> None:
        self.video_id = video_id
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.version = -1
        self.view_count = 0
        self.viewer_count: int | None = None
        self.ts = 0
        self._frame: tuple[int, bytes] | None = None

    def merge(self, data: dict[str, Any], ts: int = 0, *, viewers_if_unknown: bool = False) -> bool:
        """Fold in an event's (or a snapshot's) values; True if anything changed."""
        changed = False
        version = data.get("counts_version")
        if version is not None and version > self.version:
            self.version = version
            for name in self.counts:
                if name in data:
                    self.counts[name] = data[name]
            changed = True
        views = data.get("view_count")
        if views is not None and views > self.view_count:
            self.view_count = views
            changed = True
        viewers = data.get("viewer_count")
        known = self.viewer_count is not None
        if (
            viewers is not None
            and viewers != self.viewer_count
            and not (viewers_if_unknown and known)
        ):
            self.viewer_count = viewers
            changed = True
        if changed:
            self.ts = max(self.ts, ts)
            self._frame = None
        return changed

    def frame(self, offset: int) -> bytes:
        """The `video_update` frame of this state (built once per change)."""
        if self._frame is None or self._frame[0] != offset:
            message = {
                "type": "video_update",
                "video_id": self.video_id,
                "data": {
                    "view_count": self.view_count,
                    **self.counts,
                    "viewer_count": self.viewer_count or 0,
                    "counts_version": self.version,
                },
                "offset": offset,
                "ts": self.ts,
            }
            self._frame = (offset, text_frame(orjson.dumps(message)))
        return self._frame[1]


class Coalescer:
    """Sends each video channel's merged state, at most once per coalescing window."""

    def __init__(self, coalesce_ms: int, load_counts: LoadCounts) -> None:
        self._coalesce = coalesce_ms / 1000
        self._viewers_every = max(self._coalesce, VIEWERS_EVERY)
        self._load_counts = load_counts

    @staticmethod
    def track(feed: ChannelFeed, counts: dict[str, Any]) -> None:
        """A socket joined a video channel with the video's counters: start from them."""
        if feed.video is None:
            feed.video = VideoState(feed.name.partition(":")[2])
            feed.ride = Coalescer._ride
        feed.video.merge(counts)

    def on_update(self, feed: ChannelFeed, event: dict[str, Any]) -> None:
        """A `video_update` event from Redis: merge it, and send the state if it changed."""
        assert feed.video is not None
        data = event.get("data") or {}
        viewers_only = data.keys() == {"viewer_count"}  # presence: every process's count summed
        if not feed.video.merge(data, event.get("ts", 0)) or not self.schedule(
            feed, viewers_only=viewers_only
        ):  # nothing new, or folded into the frame the window will send
            REALTIME.coalesced += 1

    def schedule(self, feed: ChannelFeed, *, viewers_only: bool = False) -> bool:
        """Send the channel's state now, or at the end of its coalescing window (a change of
        `viewer_count` alone: of VIEWERS_EVERY); False when a send already due by then will
        carry it."""
        loop = asyncio.get_running_loop()
        due = feed.last_sent + (self._viewers_every if viewers_only else self._coalesce)
        if feed.timer is not None:
            if feed.timer.when() <= due:
                return False
            feed.timer.cancel()
            feed.timer = None
        if due <= loop.time():
            self._send_state(feed)
        else:
            feed.timer = loop.call_at(due, self._send_state, feed)
        return True

    def _send_state(self, feed: ChannelFeed) -> None:
        feed.timer = None
        feed.last_sent = asyncio.get_running_loop().time()
        if not any(entry[3] for entry in feed.batch):  # one state a write, made as it goes out
            queue(feed, STATE_ENTRY)

    @staticmethod
    def _ride(feed: ChannelFeed) -> None:
        """The channel is being written to anyway: a state waiting for its window goes along
        (no write of its own; the window starts again from now)."""
        if feed.timer is None:
            return
        feed.timer.cancel()
        feed.timer = None
        feed.last_sent = asyncio.get_running_loop().time()
        if not any(entry[3] for entry in feed.batch):
            feed.batch.append(STATE_ENTRY)

    async def refresh(self, feed: ChannelFeed) -> None:
        """Reload the video's counters (events may have been missed) and send them if newer."""
        assert feed.video is not None
        try:
            counts = await self._load_counts(UUID(feed.video.video_id))
        except Exception as exc:
            logger.warning("refreshing counters of %s failed: %r", feed.name, exc)
            return
        if counts is not None and feed.video.merge(counts):
            self.schedule(feed)
