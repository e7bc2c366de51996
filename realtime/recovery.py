"""History recovery: each channel's position, `since` on subscribe, and gaps.

Every history event carries its channel's epoch and offset, and each channel remembers the
highest offset it delivered. `HistoryRecovery` works out where a joining socket starts (and what
it missed, with `since`): from what the channel knows already while it is watched here (its
position, and the last events it delivered, `ChannelFeed.recent`), or from a read of its Redis
history shared by every socket joining at the same moment. When an offset arrives past a gap, or
after a Redis reconnect, it fetches what the channel missed from its history and delivers it before
anything newer; when that history is gone it tells the members `subscribed {recovered: false}` so
they reload over REST.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pubsub import history
from pubsub.history import Position
from realtime import messages
from realtime.channels import ChannelFeed, event_type, fan_out, flush, send_failed
from realtime.connection import Membership
from realtime.wire import payload_of, text_frame
from reelwire.telemetry import REALTIME

logger = logging.getLogger(__name__)

RETRY_PAUSE = 0.5  # between attempts to read a history while Redis is away
RECENT_EVENTS = 128  # events a watched channel keeps for sockets resuming from them
RECENT_SECONDS = 60.0  # and for how long


@dataclass(frozen=True, slots=True)
class Start:
    """Where a joining socket starts: the channel's position, and what it missed since the
    position it gave (as ready frames) when `recovered`."""

    position: Position
    recovered: bool
    frames: Sequence[tuple[int, bytes]] = ()


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """One read of a channel's history for the sockets joining it together: its position and
    the events after the earliest offset any of them gave (as frames, up to the position)."""

    position: Position
    after: int | None
    frames: Sequence[tuple[int, bytes]]


class HistoryRecovery:
    """Keeps every channel's delivered position whole, filling gaps from its Redis history."""

    def __init__(
        self, redis: Any, history_size: int, spawn: Callable[[Awaitable[Any]], None]
    ) -> None:
        self._redis = redis
        self.history_size = history_size
        self._spawn = spawn

    # --- a socket joining ---------------------------------------------------------------------

    @staticmethod
    def local_start(feed: ChannelFeed, since: Position | None) -> Start | None:
        """Where a socket joining a channel watched here starts, from what the channel knows; None
        when only its Redis history can tell (it gave a position this process has not reached,
        of another epoch, or older than the events kept in `recent`)."""
        assert feed.epoch is not None
        top = Position(feed.epoch, feed.offset)
        if since is None:
            return Start(top, False)
        if since.epoch != feed.epoch or since.offset > feed.offset:
            return None
        if since.offset == feed.offset:
            return Start(top, True)
        recent = feed.recent
        if not recent or recent[0][0] > since.offset + 1 or recent[-1][0] != feed.offset:
            return None
        skip = since.offset + 1 - recent[0][0]
        frames = [(offset, frame) for offset, frame, _ in list(recent)[skip:]]
        return Start(top, True, frames)

    def queue_read(self, pipe: Any, channel: str, after: int | None) -> None:
        """Queue a history read on the caller's pipeline: the position, and the events after
        `after` when some joining socket gave a position."""
        history.queue_position(pipe, channel)
        if after is not None:
            history.queue_after(pipe, channel, after, self.history_size)

    @staticmethod
    def replies(after: int | None) -> int:
        """How many replies `queue_read` adds."""
        return history.POSITION_COMMANDS + (after is not None)

    @staticmethod
    def read_from(replies: Sequence[Any], after: int | None) -> HistoryRead:
        """The `HistoryRead` from the replies of `queue_read` (each frame built once, for every
        socket that missed it)."""
        position = history.position_from(replies)
        frames: list[tuple[int, bytes]] = []
        if after is not None:
            entries = replies[history.POSITION_COMMANDS]
            frames = [
                (offset, text_frame(body))
                for offset, body in history.frames_of(entries, position.offset)
            ]
        return HistoryRead(position, after, frames)

    def start_from(self, read: HistoryRead, since: Position | None) -> Start:
        """Where one of the sockets a shared read was made for starts."""
        if since is None:
            return Start(read.position, False)
        assert read.after is not None and read.after <= since.offset
        recovery = history.recovery_from(
            read.position, since.epoch, since.offset, read.frames, self.history_size
        )
        return Start(recovery.position, recovery.recovered, recovery.frames)

    @staticmethod
    def learn(feed: ChannelFeed, read: HistoryRead) -> None:
        """Keep the events a shared read brought in `recent`, where they join up with it."""
        if feed.epoch != read.position.epoch or not read.frames:
            return
        recent = feed.recent
        end = recent[0][0] - 1 if recent else feed.offset
        older = [item for item in read.frames if item[0] <= end]
        room = RECENT_EVENTS - len(recent)
        if not older or older[-1][0] != end or room <= 0:
            return
        older = older[-room:]
        if older[-1][0] - older[0][0] + 1 != len(older):
            return
        now = time.monotonic()
        recent.extendleft((offset, frame, now) for offset, frame in reversed(older))

    @staticmethod
    def catch_up(
        out: list[bytes],
        feed: ChannelFeed,
        membership: Membership,
        start: Start,
        *,
        asked: bool,
        message_id: Any,
    ) -> int:
        """Add `subscribed` and the missed events to what the socket is sent (`out`); return the
        socket's position.

        `asked`: the client gave `since`, so `recovered` tells it whether the replay is whole.
        """
        top = start.position
        if feed.epoch is None:
            feed.epoch, feed.offset = top.epoch, max(feed.offset, top.offset)
        recovered = start.recovered and asked
        if asked:
            REALTIME.client_recoveries += 1
        out.append(messages.subscribed(message_id, feed.name, top.offset, top.epoch, recovered))
        events = membership.events
        for _offset, frame in start.frames:
            if events is None or event_type(payload_of(frame)) in events:
                out.append(frame)
        return top.offset

    @staticmethod
    def forget_stale(feeds: Iterable[ChannelFeed]) -> None:
        """Drop what channels keep in `recent` past RECENT_SECONDS."""
        old = time.monotonic() - RECENT_SECONDS
        for feed in feeds:
            recent = feed.recent
            while recent and recent[0][2] < old:
                recent.popleft()

    # --- events from Redis --------------------------------------------------------------------

    def on_history(self, feed: ChannelFeed, epoch: str, offset: int, body: bytes) -> None:
        """A history event: deliver it in order, or hold it while a gap is filled."""
        if feed.recovering:
            feed.held.append((epoch, offset, body))
            return
        if feed.epoch is not None and epoch == feed.epoch:
            if offset <= feed.floor:
                return  # already delivered by a recovery
            if offset > feed.offset + 1:
                feed.held.append((epoch, offset, body))
                self._spawn(self.recover(feed))
                return
        elif feed.epoch is not None:
            # The history was lost (Redis restarted empty): what came before is unknowable.
            self._history_lost(feed, Position(epoch, offset))
        self._deliver(feed, offset, body)
        # Delivered (to every member that could take it): only now is the offset passed.
        feed.epoch = epoch
        feed.offset = max(feed.offset, offset)

    @staticmethod
    def _deliver(feed: ChannelFeed, offset: int, body: bytes) -> None:
        frame = text_frame(body)
        fan_out(feed, offset, frame, body)
        recent = feed.recent
        if recent and recent[-1][0] != offset - 1:
            recent.clear()
        recent.append((offset, frame, time.monotonic()))
        if len(recent) > RECENT_EVENTS:
            recent.popleft()

    def on_reconnect(self, feed: ChannelFeed) -> None:
        """Redis pub/sub is back: fetch what the channel missed meanwhile."""
        if feed.epoch is not None and not feed.recovering:
            self._spawn(self.recover(feed))

    async def recover(self, feed: ChannelFeed) -> None:
        """Deliver what the channel missed past its offset, then the events held meanwhile."""
        if feed.recovering:
            return
        feed.recovering = True
        REALTIME.channel_recoveries += 1
        try:
            while True:
                assert feed.epoch is not None
                try:
                    recovery = await history.since(
                        self._redis, feed.name, feed.epoch, feed.offset, self.history_size
                    )
                    break
                except Exception as exc:  # Redis away again: try until it answers or we stop
                    logger.warning("recovering %s failed, retrying: %r", feed.name, exc)
                    await asyncio.sleep(RETRY_PAUSE)
            if recovery.recovered:
                for offset, body in recovery.frames:
                    self._deliver(feed, offset, body)
            else:
                self._history_lost(feed, recovery.position)
            feed.epoch = recovery.position.epoch
            feed.offset = feed.floor = max(feed.offset, recovery.position.offset)
        finally:
            feed.recovering = False
            held, feed.held = feed.held, []
        for epoch, offset, body in held:
            self.on_history(feed, epoch, offset, body)

    def _history_lost(self, feed: ChannelFeed, position: Position) -> None:
        """Tell members their view of the channel may have a hole: reload it over REST."""
        logger.info("history of %s lost; members told to reload", feed.name)
        notice = messages.subscribed(None, feed.name, position.offset, position.epoch, False)
        flush(feed)  # the events before the notice go first
        for conn, membership in feed.members.items():
            if membership.pending is None and not membership.via_feed:
                try:
                    conn.send(notice)
                except Exception as exc:
                    send_failed(conn, exc)
        feed.epoch, feed.offset, feed.floor = position.epoch, position.offset, position.offset
        feed.recent.clear()
