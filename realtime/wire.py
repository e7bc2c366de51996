"""WebSocket frames built once and written as bytes.

A server frame is never masked, and Reelwire negotiates no compression, so the frame for an
event is the same bytes for every socket: the hub builds it once per process and each socket's
transport only copies it. (aiohttp's `send_str` would rebuild the header per socket.)
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

_TEXT = 0x81  # FIN + text
_CLOSE = 0x88
_PING = 0x89
_PONG = 0x8A


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", first, size) + payload
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def text_frame(payload: bytes) -> bytes:
    """A complete text frame carrying `payload` (UTF-8 JSON)."""
    return _frame(_TEXT, payload)


def payload_of(frame: bytes) -> bytes:
    """The payload of a frame built here (unmasked)."""
    size = frame[1]
    return frame[2:] if size < 126 else frame[4:] if size == 126 else frame[10:]


def encode(message: dict[str, Any]) -> bytes:
    """A message as a ready-to-write text frame."""
    return _frame(_TEXT, orjson.dumps(message))


def pong_frame(payload: bytes) -> bytes:
    """The answer to a client's ping."""
    return _frame(_PONG, payload[:125])


PING_FRAME = _frame(_PING, b"")
