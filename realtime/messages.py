"""Builders for the server's own messages (PROTOCOL.md), each returned as a ready frame.

Each is built through its model in `realtime.schemas`, so what the server sends is what
`/api/asyncapi.json` documents; the two every joining socket gets (`welcome`, `subscribed`) are
built as their models would build them without the models, and a test holds them to that.
Channel events are not built here: the operations publish them as JSON bytes and the hub fans
those bytes out as they are.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from realtime.schemas import (
    SERVER_MESSAGES,
    AckMessage,
    ErrorMessage,
    PongMessage,
    SubscribedMessage,
    TokenExpiringMessage,
    UnsubscribedMessage,
    WelcomeMessage,
)
from realtime.wire import encode
from reelwire.domain.schemas.common import ErrorBody


def _frame(message: BaseModel) -> bytes:
    # None means "absent" in every reply (an `id` the client did not send, no `details`).
    return encode(message.model_dump(exclude_none=True))


def welcome(session: str, node: str, heartbeat: int) -> bytes:
    """The greeting sent as soon as a socket is open (every socket gets one: built as its model
    would build it, without the model; tests/test_realtime_joins.py checks they agree)."""
    return encode({"type": "welcome", "session": session, "node": node, "heartbeat": heartbeat})


def welcome_checked(session: str, node: str, heartbeat: int) -> bytes:
    """`welcome` through its model."""
    return _frame(WelcomeMessage(type="welcome", session=session, node=node, heartbeat=heartbeat))


def error(
    message_id: Any,
    code: str,
    text: str,
    details: dict[str, Any] | None = None,
    field_errors: dict[str, list[str]] | None = None,
) -> bytes:
    """An error answer (the CLUTCH API's error object); the connection stays open."""
    body = ErrorBody(
        code=code, message=text, details=details or None, field_errors=field_errors or None
    )
    return _frame(ErrorMessage(type="error", id=message_id, error=body))


def reply(message_id: Any, kind: str, **fields: Any) -> bytes:
    """A typed answer to a client message, echoing its `id` (checked against its model)."""
    model = SERVER_MESSAGES[kind]
    return _frame(model.model_validate({"type": kind, "id": message_id, **fields}))


def pong(message_id: Any) -> bytes:
    """The answer to `ping`."""
    return _frame(PongMessage(type="pong", id=message_id))


def ack(message_id: Any, data: dict[str, Any]) -> bytes:
    """A command succeeded; `data` is what its REST route would return."""
    return _frame(AckMessage(type="ack", id=message_id, data=data))


def unsubscribed(message_id: Any, channel: str) -> bytes:
    """The channel is left."""
    return _frame(UnsubscribedMessage(type="unsubscribed", id=message_id, channel=channel))


def subscribed(message_id: Any, channel: str, offset: int, epoch: str, recovered: bool) -> bytes:
    """A subscription is live (or, unasked, that a channel's history was lost: reload it).
    Every joining socket gets one: built as its model would build it, without the model (the
    `id` is the client's own, an int or a string, as `dispatch` took it; the model makes a bool
    an int)."""
    if isinstance(message_id, bool):
        message_id = int(message_id)
    if message_id is None:
        return encode(
            {
                "type": "subscribed",
                "channel": channel,
                "offset": offset,
                "epoch": epoch,
                "recovered": recovered,
            }
        )
    return encode(
        {
            "type": "subscribed",
            "id": message_id,
            "channel": channel,
            "offset": offset,
            "epoch": epoch,
            "recovered": recovered,
        }
    )


def subscribed_checked(
    message_id: Any, channel: str, offset: int, epoch: str, recovered: bool
) -> bytes:
    """`subscribed` through its model."""
    return _frame(
        SubscribedMessage(
            type="subscribed",
            id=message_id,
            channel=channel,
            offset=offset,
            epoch=epoch,
            recovered=recovered,
        )
    )


TOKEN_EXPIRING = _frame(TokenExpiringMessage(type="token_expiring"))
