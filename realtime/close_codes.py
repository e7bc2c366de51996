"""Every code a Reelwire socket is closed with, in one place (docs/protocol.md lists them).

The 1xxx codes are RFC 6455's; the 4xxx ones are ours, from the range it leaves to applications
(4001 and 4008 mirror HTTP's 401 and 408). Clients reconnect after RESTART and SLOW.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Why the server closed a socket."""

    NORMAL = 1000  # the socket's handler returned: the client closed, or reading failed
    NO_PONG = 1001  # "going away": two heartbeat pings went unanswered
    RATE_LIMITED = 1008  # "policy violation": kept sending after its RATE_LIMITED errors
    MESSAGE_TOO_BIG = 1009  # a message over WS_MAX_MESSAGE_BYTES; aiohttp sends it itself
    RESTART = 1012  # "service restart": the process is shutting down (sockets closed in batches)
    UNAUTHORIZED = 4001  # neither authenticated nor subscribed in time, or the token expired
    SLOW = 4008  # the outgoing queue (WS_QUEUE_BYTES / WS_QUEUE_MESSAGES) overflowed
