"""History recovery: each channel's position, `since` on subscribe, and gaps.

Every history event carries its channel's epoch and offset, and each channel remembers the
highest offset it delivered. `HistoryRecovery` reads where a joining socket starts (and what it
missed, with `since`); when an offset arrives past a gap, or after a Redis reconnect, it fetches
what the channel missed from its history and delivers it before anything newer; when that history
is gone it tells the members `subscribed {recovered: false}` so they reload over REST.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pubsub import history
from pubsub.history import Position, Recovery
from realtime import messages
from realtime.channels import ChannelFeed, event_type, fan_out, send_failed
from realtime.connection import Connection, Membership
from realtime.wire import text_frame
from reelwire.telemetry import REALTIME

logger = logging.getLogger(__name__)

RETRY_PAUSE = 0.5  # between attempts to read a history while Redis is away


class HistoryRecovery:
    """Keeps every channel's delivered position whole, filling gaps from its Redis history."""

    def __init__(
        self, redis: Any, history_size: int, spawn: Callable[[Awaitable[Any]], None]
    ) -> None:
        self._redis = redis
        self._history_size = history_size
        self._spawn = spawn

    # --- a socket joining ---------------------------------------------------------------------

    async def starting_point(
        self, channel: str, *, since: Position | None, via_feed: bool
    ) -> Recovery | None:
        """Where a joining socket starts: the channel's position, plus what it missed `since`.

        None for a channel joined for feed:clips: nobody is told a position there, everything
        from now on is new to the socket.
        """
        if via_feed:
            return None
        if since is not None:
            return await history.since(
                self._redis, channel, since.epoch, since.offset, self._history_size
            )
        return Recovery(await history.position(self._redis, channel), False)

    @staticmethod
    def catch_up(
        conn: Connection,
        feed: ChannelFeed,
        membership: Membership,
        recovery: Recovery,
        *,
        asked: bool,
        message_id: Any,
    ) -> int:
        """Send the socket `subscribed` and the missed events; return the socket's position.

        `asked`: the client gave `since`, so `recovered` tells it whether the replay is whole.
        """
        top = recovery.position
        if feed.epoch is None:
            feed.epoch, feed.offset = top.epoch, max(feed.offset, top.offset)
        recovered = recovery.recovered and asked
        if asked:
            REALTIME.client_recoveries += 1
        conn.send(messages.subscribed(message_id, feed.name, top.offset, top.epoch, recovered))
        for _offset, body in recovery.frames:
            if membership.wants(event_type(body)):
                conn.send(text_frame(body))
        return top.offset

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
        fan_out(feed, offset, text_frame(body), body)
        # Delivered (to every member that could take it): only now is the offset passed.
        feed.epoch = epoch
        feed.offset = max(feed.offset, offset)

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
                        self._redis, feed.name, feed.epoch, feed.offset, self._history_size
                    )
                    break
                except Exception as exc:  # Redis away again: try until it answers or we stop
                    logger.warning("recovering %s failed, retrying: %r", feed.name, exc)
                    await asyncio.sleep(RETRY_PAUSE)
            if recovery.recovered:
                for offset, body in recovery.frames:
                    fan_out(feed, offset, text_frame(body), body)
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
        for conn, membership in feed.members.items():
            if membership.pending is None and not membership.via_feed:
                try:
                    conn.send(notice)
                except Exception as exc:
                    send_failed(conn, exc)
        feed.epoch, feed.offset, feed.floor = position.epoch, position.offset, position.offset
