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
- `VideoWatch` (the domain, handed in): who may watch a video, and its counters.
- `realtime.presence.PresenceReporter`: viewer counts shared across processes.
- `realtime.liveness.Liveness`: heartbeats, token expiry, and the auth deadline of anonymous
  sockets.
- `realtime.clip_feed.ClipFeed`: `feed:clips` following whom its user follows.

The hub routes each message from Redis to the part it concerns, runs the housekeeping tick, and
owns the sockets' lifecycle (attach, join, leave, detach) and the process's (start, shutdown,
stop).

Joining costs as little Redis as the channel allows. A channel this process watches already knows
its position, its last events and (for a video) who may watch it and its counters, and all of it
stays true while it is subscribed (a change of the video's metadata sends a fence notice on the
channel): a socket joining it is answered from memory, after one barrier on the subscription
(`ChannelSubscriber.synced`, shared by every socket joining meanwhile, on any channel) that makes
sure no such notice is still on its way. Otherwise the sockets joining a channel at the same
moment share one pipelined read (the video, its live views, its viewers, the history's position
and what the earliest of them missed): the first one's read starts at once, and those arriving
while it is in flight share the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import orjson

from pubsub.bus import FENCE_PREFIX, HISTORY_PREFIX
from pubsub.history import Position
from pubsub.presence import Presence
from realtime import messages
from realtime.channels import ChannelFeed, Channels, fan_out, flush
from realtime.clip_feed import ClipFeed
from realtime.close_codes import CloseCode
from realtime.coalescing import Coalescer, LoadCounts
from realtime.connection import Connection, Membership
from realtime.liveness import Liveness
from realtime.presence import PresenceReporter
from realtime.recovery import HistoryRead, HistoryRecovery, Start
from realtime.wire import text_frame
from reelwire.domain.context import Principal
from reelwire.domain.errors import DomainError, NotFound, ServiceUnavailable
from reelwire.domain.videos import Watchable

logger = logging.getLogger(__name__)

PRESENCE_TICK = 0.5
STOP_SECONDS = 5.0  # how long stopping waits for a task before giving up on it
SHUTDOWN_BATCH = 500
SHUTDOWN_PAUSE = 0.05
RECENT_SWEEP = 5.0  # how often channels drop the recent events they keep past their time


class VideoWatch(Protocol):
    """What the hub asks the domain about the video of a `video:{id}` channel."""

    def trusted(self) -> bool:
        """Whether what this process remembers of videos may be believed now (no fence of its
        own is still waiting to reach Redis)."""

    async def read(
        self, video_id: UUID, also: Callable[[Any], None] | None = None
    ) -> tuple[Watchable, list[Any]]:
        """The video's `Watchable`, and the replies to what `also` queued on the same pipeline."""


@dataclass(frozen=True, slots=True)
class _Read:
    """One read shared by the sockets joining a channel together."""

    history: HistoryRead
    video: Watchable | None
    viewers: int | None


@dataclass(frozen=True)
class HubSettings:
    """What the hub needs from Settings."""

    coalesce_ms: int
    heartbeat: int
    auth_timeout: float
    history_size: int
    presence_ttl: float
    write_delay_ms: int = 0


class Hub:
    """All sockets of this process and the channels they watch."""

    def __init__(
        self,
        redis: Any,
        settings: HubSettings,
        *,
        node: str,
        load_counts: LoadCounts,
        videos: VideoWatch,
    ) -> None:
        self.node = node
        self._redis = redis
        self._videos = videos
        self.settings = settings
        self.connections: set[Connection] = set()
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.channels = Channels(
            redis, self._on_message, self._on_reconnect, settings.write_delay_ms / 1000
        )
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
        """Withdraw this process's presence and stop every task.

        The housekeeping tick is told to stop and ends at its next turn rather than being
        cancelled in the middle of a Redis call: redis-py can take a cancellation that races
        its own timeout for a timeout and retry, and the cancelled task then never ends (a
        shutdown waited on it for good). Every wait here is bounded."""
        self._stopping.set()
        if self._ticker is not None:
            await _ended(self._ticker, STOP_SECONDS)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_SECONDS)
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
        video: UUID | None = None,
        via_feed: bool = False,
        message_id: Any = None,
    ) -> None:
        """Add a socket to a channel and bring it up to date; for a video channel (`video`),
        only if the socket's user may watch the video (NotFound otherwise).

        The socket is a member (buffering) from the start, so nothing published while its
        position is read can slip between; then it gets `subscribed`, the missed messages when
        `since` was given, the buffered ones past its position, and, for a video, its counters.
        """
        membership = Membership(channel, events, via_feed=via_feed)
        feed = self.channels.add(conn, membership)
        try:
            if via_feed:  # nobody is told a position: everything from now on is new to it
                await self.channels.acquire(membership)
                start = None
            else:
                principal = conn.principal
                start = await self._starting_point(feed, membership, since, video, principal)
        except (Exception, asyncio.CancelledError) as exc:
            self.leave(conn, channel)
            if isinstance(exc, asyncio.CancelledError | DomainError):
                raise
            logger.warning("subscribing to %s failed: %r", channel, exc)
            raise ServiceUnavailable("Realtime service unavailable; try again") from exc
        if conn.memberships.get(channel) is not membership:
            return  # left (or closed) while we waited
        if video is not None:
            self.presence.changed(channel)
        flush(feed)  # what is waiting for the channel's next write: into the buffer first
        out: list[bytes] = []  # everything the socket is sent now, in one write
        seen = 0  # the socket's position: buffered events past it are new to it
        if start is not None:
            seen = self.recovery.catch_up(
                out, feed, membership, start, asked=since is not None, message_id=message_id
            )
        buffered, membership.pending = membership.pending or [], None
        for offset, frame in buffered:
            if offset == 0 or offset > seen:  # 0: an event kept in no history
                out.append(frame)
        if feed.video is not None and membership.wants("video_update"):
            out.append(feed.video.frame(feed.offset))
        if out:
            conn.send(out[0] if len(out) == 1 else b"".join(out))

    async def _starting_point(
        self,
        feed: ChannelFeed,
        membership: Membership,
        since: Position | None,
        video: UUID | None,
        viewer: Principal | None,
    ) -> Start:
        """Where the joining socket starts, from memory when the channel is watched here already,
        else from a read shared with the sockets joining together; NotFound for a video the
        socket's user may not watch."""
        if (
            self._known(feed, video)
            and (video is None or await self.channels.subscriber.synced())
            # Asked again: a fence notice may have arrived while the barrier was on its way.
            and self._known(feed, video)
            and self.channels.hold(membership)
        ):
            if feed.access is not None:
                feed.access.check(viewer)
            start = self.recovery.local_start(feed, since)
            if start is not None:
                return start
        if not membership.acquired:
            await self.channels.acquire(membership)
        waiter: asyncio.Future[_Read] = asyncio.get_running_loop().create_future()
        feed.joining.append((since, waiter))
        if not feed.reading:
            feed.reading = True
            self._spawn(self._read_for_joiners(feed, video))
        read = await waiter
        if read.video is not None:
            read.video.check(viewer)
            self.coalescer.track(feed, read.video.counts)
            assert feed.video is not None
            feed.video.merge({"viewer_count": read.viewers}, viewers_if_unknown=True)
        return self.recovery.start_from(read.history, since)

    def _known(self, feed: ChannelFeed, video: UUID | None) -> bool:
        """Whether the channel can answer a joining socket from memory: watched here with a
        position and no gap being filled, and for a video, who may watch it and its counters."""
        if feed.epoch is None or feed.recovering:
            return False
        if video is None:
            return True
        return (
            feed.access is not None
            and feed.video is not None
            and feed.video.viewer_count is not None
            and self._videos.trusted()
        )

    async def _read_for_joiners(self, feed: ChannelFeed, video: UUID | None) -> None:
        """Read the channel for the sockets waiting to join it, one read for all who were
        waiting when it started, until none is left."""
        batch: list[tuple[Any, asyncio.Future[_Read]]] = []
        try:
            while feed.joining:
                batch, feed.joining = feed.joining, []
                try:
                    read = await self._read_channel(feed, video, [since for since, _ in batch])
                except Exception as exc:
                    for _, waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                # Events published before the read may still be on their way on the pub/sub
                # connection: once they have arrived (buffered by the joining sockets, which drop
                # what their position covers), none of them reaches a socket a second time.
                await self.channels.subscriber.synced()
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_result(read)
        except asyncio.CancelledError:
            for _, waiter in (*batch, *feed.joining):
                waiter.cancel()
            feed.joining = []
            raise
        finally:
            feed.reading = False

    async def _read_channel(
        self, feed: ChannelFeed, video: UUID | None, sinces: list[Position | None]
    ) -> _Read:
        """One pipelined round trip: the channel's position, the events after the earliest
        position given, and for a video, the video itself and its viewer count."""
        after = min((since.offset for since in sinces if since is not None), default=None)
        fences = feed.fences

        def queue(pipe: Any) -> None:
            self.recovery.queue_read(pipe, feed.name, after)
            if video is not None:
                Presence.queue_total(pipe, feed.name)

        access: Watchable | None = None
        if video is not None:
            access, replies = await self._videos.read(video, queue)
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                queue(pipe)
                replies = await pipe.execute()
        read = self.recovery.read_from(replies, after)
        viewers: int | None = None
        if video is not None:
            viewers = int(replies[self.recovery.replies(after)] or 0)
        if self.channels.feeds.get(feed.name) is feed and feed.members and feed.fences == fences:
            # Still the subscription the read was made under (leaving it for good bumps fences).
            if feed.epoch is None:
                position = read.position
                feed.epoch, feed.offset = position.epoch, max(feed.offset, position.offset)
            self.recovery.learn(feed, read)
            if access is not None and access.exists:
                feed.access = access  # read while subscribed, and no fence notice since
        return _Read(read, access, viewers)

    def leave(self, conn: Connection, channel: str) -> bool:
        """Remove a socket from a channel; False if it was not there."""
        feed = self.channels.feeds.get(channel)
        if not self.channels.remove(conn, channel):
            return False
        if feed is not None and feed.video is not None:
            self.presence.changed(channel)
        return True

    async def _recheck_watchers(self, feed: ChannelFeed) -> None:
        """The video's metadata changed (made private, deleted): the sockets whose user may not
        watch it any more leave its channel and are told with `unsubscribed`."""
        try:
            access, _ = await self._videos.read(UUID(feed.name.partition(":")[2]))
        except Exception as exc:
            logger.warning("checking who may still watch %s failed: %r", feed.name, exc)
            return
        for conn, membership in list(feed.members.items()):
            if membership.via_feed:
                continue
            try:
                access.check(conn.principal)
            except NotFound:
                if self.leave(conn, feed.name):
                    conn.send(messages.unsubscribed(None, feed.name))

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
        prefix = payload[:2]
        if prefix == HISTORY_PREFIX:
            _, epoch, offset, body = payload.split(b" ", 3)
            self.recovery.on_history(feed, epoch.decode(), int(offset), body)
            return
        if prefix == FENCE_PREFIX:  # the video's metadata changed: who may watch is read again
            feed.forget_access()
            if feed.video is not None and feed.members:
                self._spawn(self._recheck_watchers(feed))
            return
        event = orjson.loads(payload[2:])
        if feed.video is not None and event.get("type") == "video_update":
            self.coalescer.on_update(feed, event)
        elif channel.startswith("follows:"):
            self.clip_feed.on_following(feed, event)
        else:
            fan_out(feed, 0, text_frame(payload[2:]), payload[2:])

    def _on_reconnect(self) -> None:
        """Redis pub/sub is back: fetch what each channel missed, refresh counters and presence,
        and read who may watch each video again (a fence notice may have been missed)."""
        for feed in list(self.channels.feeds.values()):
            feed.forget_access()
            self.recovery.on_reconnect(feed)
            if feed.video is not None:
                self._spawn(self.coalescer.refresh(feed))
                self.presence.changed(feed.name)

    # --- housekeeping -----------------------------------------------------------------------

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + self.settings.heartbeat
        next_refresh = loop.time()
        next_sweep = loop.time() + RECENT_SWEEP
        refresh_every = self.settings.presence_ttl / 3
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), PRESENCE_TICK)
            if self._stopping.is_set():
                return
            now = loop.time()
            if now >= next_sweep:
                next_sweep = now + RECENT_SWEEP
                self.recovery.forget_stale(self.channels.feeds.values())
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


async def _ended(task: asyncio.Task[Any], timeout: float) -> None:
    """Wait for a task that was told to stop; cancel it if it has not ended by `timeout`."""
    _, pending = await asyncio.wait({task}, timeout=timeout)
    if pending:
        task.cancel()
        await asyncio.wait({task}, timeout=timeout)
    if task.done() and not task.cancelled() and task.exception() is not None:
        logger.warning("%s ended with %r", task.get_name(), task.exception())
