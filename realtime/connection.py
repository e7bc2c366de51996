"""One client socket: what it may do, what it is subscribed to, and how bytes reach it.

Only the endpoint's handler task reads the socket. Everything written goes through `send`: while
the transport has room and nothing is waiting, a frame goes straight to the transport (no task
switch, no copy); once the peer stops keeping up, frames wait in a bounded queue that one writer
task drains as the transport drains. Past the bound (bytes or messages) the socket is closed
with CloseCode.SLOW (4008 "slow"), which costs the others nothing: `send` never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from realtime.close_codes import CloseCode
from reelwire.domain.context import Principal
from reelwire.telemetry import REALTIME

logger = logging.getLogger(__name__)

ABORT_AFTER_CLOSE = 5.0  # a peer that does not read its close frame in time is cut off


@dataclass(frozen=True)
class Limits:
    """Per-socket limits (PROTOCOL.md), from settings."""

    queue_bytes: int
    queue_messages: int
    max_subscriptions: int
    messages_per_second: int


@dataclass(eq=False)
class Membership:
    """One socket's subscription to one channel."""

    channel: str
    events: frozenset[str] | None = None  # the CLUTCH API's filter; None passes everything
    pending: list[tuple[int, bytes]] | None = field(default_factory=list)  # until caught up
    acquired: bool = False  # holds a reference on the Redis subscription
    via_feed: bool = False  # joined on the socket's behalf by feed:clips

    def wants(self, kind: str) -> bool:
        """Whether the filter lets an event of this type (or video_update field) through."""
        return self.events is None or kind in self.events


class Connection:
    """A live socket and its state; the hub writes to it, the handler reads from it."""

    __slots__ = (
        "_overruns",
        "_protocol",
        "_queue",
        "_queued_bytes",
        "_refilled",
        "_tokens",
        "_transport",
        "_writer",
        "closed",
        "expires_at",
        "feed_follows",
        "limits",
        "memberships",
        "missed_pongs",
        "opened_at",
        "principal",
        "remote",
        "session",
        "warned_expiry",
        "ws",
    )

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, session: str, limits: Limits
    ) -> None:
        self.ws = ws
        self.session = session
        self.remote = request.remote or "unknown"
        self.limits = limits
        self.principal: Principal | None = None
        self.expires_at = math.inf
        self.warned_expiry = False
        self.memberships: dict[str, Membership] = {}
        self.feed_follows: set[str] | None = None  # user ids, while subscribed to feed:clips
        self.missed_pongs = 0
        self.opened_at = time.monotonic()
        self.closed = False
        self._transport: Any = request.transport
        self._protocol: Any = request.protocol
        self._queue: deque[bytes] | None = None
        self._queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None
        self._tokens = float(limits.messages_per_second)
        self._refilled = time.monotonic()
        self._overruns = 0

    @property
    def subscriptions(self) -> int:
        """Channels the client asked for (feed:clips counts once)."""
        return sum(1 for m in self.memberships.values() if not m.via_feed) + (
            1 if self.feed_follows is not None else 0
        )

    # --- writing ----------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Queue a ready frame; never waits. A socket past its bound is closed as slow."""
        if self.closed:
            return
        try:
            queue = self._queue
            if queue is None:
                if not self._protocol.writing_paused:
                    self._transport.write(frame)
                    return
                queue = self._queue = deque()
                self._writer = asyncio.create_task(self._drain(), name=f"ws-writer-{self.session}")
            queue.append(frame)
            self._queued_bytes += len(frame)
            limits = self.limits
            if self._queued_bytes > limits.queue_bytes or len(queue) > limits.queue_messages:
                REALTIME.slow += 1
                self.close(CloseCode.SLOW, "slow")
        except Exception as exc:
            # A transport that closed under us (uvloop raises RuntimeError, asyncio's after
            # write_eof too) or anything else: this socket is gone, the caller's fan-out is not.
            self.drop(exc)

    def drop(self, exc: BaseException | None = None) -> None:
        """The socket cannot be written any more: cut it off now, without a close handshake.

        Never raises. The handler then sees the connection lost and detaches it from the hub.
        """
        if self.closed:
            return
        self.closed = True
        logger.debug("socket %s dropped: write failed: %r", self.session, exc)
        self._queue = None
        self._queued_bytes = 0
        writer, self._writer = self._writer, None
        with contextlib.suppress(Exception):
            if writer is not None and writer is not asyncio.current_task():
                writer.cancel()
        with contextlib.suppress(Exception):
            _abort(self._transport)

    async def _drain(self) -> None:
        try:
            while True:
                if self._protocol.writing_paused:
                    await self._protocol._drain_helper()  # aiohttp's own flow-control wait
                queue = self._queue
                if self.closed or not queue:
                    self._queue = None
                    return
                frames = b"".join(queue)
                queue.clear()
                self._queued_bytes = 0
                self._transport.write(frames)
        except Exception as exc:
            self.drop(exc)
        finally:
            if not self.closed:
                self._writer = None

    def close(self, code: CloseCode, reason: str) -> None:
        """Close with a code; queued frames are dropped. Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        self._queue = None
        self._queued_bytes = 0
        if self._writer is not None:
            self._writer.cancel()
        # The task is referenced by the slot the writer used, so it cannot be collected early.
        self._writer = asyncio.create_task(
            self._close(code, reason), name=f"ws-close-{self.session}"
        )

    async def finish(self) -> None:
        """Called by the handler as it returns: complete a close begun elsewhere, or close."""
        if not self.closed and self.ws.closed and self._writer is None:
            self.closed = True  # the peer closed it and was answered: nothing left to do
            return
        if not self.closed:
            self.close(CloseCode.NORMAL, "")
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _close(self, code: CloseCode, reason: str) -> None:
        asyncio.get_running_loop().call_later(ABORT_AFTER_CLOSE, _abort, self._transport)
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode())

    # --- reading limits ---------------------------------------------------------------------

    def admit(self) -> bool | None:
        """Count an incoming message: True to handle it, False to refuse it, None to hang up.

        A token bucket of `messages_per_second`; a client that keeps sending after its
        refusals (another second's worth) is disconnected.
        """
        now = time.monotonic()
        rate = self.limits.messages_per_second
        self._tokens = min(float(rate), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._overruns = 0
            return True
        self._overruns += 1
        return None if self._overruns > rate else False


def _abort(transport: Any) -> None:
    if transport is not None and not transport.is_closing():
        transport.abort()
