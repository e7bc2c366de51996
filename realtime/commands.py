"""The client messages of docs/protocol.md: one handler per type.

Each handler is declared with `@websocket_command` (its schema, whether it needs an
authenticated socket, its rate bucket); `register_commands` registers them all into the
endpoint's `CommandTable` at start-up, which dispatches frames to them. The `view`, `like` and
`comment` commands call the same domain operations as their REST routes, with the same body
schemas and the same rate limit buckets.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from uuid import UUID

from pubsub import keys
from pubsub.history import Position
from realtime import messages
from realtime.coalescing import VIDEO_FIELDS
from realtime.command_table import (
    CommandTable,
    Handler,
    Session,
    command_spec,
    websocket_command,
)
from realtime.connection import Connection
from realtime.hub import Hub
from realtime.schemas import (
    AuthMessage,
    CommentMessage,
    LikeMessage,
    PingMessage,
    SubscribeMessage,
    UnsubscribeMessage,
    ViewMessage,
)
from reelwire.domain import accounts, comments, users, videos
from reelwire.domain.context import Principal
from reelwire.domain.errors import Forbidden, LimitExceeded, Unauthorized, ValidationFailed
from reelwire.domain.schemas.common import parse_uuid

FEED_CLIPS = "feed:clips"


# --- subscriptions -------------------------------------------------------------------------


@websocket_command(SubscribeMessage)
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
    video = None
    if kind == "video":
        video = target  # the hub checks who may watch it, with the channel's own read
    elif principal is None:
        raise Unauthorized("Authenticate to subscribe to a user channel")
    elif principal.user_id != target:
        raise Forbidden("A user channel is open to that user only")
    hub.leave(conn, channel)  # subscribing again restarts it (for example to recover)
    events = _event_filter(body.events)
    since = Position(body.since.epoch, body.since.offset) if body.since else None
    await hub.join(conn, channel, events=events, since=since, video=video, message_id=body.id)
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


@websocket_command(UnsubscribeMessage)
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


@websocket_command(PingMessage)
async def ping(session: Session, body: PingMessage) -> bytes:
    """Application-level ping (browsers cannot send protocol pings)."""
    return messages.pong(body.id)


@websocket_command(AuthMessage)
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


@websocket_command(ViewMessage, rate="general")
async def view(session: Session, body: ViewMessage) -> bytes:
    """Count a view, as POST /api/videos/{id}/view."""
    video_id = _video_id(body.video_id)
    watched = body.watch_time_seconds or 0
    result = await videos.view(session.services, video_id, session.conn.principal, watched)
    return messages.ack(body.id, result)


@websocket_command(LikeMessage, auth=True, rate="like")
async def like(session: Session, body: LikeMessage) -> bytes:
    """Like, dislike or remove a reaction, as POST /api/videos/{id}/like."""
    assert session.conn.principal is not None
    video_id = _video_id(body.video_id)
    result = await videos.react(session.services, session.conn.principal, video_id, body.action)
    return messages.ack(body.id, result)


@websocket_command(CommentMessage, auth=True, rate="comment")
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


# --- registration ----------------------------------------------------------------------------

# Every command of the protocol, by message type. Nothing is registered on import: the endpoint
# builds its CommandTable at start-up and calls register_commands.
COMMANDS: Mapping[str, Handler] = MappingProxyType(
    {
        command_spec(handler).kind: handler
        for handler in (subscribe, unsubscribe, ping, auth, view, like, comment)
    }
)


def register_commands(table: CommandTable) -> None:
    """Register every command of the protocol into an endpoint's table."""
    for handler in COMMANDS.values():
        table.register(handler)
