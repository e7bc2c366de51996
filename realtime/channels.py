"""Channel membership: which sockets of this process watch which channel, and fan-out to them.

`Channels` owns the `ChannelFeed` of every channel with a local member and this process's Redis
subscriptions (pubsub.subscriber): one per channel, reference-counted by the memberships that
hold it, whatever the number of local sockets. `fan_out` hands one ready frame to every member
of a channel; a member that fails costs only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from pubsub.subscriber import ChannelSubscriber
from realtime.connection import Connection, Membership
from reelwire.telemetry import REALTIME

if TYPE_CHECKING:
    from realtime.coalescing import VideoState
    from reelwire.domain.videos import Watchable

logger = logging.getLogger(__name__)


class ChannelFeed:
    """One channel as this process sees it: its local members, its position and its state.

    `members` is membership's; `epoch`, `offset`, `floor`, `recovering`, `held` and `recent` are
    history recovery's (realtime.recovery); `video`, `timer` and `last_sent` are coalescing's
    (realtime.coalescing); `access`, `fences`, `joining` and `reading` are the hub's, for sockets
    joining (realtime.hub).

    What it knows is good while the channel stays subscribed: the position and `recent` because
    every event published since reaches it, `access` (who may watch its video) because every
    change of the video's metadata sends a fence notice on the channel (`fences` counts them).
    """

    __slots__ = (
        "access",
        "batch",
        "delay",
        "epoch",
        "fences",
        "floor",
        "flushing",
        "held",
        "joining",
        "last_sent",
        "members",
        "name",
        "offset",
        "reading",
        "recent",
        "recovering",
        "ride",
        "timer",
        "video",
    )

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name = name
        # Frames waiting for the channel's next write: (offset, frame, body, state); `body` the
        # event's JSON (None for a video state), `state` a coalesced video_update, which members
        # still catching up do not buffer (they are sent the state once caught up).
        self.batch: list[tuple[int, bytes, bytes | None, bool]] = []
        self.delay = delay  # how long frames wait for company (seconds; 0: the loop's turn)
        self.flushing: asyncio.Handle | None = None
        # Called with the feed when a write goes out: a coalesced video state that is waiting
        # for its window rides along instead of costing a write of its own (coalescing's).
        self.ride: Callable[[ChannelFeed], None] | None = None
        self.members: dict[Connection, Membership] = {}
        self.epoch: str | None = None
        self.offset = 0  # highest offset delivered
        self.floor = 0  # offsets up to this were delivered by a recovery; later copies are dropped
        self.recovering = False
        self.held: list[tuple[str, int, bytes]] = []
        # The last events delivered, (offset, frame, when), consecutive up to `offset`.
        self.recent: deque[tuple[int, bytes, float]] = deque()
        self.video: VideoState | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.last_sent = -math.inf
        self.access: Watchable | None = None
        self.fences = 0
        self.joining: list[tuple[Any, asyncio.Future[Any]]] = []  # (since, waiter)
        self.reading = False

    def unwatched(self) -> None:
        """The last local member left: the channel is unsubscribed, so what it knew goes stale."""
        if self.flushing is not None:
            self.flushing.cancel()
            self.flushing = None
        self.batch.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.epoch, self.offset, self.floor = None, 0, 0
        self.recent.clear()
        self.forget_access()
        if self.video is not None:
            # kept until its zero count is reported (see PresenceReporter.report)
            self.video.viewer_count = None

    def forget_access(self) -> None:
        """Who may watch the video is to be read again (its metadata changed, or notices about
        it may have been missed); a read in flight is not to be remembered either."""
        self.access = None
        self.fences += 1


class Channels:
    """Every channel with a local member, and the Redis subscriptions behind them."""

    def __init__(
        self,
        redis: Any,
        on_message: Callable[[str, bytes], None],
        on_reconnect: Callable[[], None],
        write_delay: float = 0.0,
    ) -> None:
        self.feeds: dict[str, ChannelFeed] = {}
        self.write_delay = write_delay
        self.subscriber = ChannelSubscriber(redis, on_message, on_reconnect)

    async def start(self) -> None:
        """Connect to Redis pub/sub."""
        await self.subscriber.start()

    async def stop(self) -> None:
        """Disconnect from Redis pub/sub."""
        await self.subscriber.stop()

    def add(self, conn: Connection, membership: Membership) -> ChannelFeed:
        """Make the socket a member of the channel (buffering until it has caught up)."""
        channel = membership.channel
        conn.memberships[channel] = membership
        feed = self.feeds.get(channel)
        if feed is None:
            feed = self.feeds[channel] = ChannelFeed(channel, self.write_delay)
        feed.members[conn] = membership
        return feed

    async def acquire(self, membership: Membership) -> None:
        """Hold a reference on the channel's Redis subscription for this membership."""
        await self.subscriber.acquire(membership.channel)
        membership.acquired = True

    def hold(self, membership: Membership) -> bool:
        """`acquire` without waiting, for a channel subscribed and live already; False if not."""
        if membership.acquired or self.subscriber.hold(membership.channel):
            membership.acquired = True
            return True
        return False

    def remove(self, conn: Connection, channel: str) -> bool:
        """Take the socket out of the channel; False if it was not a member."""
        membership = conn.memberships.pop(channel, None)
        if membership is None:
            return False
        feed = self.feeds.get(channel)
        if feed is not None:
            feed.members.pop(conn, None)
            if not feed.members:
                feed.unwatched()
                if feed.video is None:
                    del self.feeds[channel]
        if membership.acquired:
            self.subscriber.release(channel)
        return True

    def members(self, channel: str) -> int:
        """How many local sockets watch the channel."""
        feed = self.feeds.get(channel)
        return len(feed.members) if feed is not None else 0

    def forget_if_unwatched(self, channel: str) -> None:
        """Drop a channel kept only for its video state, once nobody here watches it."""
        feed = self.feeds.get(channel)
        if feed is not None and not feed.members:
            del self.feeds[channel]


# A channel's video state in a batch: its frame is made as the write goes out, so it carries
# the latest counters.
STATE_ENTRY: tuple[int, bytes, bytes | None, bool] = (0, b"", None, True)


def fan_out(feed: ChannelFeed, offset: int, frame: bytes, body: bytes) -> None:
    """One frame for every member, in the channel's next write (see `flush`)."""
    queue(feed, (offset, frame, body, False))


def queue(feed: ChannelFeed, entry: tuple[int, bytes, bytes | None, bool]) -> None:
    """Add a frame to the channel's next write, and see that the write happens."""
    feed.batch.append(entry)
    if feed.flushing is None:
        loop = asyncio.get_running_loop()
        if feed.delay > 0:
            feed.flushing = loop.call_later(feed.delay, flush, feed)
        else:
            feed.flushing = loop.call_soon(flush, feed)


def flush(feed: ChannelFeed) -> None:
    """Write the channel's waiting frames, each member's in one write; a member that fails
    costs only itself, never the rest.

    Call it before anything that depends on what members were sent so far (a socket catching
    up, a notice that must follow the events before it). A member still catching up buffers the
    events; one whose filter passes only some of them gets those. No send changes
    `feed.members` synchronously (a dropped socket detaches from its own handler task), so the
    members are iterated without a copy.
    """
    if feed.flushing is not None:
        feed.flushing.cancel()
        feed.flushing = None
    if feed.ride is not None and feed.batch and feed.members:
        feed.ride(feed)
    batch = feed.batch
    if not batch:
        return
    feed.batch = []
    if feed.video is not None:
        state = feed.video.frame(feed.offset)
        batch = [(0, state, None, True) if entry[3] else entry for entry in batch]
    else:
        batch = [entry for entry in batch if not entry[3]]
        if not batch:
            return
    frame = batch[0][1] if len(batch) == 1 else b"".join(entry[1] for entry in batch)
    kinds: list[str] | None = None
    sent = writes = 0
    for conn, membership in feed.members.items():
        try:
            if membership.pending is not None:
                membership.pending.extend((o, f) for o, f, _, state in batch if not state)
                continue
            if membership.events is None:
                conn.send(frame)
                sent += len(batch)
                writes += 1
                continue
            if kinds is None:
                kinds = [
                    "video_update" if body is None else event_type(body) for _, _, body, _ in batch
                ]
            mine = [e[1] for e, kind in zip(batch, kinds, strict=True) if kind in membership.events]
            if mine:
                conn.send(mine[0] if len(mine) == 1 else b"".join(mine))
                sent += len(mine)
                writes += 1
        except Exception as exc:
            send_failed(conn, exc)
    REALTIME.delivered += sent
    REALTIME.writes += writes


def send_failed(conn: Connection, exc: Exception) -> None:
    """A socket's send raised: drop that socket (logged), and carry on with the others."""
    logger.warning("dropping socket %s: sending to it failed: %r", conn.session, exc)
    with contextlib.suppress(Exception):
        conn.drop(exc)


def event_type(body: bytes) -> str:
    """The `type` of an event JSON without parsing it: bus events start with it."""
    if body.startswith(b'{"type":"'):
        return body[9 : body.index(b'"', 9)].decode()
    return str(orjson.loads(body).get("type"))
