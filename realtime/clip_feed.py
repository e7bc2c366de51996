"""`feed:clips` follow-tracking: a socket's clip feed follows whom its user follows.

A socket subscribed to feed:clips is joined, server-side, to the clip channel of every user its
user follows (`Connection.feed_follows` holds their ids) and to its user's `follows:` channel; a
`following` event there (a follow or unfollow while connected) joins or leaves that user's
clip channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol
from uuid import UUID

from pubsub import keys
from realtime.channels import ChannelFeed
from realtime.connection import Connection
from reelwire.domain.errors import ServiceUnavailable


class Join(Protocol):
    """Hub.join, as the clip feed uses it."""

    def __call__(self, conn: Connection, channel: str, *, via_feed: bool) -> Awaitable[None]: ...


class ClipFeed:
    """Keeps each feed:clips socket joined to the clip channels of the users it follows."""

    def __init__(
        self,
        join: Join,
        leave: Callable[[Connection, str], bool],
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self._join = join
        self._leave = leave
        self._spawn = spawn

    async def follow(self, conn: Connection, user_ids: Iterable[UUID]) -> None:
        """Subscribe the socket server-side to these users' clip channels."""
        follows = conn.feed_follows
        assert follows is not None
        new = [user_id for user_id in dict.fromkeys(user_ids) if str(user_id) not in follows]
        follows.update(str(user_id) for user_id in new)

        async def join(user_id: UUID) -> None:
            with contextlib.suppress(ServiceUnavailable):
                await self._join(conn, keys.clip_channel(user_id), via_feed=True)

        # Concurrently: a user following thousands would otherwise wait a round trip each.
        await asyncio.gather(*(join(user_id) for user_id in new))

    def unfollow(self, conn: Connection, user_id: str) -> None:
        """Stop delivering one user's clips to the socket."""
        if conn.feed_follows is not None and user_id in conn.feed_follows:
            conn.feed_follows.discard(user_id)
            self._leave(conn, keys.clip_channel(user_id))

    def on_following(self, feed: ChannelFeed, event: dict[str, Any]) -> None:
        """A `following` event on a user's `follows:` channel: adjust that user's feeds."""
        user_id = str(event.get("user_id"))
        for conn in list(feed.members):
            if conn.feed_follows is None:
                continue
            if event.get("action") == "added":
                self._spawn(self.follow(conn, [UUID(user_id)]))
            else:
                self.unfollow(conn, user_id)
