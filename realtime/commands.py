"""The client messages of PROTOCOL.md: one function per type, registered in one table.

`dispatch` parses a text frame, validates it against the command's model (the protocol's
models live in `realtime.schemas`, which also generate /api/asyncapi.json), calls it, and maps
any failure to an `error` reply through `errors.describe`, as REST maps it to its envelope. The
`view`, `like` and `comment` commands call the same domain operations as their REST routes, with
the same body schemas and the same rate limit buckets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import orjson
import pydantic

from pubsub import keys
from pubsub.history import Position
from realtime import messages
from realtime.connection import Connection
from realtime.hub import VIDEO_FIELDS, Hub
from realtime.schemas import (
    AuthMessage,
    ClientMessage,
    CommentMessage,
    LikeMessage,
    PingMessage,
    SubscribeMessage,
    UnsubscribeMessage,
    ViewMessage,
    type_of,
)
from reelwire.domain import accounts, comments, rates, users, videos
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import (
    Forbidden,
    LimitExceeded,
    Unauthorized,
    ValidationFailed,
    describe,
)
from reelwire.domain.schemas.common import field_errors, parse_uuid

logger = logging.getLogger(__name__)

FEED_CLIPS = "feed:clips"


@dataclass
class Session:
    """What a command sees: the process's services and hub, and the socket it came from."""

    services: Services
    hub: Hub
    conn: Connection


Handler = Callable[[Session, Any], Awaitable[bytes | None]]


@dataclass(frozen=True)
class Command:
    """A message type, its schema, and the function that answers it."""

    schema: type[ClientMessage]
    handler: Handler
    auth: bool = False
    rate: str | None = None


COMMANDS: dict[str, Command] = {}


def command(
    schema: type[ClientMessage], *, auth: bool = False, rate: str | None = None
) -> Callable[[Handler], Handler]:
    """Register the function answering the messages `schema` (in `realtime.schemas`) describes."""

    def register(handler: Handler) -> Handler:
        COMMANDS[type_of(schema)] = Command(schema, handler, auth, rate)
        return handler

    return register


async def dispatch(session: Session, text: str) -> None:
    """Answer one client message; a bad one gets an error reply."""
    conn = session.conn
    message_id = None
    try:
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ValidationFailed("Message is not valid JSON") from None
        if not isinstance(raw, dict):
            raise ValidationFailed("Message must be a JSON object")
        message_id = raw.get("id") if isinstance(raw.get("id"), int | str) else None
        kind = raw.get("type")
        found = COMMANDS.get(kind) if isinstance(kind, str) else None
        if found is None:
            raise ValidationFailed(f"Unknown message type {str(kind)[:40]!r}")
        try:
            body = found.schema.model_validate(raw)
        except pydantic.ValidationError as exc:
            raise ValidationFailed(
                "Message validation failed", field_errors=field_errors(exc)
            ) from None
        if found.auth and conn.principal is None:
            raise Unauthorized("Authenticate first (an `auth` message, a ticket or a header)")
        if conn.principal is not None:  # deleted or disabled since the socket authenticated?
            await accounts.require_account(session.services, conn.principal.user_id)
        await rates.check(session.services, found.rate, conn.principal, conn.remote)
        try:
            answer = await found.handler(session, body)
        except asyncpg.ForeignKeyViolationError:
            # As on REST: most often the caller's own account, deleted while the socket lived.
            raise await accounts.missing_reference(session.services, conn.principal) from None
    except Exception as exc:
        problem = describe(exc)  # the same mapper as REST's envelope
        if problem.unexpected:
            logger.exception("websocket message failed")
        elif problem.status >= 500:
            logger.warning("websocket message: a backend is unavailable: %r", exc)
        conn.send(
            messages.error(
                message_id, problem.code, problem.message, problem.details, problem.field_errors
            )
        )
        return
    if answer is not None:
        conn.send(answer)


# --- subscriptions -------------------------------------------------------------------------


@command(SubscribeMessage)
async def subscribe(session: Session, body: SubscribeMessage) -> bytes | None:
    """Join a channel the caller may watch."""
    conn, hub, principal = session.conn, session.hub, session.conn.principal
    channel = body.channel
    new = channel not in conn.memberships and channel != FEED_CLIPS
    if new and conn.subscriptions >= conn.limits.max_subscriptions:
        raise LimitExceeded(
            f"At most {conn.limits.max_subscriptions} subscriptions per socket",
            details={"limit": conn.limits.max_subscriptions},
        )
    kind, _, rest = channel.partition(":")
    hub.proven(conn)
    if channel == FEED_CLIPS:
        return await _subscribe_clip_feed(session, body)
    target = _channel_id(rest) if kind in ("video", "user") else None
    if target is None:
        raise ValidationFailed(f"Unknown channel {channel[:100]!r}")
    counts = None
    if kind == "video":
        counts = await videos.watch(session.services, target, principal)
    elif principal is None:
        raise Unauthorized("Authenticate to subscribe to a user channel")
    elif principal.user_id != target:
        raise Forbidden("A user channel is open to that user only")
    hub.leave(conn, channel)  # subscribing again restarts it (for example to recover)
    events = _event_filter(body.events)
    since = Position(body.since.epoch, body.since.offset) if body.since else None
    await hub.join(conn, channel, events=events, since=since, counts=counts, message_id=body.id)
    return None


async def _subscribe_clip_feed(session: Session, body: SubscribeMessage) -> bytes:
    conn, principal = session.conn, session.conn.principal
    if principal is None:
        raise Unauthorized("Authenticate to subscribe to feed:clips")
    if conn.feed_follows is None:
        following = await users.followed_ids(session.services, principal.user_id)
        conn.feed_follows = set()
        await session.hub.join(conn, keys.follows_channel(principal.user_id), via_feed=True)
        await session.hub.follow_clips(conn, following)
    # A feed joins many channels, so there is no single offset to recover from: a client that
    # asked to recover reloads GET /api/clips/all.
    return messages.subscribed(body.id, FEED_CLIPS, 0, "", False)


@command(UnsubscribeMessage)
async def unsubscribe(session: Session, body: UnsubscribeMessage) -> bytes:
    """Leave a channel."""
    conn, hub = session.conn, session.hub
    if body.channel == FEED_CLIPS and conn.feed_follows is not None:
        for user_id in list(conn.feed_follows):
            hub.unfollow_clips(conn, user_id)
        if conn.principal is not None:
            hub.leave(conn, keys.follows_channel(conn.principal.user_id))
        conn.feed_follows = None
    else:
        membership = conn.memberships.get(body.channel)
        if membership is None or membership.via_feed:
            raise ValidationFailed(f"Not subscribed to {body.channel[:100]!r}")
        hub.leave(conn, body.channel)
    return messages.unsubscribed(body.id, body.channel)


@command(PingMessage)
async def ping(session: Session, body: PingMessage) -> bytes:
    """Application-level ping (browsers cannot send protocol pings)."""
    return messages.pong(body.id)


@command(AuthMessage)
async def auth(session: Session, body: AuthMessage) -> bytes:
    """Become (or stay) a user on this socket."""
    conn = session.conn
    principal = await accounts.authenticate(session.services, body.token)
    if conn.principal is not None and conn.principal.user_id != principal.user_id:
        raise Forbidden("This socket belongs to another user; open a new one")
    authenticate(session.hub, conn, principal)
    return messages.ack(body.id, {"user_id": str(principal.user_id)})


def authenticate(hub: Hub, conn: Connection, principal: Principal) -> None:
    """Bind a user to the socket until their token expires."""
    conn.principal = principal
    conn.expires_at = principal.expires_at
    conn.warned_expiry = False
    hub.proven(conn)


# --- the REST operations ---------------------------------------------------------------------


@command(ViewMessage, rate="general")
async def view(session: Session, body: ViewMessage) -> bytes:
    """Count a view, as POST /api/videos/{id}/view."""
    video_id = _video_id(body.video_id)
    watched = body.watch_time_seconds or 0
    result = await videos.view(session.services, video_id, session.conn.principal, watched)
    return messages.ack(body.id, result)


@command(LikeMessage, auth=True, rate="like")
async def like(session: Session, body: LikeMessage) -> bytes:
    """Like, dislike or remove a reaction, as POST /api/videos/{id}/like."""
    assert session.conn.principal is not None
    video_id = _video_id(body.video_id)
    result = await videos.react(session.services, session.conn.principal, video_id, body.action)
    return messages.ack(body.id, result)


@command(CommentMessage, auth=True, rate="comment")
async def comment(session: Session, body: CommentMessage) -> bytes:
    """Comment or reply, as POST /api/videos/{id}/comments."""
    principal = session.conn.principal
    assert principal is not None
    video_id = _video_id(body.video_id)
    parent = body.parent_comment_id
    parent_id = parse_uuid(parent, comments.COMMENT_NOT_FOUND) if parent else None
    result = await comments.create(session.services, principal, video_id, body.content, parent_id)
    return messages.ack(body.id, result)


# --- helpers ---------------------------------------------------------------------------------


def _event_filter(names: list[str] | None) -> frozenset[str] | None:
    """The CLUTCH API filters by counter names; they select `video_update` (it carries them all)."""
    if not names:
        return None
    wanted = set(names)
    if wanted & set(VIDEO_FIELDS):
        wanted.add("video_update")
    return frozenset(wanted)


def _channel_id(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def _video_id(text: str) -> UUID:
    return parse_uuid(text, videos.VIDEO_NOT_FOUND)
