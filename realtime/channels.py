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
        "epoch",
        "fences",
        "floor",
        "held",
        "joining",
        "last_sent",
        "members",
        "name",
        "offset",
        "reading",
        "recent",
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
    ) -> None:
        self.feeds: dict[str, ChannelFeed] = {}
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
            feed = self.feeds[channel] = ChannelFeed(channel)
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


def fan_out(feed: ChannelFeed, offset: int, frame: bytes, body: bytes) -> None:
    """One frame to every member; a member that fails costs only itself, never the rest.

    A member still catching up buffers it. No send changes `feed.members` synchronously (a
    dropped socket detaches from its own handler task), so the members are iterated without a
    copy.
    """
    kind: str | None = None
    sent = 0
    for conn, membership in feed.members.items():
        try:
            if membership.pending is not None:
                membership.pending.append((offset, frame))
                continue
            if membership.events is not None:
                if kind is None:
                    kind = event_type(body)
                if kind not in membership.events:
                    continue
            conn.send(frame)
            sent += 1
        except Exception as exc:
            send_failed(conn, exc)
    REALTIME.delivered += sent


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
