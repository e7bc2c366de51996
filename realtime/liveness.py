"""Heartbeats and the auth deadline: closing sockets that are gone, idle or no longer allowed.

An anonymous socket must authenticate or subscribe within WS_AUTH_TIMEOUT_SECONDS or it is
closed with CloseCode.UNAUTHORIZED. Every heartbeat each socket is pinged; one that missed two
pongs is closed with CloseCode.NO_PONG, one whose token expired with CloseCode.UNAUTHORIZED
(after a `token_expiring` warning two heartbeats before).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from realtime import messages
from realtime.close_codes import CloseCode
from realtime.connection import Connection
from realtime.wire import PING_FRAME


class Liveness:
    """The auth deadlines of unproven sockets, and the heartbeat of every socket."""

    def __init__(self, heartbeat: int, auth_timeout: float) -> None:
        self.heartbeat = heartbeat
        self._auth_timeout = auth_timeout
        self._unproven: dict[Connection, float] = {}  # neither authenticated nor subscribed yet

    def opened(self, conn: Connection) -> None:
        """A socket opened: an anonymous one has until its deadline to prove itself."""
        if conn.principal is None:
            self._unproven[conn] = time.monotonic() + self._auth_timeout

    def proven(self, conn: Connection) -> None:
        """The socket authenticated or subscribed: it is no longer closed for idling."""
        self._unproven.pop(conn, None)

    def closed(self, conn: Connection) -> None:
        """A socket closed."""
        self._unproven.pop(conn, None)

    def close_unproven(self) -> None:
        """Close the sockets whose deadline passed."""
        now = time.monotonic()
        late = [conn for conn, deadline in self._unproven.items() if deadline < now]
        for conn in late:
            del self._unproven[conn]
            conn.close(CloseCode.UNAUTHORIZED, "no auth or subscription in time")

    def beat(self, connections: Iterable[Connection]) -> None:
        """Ping every socket; drop the ones that missed two; warn and close expiring tokens."""
        wall = time.time()
        warn_before = 2 * self.heartbeat
        for conn in list(connections):
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
