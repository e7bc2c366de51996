"""The local hub: all sockets of this process, and the parts that get channel events to them.

`Hub` is a thin facade over the parts, each owning one concern:

- `realtime.channels.Channels`: channel membership (channel -> local sockets) and the
  reference-counted Redis subscription behind each channel (one per channel per process).
  A history event arrives as the exact JSON a client receives; its frame is built once and the
  same bytes go to every member (`fan_out`).
- `realtime.coalescing.Coalescer`: `video_update` state merged per channel, sent at most every
  COALESCE_MS.
- `realtime.recovery.HistoryRecovery`: offsets, `since`, and the gaps an offset past the last
  one or a Redis reconnect reveals.
- `realtime.presence.PresenceReporter`: viewer counts shared across processes.
- `realtime.liveness.Liveness`: heartbeats, token expiry, and the auth deadline of anonymous
  sockets.
- `realtime.clip_feed.ClipFeed`: `feed:clips` following whom its user follows.

The hub routes each message from Redis to the part it concerns, runs the housekeeping tick, and
owns the sockets' lifecycle (attach, join, leave, detach) and the process's (start, shutdown,
stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from pubsub.history import Position
from realtime.channels import Channels, fan_out
from realtime.clip_feed import ClipFeed
from realtime.close_codes import CloseCode
from realtime.coalescing import Coalescer, LoadCounts
from realtime.connection import Connection, Membership
from realtime.liveness import Liveness
from realtime.presence import PresenceReporter
from realtime.recovery import HistoryRecovery
from realtime.wire import text_frame
from reelwire.domain.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

PRESENCE_TICK = 0.5
SHUTDOWN_BATCH = 500
SHUTDOWN_PAUSE = 0.05


@dataclass(frozen=True)
class HubSettings:
    """What the hub needs from Settings."""

    coalesce_ms: int
    heartbeat: int
    auth_timeout: float
    history_size: int
    presence_ttl: float


class Hub:
    """All sockets of this process and the channels they watch."""

    def __init__(
        self,
        redis: Any,
        settings: HubSettings,
        *,
        node: str,
        load_counts: LoadCounts,
    ) -> None:
        self.node = node
        self.settings = settings
        self.connections: set[Connection] = set()
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.channels = Channels(redis, self._on_message, self._on_reconnect)
        self.coalescer = Coalescer(settings.coalesce_ms, load_counts)
        self.recovery = HistoryRecovery(redis, settings.history_size, self._spawn)
        self.presence = PresenceReporter(redis, node, settings.presence_ttl, self.channels)
        self.liveness = Liveness(settings.heartbeat, settings.auth_timeout)
        self.clip_feed = ClipFeed(self.join, self.leave, self._spawn)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis pub/sub and start the housekeeping tick."""
        await self.channels.start()
        self._ticker = asyncio.create_task(self._tick(), name="hub-tick")

    async def shutdown(self) -> None:
        """Refuse new sockets and close the open ones with CloseCode.RESTART, in batches."""
        self.closing = True
        pending = list(self.connections)
        for start in range(0, len(pending), SHUTDOWN_BATCH):
            for conn in pending[start : start + SHUTDOWN_BATCH]:
                conn.close(CloseCode.RESTART, "server restart")
            await asyncio.sleep(SHUTDOWN_PAUSE)

    async def stop(self) -> None:
        """Withdraw this process's presence and stop every task (cancelled and awaited)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.presence.withdraw(), 2)
        await self.channels.stop()

    # --- sockets ----------------------------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        """A socket opened."""
        self.connections.add(conn)
        self.liveness.opened(conn)

    def proven(self, conn: Connection) -> None:
        """The socket authenticated or subscribed: it is no longer closed for idling."""
        self.liveness.proven(conn)

    def detach(self, conn: Connection) -> None:
        """A socket closed: leave every channel."""
        self.connections.discard(conn)
        self.liveness.closed(conn)
        for channel in list(conn.memberships):
            self.leave(conn, channel)
        conn.feed_follows = None

    async def join(
        self,
        conn: Connection,
        channel: str,
        *,
        events: frozenset[str] | None = None,
        since: Position | None = None,
        counts: dict[str, Any] | None = None,
        via_feed: bool = False,
        message_id: Any = None,
    ) -> None:
        """Add a socket to a channel and bring it up to date.

        The socket is a member (buffering) from the start, so nothing published while its
        position is read can slip between; then it gets `subscribed`, the missed messages when
        `since` was given, the buffered ones past its position, and, for a video, its counters.
        """
        membership = Membership(channel, events, via_feed=via_feed)
        feed = self.channels.add(conn, membership)
        if counts is not None:
            self.coalescer.track(feed, counts)
            self.presence.changed(channel)
        try:
            await self.channels.acquire(membership)
            recovery = await self.recovery.starting_point(channel, since=since, via_feed=via_feed)
            if feed.video is not None and feed.video.viewer_count is None:
                await self.presence.fill_viewers(feed)
        except (Exception, asyncio.CancelledError) as exc:
            self.leave(conn, channel)
            if isinstance(exc, asyncio.CancelledError):
                raise
            logger.warning("subscribing to %s failed: %r", channel, exc)
            raise ServiceUnavailable("Realtime service unavailable; try again") from exc
        if conn.memberships.get(channel) is not membership:
            return  # left (or closed) while we waited
        seen = 0  # the socket's position: buffered events past it are new to it
        if recovery is not None:
            seen = self.recovery.catch_up(
                conn, feed, membership, recovery, asked=since is not None, message_id=message_id
            )
        buffered, membership.pending = membership.pending or [], None
        for offset, frame in buffered:
            if offset == 0 or offset > seen:  # 0: an event kept in no history
                conn.send(frame)
        if feed.video is not None and membership.wants("video_update"):
            conn.send(feed.video.frame(feed.offset))

    def leave(self, conn: Connection, channel: str) -> bool:
        """Remove a socket from a channel; False if it was not there."""
        feed = self.channels.feeds.get(channel)
        if not self.channels.remove(conn, channel):
            return False
        if feed is not None and feed.video is not None:
            self.presence.changed(channel)
        return True

    async def follow_clips(self, conn: Connection, user_ids: Iterable[UUID]) -> None:
        """Subscribe the socket server-side to these users' clip channels (feed:clips)."""
        await self.clip_feed.follow(conn, user_ids)

    def unfollow_clips(self, conn: Connection, user_id: str) -> None:
        """Stop delivering one user's clips to the socket."""
        self.clip_feed.unfollow(conn, user_id)

    # --- from Redis -------------------------------------------------------------------------

    def _on_message(self, channel: str, payload: bytes) -> None:
        """A message on a channel: history events, video state, follows, or a plain event."""
        feed = self.channels.feeds.get(channel)
        if feed is None:
            return
        if payload[:2] == b"H ":
            _, epoch, offset, body = payload.split(b" ", 3)
            self.recovery.on_history(feed, epoch.decode(), int(offset), body)
            return
        event = orjson.loads(payload[2:])
        if feed.video is not None and event.get("type") == "video_update":
            self.coalescer.on_update(feed, event)
        elif channel.startswith("follows:"):
            self.clip_feed.on_following(feed, event)
        else:
            fan_out(feed, 0, text_frame(payload[2:]), payload[2:])

    def _on_reconnect(self) -> None:
        """Redis pub/sub is back: fetch what each channel missed, refresh counters and presence."""
        for feed in list(self.channels.feeds.values()):
            self.recovery.on_reconnect(feed)
            if feed.video is not None:
                self._spawn(self.coalescer.refresh(feed))
                self.presence.changed(feed.name)

    # --- housekeeping -----------------------------------------------------------------------

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + self.settings.heartbeat
        next_refresh = loop.time()
        refresh_every = self.settings.presence_ttl / 3
        while True:
            await asyncio.sleep(PRESENCE_TICK)
            now = loop.time()
            try:
                if now >= next_refresh:
                    next_refresh = now + refresh_every
                    self.presence.refresh_all()
                await self.presence.report()
            except Exception as exc:
                logger.warning("presence report failed: %r", exc)
            self.liveness.close_unproven()
            if now >= next_heartbeat:
                next_heartbeat = now + self.settings.heartbeat
                self.liveness.beat(self.connections)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
