"""Builders for the server's own messages (PROTOCOL.md), each returned as a ready frame."""

from __future__ import annotations

from typing import Any

from realtime.wire import encode


def welcome(session: str, node: str, heartbeat: int) -> bytes:
    """The greeting sent as soon as a socket is open."""
    return encode({"type": "welcome", "session": session, "node": node, "heartbeat": heartbeat})


def error(
    message_id: Any,
    code: str,
    text: str,
    details: dict[str, Any] | None = None,
    field_errors: dict[str, list[str]] | None = None,
) -> bytes:
    """An error answer (seed 001's error object); the connection stays open."""
    body: dict[str, Any] = {"code": code, "message": text}
    if details:
        body["details"] = details
    if field_errors:
        body["field_errors"] = field_errors
    reply: dict[str, Any] = {"type": "error", "error": body}
    if message_id is not None:
        reply["id"] = message_id
    return encode(reply)


def reply(message_id: Any, kind: str, **fields: Any) -> bytes:
    """A typed answer to a client message, echoing its `id`."""
    body: dict[str, Any] = {"type": kind, **fields}
    if message_id is not None:
        body["id"] = message_id
    return encode(body)


def subscribed(message_id: Any, channel: str, offset: int, epoch: str, recovered: bool) -> bytes:
    """A subscription is live (or, unasked, that a channel's history was lost: reload it)."""
    return reply(
        message_id, "subscribed", channel=channel, offset=offset, epoch=epoch, recovered=recovered
    )


TOKEN_EXPIRING = encode({"type": "token_expiring"})
