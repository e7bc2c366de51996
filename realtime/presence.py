"""Presence: the viewer counts of video channels, shared across processes.

Each process reports how many of its sockets watch each video (pubsub.presence) and refreshes
its share every PRESENCE_TTL_SECONDS / 3; a process that dies stops refreshing and its share
expires. `PresenceReporter` remembers which channels' local counts changed and reports them on
the hub's tick; a video channel nobody here watches is forgotten once its zero is reported.
"""

from __future__ import annotations

from typing import Any

from pubsub.presence import Presence
from realtime.channels import Channels


class PresenceReporter:
    """This process's share of every video's viewer count."""

    def __init__(self, redis: Any, node: str, ttl: float, channels: Channels) -> None:
        self._presence = Presence(redis, node, ttl)
        self._channels = channels
        self._dirty: set[str] = set()

    def changed(self, channel: str) -> None:
        """The channel's local count changed (or must be reported again)."""
        self._dirty.add(channel)

    def refresh_all(self) -> None:
        """Report every video channel again on the next report (before their shares expire)."""
        self._dirty.update(n for n, f in self._channels.feeds.items() if f.video)

    async def report(self) -> None:
        """Report the changed counts; on failure they stay changed for the next attempt."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        counts = {name: self._channels.members(name) for name in dirty}
        try:
            await self._presence.report(counts)
        except BaseException:
            self._dirty |= dirty
            raise
        for name, count in counts.items():
            if count == 0:
                self._channels.forget_if_unwatched(name)

    async def withdraw(self) -> None:
        """The process is stopping: its share of every video it watched is zero."""
        videos = [name for name, feed in self._channels.feeds.items() if feed.video is not None]
        await self._presence.report(dict.fromkeys(videos, 0))
