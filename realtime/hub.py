"""The local hub: which sockets of this process watch which channel, and getting events to them.

One Redis subscription per channel per process (pubsub.subscriber), whatever the number of local
sockets. A history event arrives as the exact JSON a client receives; the hub builds its frame once
and hands the same bytes to every member. `video_update` state is merged per channel (counters by
`counts_version`, views by maximum, viewers by latest) and sent at most every COALESCE_MS.

Offsets: each channel remembers the highest offset it delivered. After a Redis reconnect, or when
an offset arrives past a gap, the hub fetches what it missed from the channel's history and
delivers it before anything newer; when that history is gone it tells the members
`subscribed {recovered: false}` so they reload over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from pubsub import history, keys
from pubsub.history import Position, Recovery
from pubsub.presence import Presence
from pubsub.subscriber import ChannelSubscriber
from realtime import messages
from realtime.close_codes import CloseCode
from realtime.connection import Connection, Membership
from realtime.wire import PING_FRAME, text_frame
from reelwire.domain.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

VIDEO_FIELDS = ("view_count", "like_count", "dislike_count", "comment_count", "viewer_count")
PRESENCE_TICK = 0.5
SHUTDOWN_BATCH = 500
SHUTDOWN_PAUSE = 0.05

LoadCounts = Callable[[UUID], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class HubSettings:
    """What the hub needs from Settings."""

    coalesce_ms: int
    heartbeat: int
    auth_timeout: float
    history_size: int
    presence_ttl: float


class VideoState:
    """The latest known counters of one video, merged from every event about it."""

    __slots__ = ("_frame", "counts", "ts", "version", "video_id", "view_count", "viewer_count")

    def __init__(self, video_id: str) -> None:
        self.video_id = video_id
        self.counts = {"like_count": 0, "dislike_count": 0, "comment_count": 0}
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


class ChannelFeed:
    """One channel as this process sees it: its local members, position and state."""

    __slots__ = (
        "epoch",
        "floor",
        "held",
        "last_sent",
        "members",
        "name",
        "offset",
        "recovering",
        "timer",
        "video",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[Connection, Membership] = {}
        self.epoch: str | None = None
        self.offset = 0  # highest offset delivered
        self.floor = 0  # offsets up to this were delivered by a recovery; later copies are dropped
        self.recovering = False
        self.held: list[tuple[str, int, bytes]] = []
        self.video: VideoState | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.last_sent = -math.inf


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
        self.feeds: dict[str, ChannelFeed] = {}
        self.closing = False
        self._redis = redis
        self._load_counts = load_counts
        self._subscriber = ChannelSubscriber(redis, self._on_message, self._on_reconnect)
        self._presence = Presence(redis, node, settings.presence_ttl)
        self._coalesce = settings.coalesce_ms / 1000
        self._unproven: dict[Connection, float] = {}  # neither authenticated nor subscribed yet
        self._presence_dirty: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis pub/sub and start the housekeeping tick."""
        await self._subscriber.start()
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
            videos = [name for name, feed in self.feeds.items() if feed.video is not None]
            await asyncio.wait_for(self._presence.report(dict.fromkeys(videos, 0)), 2)
        await self._subscriber.stop()

    # --- sockets ----------------------------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        """A socket opened."""
        self.connections.add(conn)
        if conn.principal is None:
            self._unproven[conn] = time.monotonic() + self.settings.auth_timeout

    def proven(self, conn: Connection) -> None:
        """The socket authenticated or subscribed: it is no longer closed for idling."""
        self._unproven.pop(conn, None)

    def detach(self, conn: Connection) -> None:
        """A socket closed: leave every channel."""
        self.connections.discard(conn)
        self._unproven.pop(conn, None)
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
        conn.memberships[channel] = membership
        feed = self.feeds.get(channel)
        if feed is None:
            feed = self.feeds[channel] = ChannelFeed(channel)
        feed.members[conn] = membership
        if counts is not None:
            if feed.video is None:
                feed.video = VideoState(channel.partition(":")[2])
            feed.video.merge(counts)
            self._presence_dirty.add(channel)
        try:
            await self._subscriber.acquire(channel)
            membership.acquired = True
            if via_feed:
                # Nobody is told a position: everything from now on is new to this socket.
                recovery = None
            elif since is not None:
                recovery = await history.since(
                    self._redis, channel, since.epoch, since.offset, self.settings.history_size
                )
            else:
                recovery = Recovery(await history.position(self._redis, channel), False)
            if feed.video is not None and feed.video.viewer_count is None:
                total = await self._presence.total(channel)
                feed.video.merge({"viewer_count": total}, viewers_if_unknown=True)
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
            top = recovery.position
            seen = top.offset
            if feed.epoch is None:
                feed.epoch, feed.offset = top.epoch, max(feed.offset, top.offset)
            recovered = recovery.recovered and since is not None
            conn.send(messages.subscribed(message_id, channel, top.offset, top.epoch, recovered))
            for _offset, body in recovery.frames:
                if membership.wants(_event_type(body)):
                    conn.send(text_frame(body))
        buffered, membership.pending = membership.pending or [], None
        for offset, frame in buffered:
            if offset == 0 or offset > seen:  # 0: an event kept in no history
                conn.send(frame)
        if feed.video is not None and membership.wants("video_update"):
            conn.send(feed.video.frame(feed.offset))

    def leave(self, conn: Connection, channel: str) -> bool:
        """Remove a socket from a channel; False if it was not there."""
        membership = conn.memberships.pop(channel, None)
        if membership is None:
            return False
        feed = self.feeds.get(channel)
        if feed is not None:
            feed.members.pop(conn, None)
            if feed.video is not None:
                self._presence_dirty.add(channel)
            if not feed.members:
                if feed.timer is not None:
                    feed.timer.cancel()
                    feed.timer = None
                # Unwatched, the channel is unsubscribed: what it knew goes stale.
                feed.epoch, feed.offset, feed.floor = None, 0, 0
                if feed.video is None:
                    del self.feeds[channel]
                else:
                    # kept until its zero count is reported (see _report_presence)
                    feed.video.viewer_count = None
        if membership.acquired:
            self._subscriber.release(channel)
        return True

    async def follow_clips(self, conn: Connection, user_ids: Iterable[UUID]) -> None:
        """Subscribe the socket server-side to these users' clip channels (feed:clips)."""
        follows = conn.feed_follows
        assert follows is not None
        new = [user_id for user_id in dict.fromkeys(user_ids) if str(user_id) not in follows]
        follows.update(str(user_id) for user_id in new)

        async def join(user_id: UUID) -> None:
            with contextlib.suppress(ServiceUnavailable):
                await self.join(conn, keys.clip_channel(user_id), via_feed=True)

        # Concurrently: a user following thousands would otherwise wait a round trip each.
        await asyncio.gather(*(join(user_id) for user_id in new))

    def unfollow_clips(self, conn: Connection, user_id: str) -> None:
        """Stop delivering one user's clips to the socket."""
        if conn.feed_follows is not None and user_id in conn.feed_follows:
            conn.feed_follows.discard(user_id)
            self.leave(conn, keys.clip_channel(user_id))

    # --- from Redis -------------------------------------------------------------------------

    def _on_message(self, channel: str, payload: bytes) -> None:
        feed = self.feeds.get(channel)
        if feed is None:
            return
        if payload[:2] == b"H ":
            _, epoch, offset, body = payload.split(b" ", 3)
            self._on_history(feed, epoch.decode(), int(offset), body)
            return
        event = orjson.loads(payload[2:])
        if feed.video is not None and event.get("type") == "video_update":
            if feed.video.merge(event.get("data") or {}, event.get("ts", 0)):
                self._schedule(feed)
        elif channel.startswith("follows:"):
            self._on_following(feed, event)
        else:
            self._fan_out(feed, 0, text_frame(payload[2:]), payload[2:])

    def _on_history(self, feed: ChannelFeed, epoch: str, offset: int, body: bytes) -> None:
        if feed.recovering:
            feed.held.append((epoch, offset, body))
            return
        if feed.epoch is not None and epoch == feed.epoch:
            if offset <= feed.floor:
                return  # already delivered by a recovery
            if offset > feed.offset + 1:
                feed.held.append((epoch, offset, body))
                self._spawn(self._recover(feed))
                return
        elif feed.epoch is not None:
            # The history was lost (Redis restarted empty): what came before is unknowable.
            self._history_lost(feed, Position(epoch, offset))
        self._fan_out(feed, offset, text_frame(body), body)
        # Delivered (to every member that could take it): only now is the offset passed.
        feed.epoch = epoch
        feed.offset = max(feed.offset, offset)

    def _fan_out(self, feed: ChannelFeed, offset: int, frame: bytes, body: bytes) -> None:
        """One frame to every member; a member that fails costs only itself, never the rest.

        No send changes `feed.members` synchronously (a dropped socket detaches from its own
        handler task), so the members are iterated without a copy.
        """
        kind: str | None = None
        for conn, membership in feed.members.items():
            try:
                if membership.pending is not None:
                    membership.pending.append((offset, frame))
                    continue
                if membership.events is not None:
                    if kind is None:
                        kind = _event_type(body)
                    if kind not in membership.events:
                        continue
                conn.send(frame)
            except Exception as exc:
                _send_failed(conn, exc)

    def _schedule(self, feed: ChannelFeed) -> None:
        """Send the channel's state now, or at the end of its coalescing window."""
        if feed.timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = feed.last_sent + self._coalesce - loop.time()
        if wait <= 0:
            self._send_state(feed)
        else:
            feed.timer = loop.call_later(wait, self._send_state, feed)

    def _send_state(self, feed: ChannelFeed) -> None:
        feed.timer = None
        feed.last_sent = asyncio.get_running_loop().time()
        assert feed.video is not None
        frame = feed.video.frame(feed.offset)
        for conn, membership in feed.members.items():
            if membership.pending is None and membership.wants("video_update"):
                try:
                    conn.send(frame)
                except Exception as exc:
                    _send_failed(conn, exc)

    def _on_following(self, feed: ChannelFeed, event: dict[str, Any]) -> None:
        user_id = str(event.get("user_id"))
        for conn in list(feed.members):
            if conn.feed_follows is None:
                continue
            if event.get("action") == "added":
                self._spawn(self.follow_clips(conn, [UUID(user_id)]))
            else:
                self.unfollow_clips(conn, user_id)

    def _on_reconnect(self) -> None:
        """Redis pub/sub is back: fetch what each channel missed, refresh counters and presence."""
        for feed in list(self.feeds.values()):
            if feed.epoch is not None and not feed.recovering:
                self._spawn(self._recover(feed))
            if feed.video is not None:
                self._spawn(self._refresh_counts(feed))
                self._presence_dirty.add(feed.name)

    async def _recover(self, feed: ChannelFeed) -> None:
        if feed.recovering:
            return
        feed.recovering = True
        try:
            while True:
                assert feed.epoch is not None
                try:
                    recovery = await history.since(
                        self._redis, feed.name, feed.epoch, feed.offset, self.settings.history_size
                    )
                    break
                except Exception as exc:  # Redis away again: try until it answers or we stop
                    logger.warning("recovering %s failed, retrying: %r", feed.name, exc)
                    await asyncio.sleep(0.5)
            if recovery.recovered:
                for offset, body in recovery.frames:
                    self._fan_out(feed, offset, text_frame(body), body)
            else:
                self._history_lost(feed, recovery.position)
            feed.epoch = recovery.position.epoch
            feed.offset = feed.floor = max(feed.offset, recovery.position.offset)
        finally:
            feed.recovering = False
            held, feed.held = feed.held, []
        for epoch, offset, body in held:
            self._on_history(feed, epoch, offset, body)

    def _history_lost(self, feed: ChannelFeed, position: Position) -> None:
        """Tell members their view of the channel may have a hole: reload it over REST."""
        logger.info("history of %s lost; members told to reload", feed.name)
        notice = messages.subscribed(None, feed.name, position.offset, position.epoch, False)
        for conn, membership in feed.members.items():
            if membership.pending is None and not membership.via_feed:
                try:
                    conn.send(notice)
                except Exception as exc:
                    _send_failed(conn, exc)
        feed.epoch, feed.offset, feed.floor = position.epoch, position.offset, position.offset

    async def _refresh_counts(self, feed: ChannelFeed) -> None:
        assert feed.video is not None
        try:
            counts = await self._load_counts(UUID(feed.video.video_id))
        except Exception as exc:
            logger.warning("refreshing counters of %s failed: %r", feed.name, exc)
            return
        if counts is not None and feed.video.merge(counts):
            self._schedule(feed)

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
                    self._presence_dirty.update(n for n, f in self.feeds.items() if f.video)
                await self._report_presence()
            except Exception as exc:
                logger.warning("presence report failed: %r", exc)
            self._close_unproven()
            if now >= next_heartbeat:
                next_heartbeat = now + self.settings.heartbeat
                self._heartbeat()

    async def _report_presence(self) -> None:
        if not self._presence_dirty:
            return
        dirty, self._presence_dirty = self._presence_dirty, set()
        counts = {}
        for name in dirty:
            feed = self.feeds.get(name)
            counts[name] = len(feed.members) if feed is not None else 0
        try:
            await self._presence.report(counts)
        except BaseException:
            self._presence_dirty |= dirty
            raise
        for name, count in counts.items():
            feed = self.feeds.get(name)
            if count == 0 and feed is not None and not feed.members:
                del self.feeds[name]

    def _close_unproven(self) -> None:
        now = time.monotonic()
        late = [conn for conn, deadline in self._unproven.items() if deadline < now]
        for conn in late:
            del self._unproven[conn]
            conn.close(CloseCode.UNAUTHORIZED, "no auth or subscription in time")

    def _heartbeat(self) -> None:
        """Ping every socket; drop the ones that missed two; warn and close expiring tokens."""
        wall = time.time()
        warn_before = 2 * self.settings.heartbeat
        for conn in list(self.connections):
            if conn.missed_pongs >= 2:
                conn.close(CloseCode.NO_PONG, "no pong")
                continue
            if conn.expires_at <= wall:
                conn.close(CloseCode.UNAUTHORIZED, "token expired")
                continue
            if not conn.warned_expiry and conn.expires_at - wall < warn_before:
                conn.warned_expiry = True
                conn.send(messages.TOKEN_EXPIRING)
            conn.missed_pongs += 1
            conn.send(PING_FRAME)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _send_failed(conn: Connection, exc: Exception) -> None:
    """A socket's send raised: drop that socket (logged), and carry on with the others."""
    logger.warning("dropping socket %s: sending to it failed: %r", conn.session, exc)
    with contextlib.suppress(Exception):
        conn.drop(exc)


def _event_type(body: bytes) -> str:
    """The `type` of an event JSON without parsing it: bus events start with it."""
    if body.startswith(b'{"type":"'):
        return body[9 : body.index(b'"', 9)].decode()
    return str(orjson.loads(body).get("type"))
