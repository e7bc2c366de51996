"""Every message of the WebSocket protocol (docs/protocol.md) as a pydantic model.

One set of models serves three readers: `realtime.commands` validates client messages with
them, `realtime.messages` builds the server's replies from them, and `/api/asyncapi.json` is
generated from them. Events (`video_update`, `new_comment`, ...) are published as JSON bytes by
the operations and fanned out untouched; their models here describe those bytes (a test checks
frames captured from a live socket against them) and are never run on the fan-out path.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from reelwire.domain.schemas.clips import ClipOut
from reelwire.domain.schemas.comments import CommentBody, CommentOut
from reelwire.domain.schemas.common import ErrorBody, Input
from reelwire.domain.schemas.users import FollowerCard
from reelwire.domain.schemas.videos import ReactionBody, ViewBody

MessageId = int | str | None

# --- client -> server ------------------------------------------------------------------------


class ClientMessage(Input):
    """Fields every client message may carry."""

    model_config = ConfigDict(extra="forbid")
    type: str
    id: MessageId = Field(None, description="Echoed in the reply, to pair it with its request")


class Since(Input):
    """Where a client's copy of a channel stands."""

    offset: int = Field(ge=0, description="`offset` of the last event the client saw")
    epoch: str = Field(max_length=64, description="`epoch` the channel had then")


class SubscribeMessage(ClientMessage):
    """Join a channel (again, to recover); `since` replays what was missed."""

    type: Literal["subscribe"]
    channel: str = Field(
        min_length=1, max_length=100, description="`video:{id}`, `user:{id}` or `feed:clips`"
    )
    events: list[pydantic.constr(max_length=40)] | None = Field(  # type: ignore[valid-type]
        None,
        max_length=20,
        description="Only these event types (a `video_update` field name selects `video_update`)",
    )
    since: Since | None = None


class UnsubscribeMessage(ClientMessage):
    """Leave a channel."""

    type: Literal["unsubscribe"]
    channel: str = Field(min_length=1, max_length=100)


class PingMessage(ClientMessage):
    """Application-level ping (browsers cannot send protocol pings)."""

    type: Literal["ping"]


class AuthMessage(ClientMessage):
    """Authenticate the socket, or renew an expiring token (a socket cannot switch users)."""

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=4096, description="An access token")


class ViewMessage(ViewBody, ClientMessage):
    """Count a view: the body of POST /api/videos/{id}/view, plus the video."""

    type: Literal["view"]
    video_id: str = Field(max_length=64)


class LikeMessage(ReactionBody, ClientMessage):
    """Like, dislike or remove a reaction: the body of POST /api/videos/{id}/like, plus the
    video. Needs an authenticated socket."""

    type: Literal["like"]
    video_id: str = Field(max_length=64)


class CommentMessage(CommentBody, ClientMessage):
    """Comment or reply: the body of POST /api/videos/{id}/comments, plus the video. Needs an
    authenticated socket."""

    type: Literal["comment"]
    video_id: str = Field(max_length=64)


# --- server -> client: replies and control ---------------------------------------------------


class ServerMessage(BaseModel):
    """A message the server sends."""

    model_config = ConfigDict(extra="forbid")
    type: str


class Reply(ServerMessage):
    """An answer to a client message."""

    id: MessageId = Field(None, description="The `id` of the message answered, if it had one")


class WelcomeMessage(ServerMessage):
    """The greeting, sent as soon as the socket is open."""

    type: Literal["welcome"]
    session: str
    node: str = Field(description="The server process: `<host>:<pid>`")
    heartbeat: int = Field(description="Seconds between the server's pings")


class SubscribedMessage(Reply):
    """A subscription is live. Sent unasked with `recovered: false` when the server lost part of
    the channel's history: reload the channel over REST."""

    type: Literal["subscribed"]
    channel: str
    offset: int = Field(description="The channel's position now")
    epoch: str = Field(description="Changes when the channel's history is lost")
    recovered: bool = Field(description="The missed events (asked for with `since`) follow")


class UnsubscribedMessage(Reply):
    """The channel is left."""

    type: Literal["unsubscribed"]
    channel: str


class PongMessage(Reply):
    """The answer to `ping`."""

    type: Literal["pong"]


class AckMessage(Reply):
    """A command succeeded. `data` is `{user_id}` for `auth`, and for `view`, `like` and
    `comment` the body their REST route returns."""

    type: Literal["ack"]
    data: dict[str, Any]


class ErrorMessage(Reply):
    """A message was refused; the socket stays open."""

    type: Literal["error"]
    error: ErrorBody


class TokenExpiringMessage(ServerMessage):
    """The access token expires in about a minute: send a new `auth` or be closed with 4001."""

    type: Literal["token_expiring"]


# --- server -> client: channel events --------------------------------------------------------


class Event(ServerMessage):
    """An event on a channel."""

    offset: int = Field(description="Position in the channel; recover from it with `since`")
    ts: int = Field(description="Publish time, milliseconds since the Unix epoch")


class VideoCounts(BaseModel):
    """A video's counters, absolute values."""

    model_config = ConfigDict(extra="forbid")
    view_count: int
    like_count: int
    dislike_count: int
    comment_count: int
    viewer_count: int = Field(description="Sockets watching the video, on every process")
    counts_version: int = Field(description="Grows with every like/dislike/comment change")


class VideoUpdateMessage(Event):
    """A video's counters changed (and the current ones, right after subscribing). Coalesced:
    at most one per `COALESCE_MS` per channel. Viewer counts arrive here too, as
    `data.viewer_count`."""

    type: Literal["video_update"]
    video_id: str
    data: VideoCounts


class NewCommentMessage(Event):
    """A comment or reply was posted."""

    type: Literal["new_comment"]
    video_id: str
    comment: CommentOut


class CommentUpdatedMessage(Event):
    """A comment's text or reaction counts changed."""

    type: Literal["comment_updated"]
    video_id: str
    comment: CommentOut


class CommentDeletedMessage(Event):
    """A comment (and its replies) was deleted."""

    type: Literal["comment_deleted"]
    video_id: str
    comment_id: str
    parent_comment_id: str | None


class ProcessingMessage(Event):
    """Transcoding moved on. Watchers of `video:{id}` get the status; the owner's `user:{id}`
    also gets the progress and, on failure, the reason."""

    type: Literal["processing"]
    video_id: str
    status: Literal["uploading", "pending", "processing", "ready", "failed"]
    progress: float | None = Field(None, description="Percent done (user channel only)")
    error: str | None = Field(None, description="Why it failed, for a person to read")


class RenditionReadyMessage(Event):
    """One rung of a video's ladder can be played: its playlist is up with its first segment
    (it grows as the transcode runs). Sent once per rung, lowest first, before `playable`."""

    type: Literal["rendition_ready"]
    video_id: str
    quality: str = Field(description="The rung, e.g. `720p`")
    resolution: str = Field(description="`WIDTHxHEIGHT` of the rung")
    progress: float | None = Field(None, description="Percent done (user channel only)")


class PlayableMessage(Event):
    """The video can be watched from the start while it is still being transcoded (every
    rung has a segment and the master playlist is up), or, with `playable: false`, no longer
    can (the transcode failed half-way and what was published was withdrawn). `ready` follows
    once the ladder is complete; clients that only know `processing` lose nothing."""

    type: Literal["playable"]
    video_id: str
    playable: bool
    playback_url: str | None = Field(
        None,
        description="The master playlist, for videos served at plain URLs; for a private "
        "video fetch the video, whose URLs are signed for you",
    )
    progress: float | None = Field(None, description="Percent done (user channel only)")


class ClipGone(BaseModel):
    """What a follower needs to drop a clip."""

    model_config = ConfigDict(extra="forbid")
    id: str
    clip_id: str
    user_id: str


class ClipFeedMessage(Event):
    """A clip of someone the user follows was `added`, `updated` (its media is ready, or failed),
    `removed` or has `expired`."""

    type: Literal["clip_feed"]
    action: Literal["added", "updated", "removed", "expired"]
    clip: ClipOut | ClipGone = Field(
        description="The whole clip when added or updated, its ids otherwise"
    )


class NewFollowerMessage(Event):
    """Someone followed the user."""

    type: Literal["new_follower"]
    follower: FollowerCard
    follower_count: int = Field(description="The user's followers now")


class ClipViewedMessage(Event):
    """Someone viewed one of the user's clips: sent once per viewer, as the view is counted (a
    repeat view and the owner's own are not counted and send nothing)."""

    type: Literal["clip_viewed"]
    clip_id: str
    viewer: FollowerCard = Field(description="Who viewed (the card `new_follower` carries)")
    viewed_at: str = Field(description="When, as GET /api/clips/{clip_id}/viewers gives it")
    view_count: int = Field(
        description="The clip's views now; only grows, so of two the larger is newer"
    )


class NotificationMessage(Event):
    """Something for this user only; `kind` says what (`clip_reaction`: someone reacted to
    your clip with `emoji`)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["notification"]
    kind: str
    clip_id: str | None = None
    emoji: str | None = None
    user_id: str | None = Field(None, description="Who did it")


# --- the registry ----------------------------------------------------------------------------


def type_of(model: type[BaseModel]) -> str:
    """The `type` a message model is for (its `type: Literal[...]`)."""
    (kind,) = get_args(model.model_fields["type"].annotation)
    return str(kind)


CLIENT_MESSAGES: dict[str, type[ClientMessage]] = {
    type_of(m): m
    for m in (
        SubscribeMessage,
        UnsubscribeMessage,
        PingMessage,
        AuthMessage,
        ViewMessage,
        LikeMessage,
        CommentMessage,
    )
}

SERVER_MESSAGES: dict[str, type[ServerMessage]] = {
    type_of(m): m
    for m in (
        WelcomeMessage,
        SubscribedMessage,
        UnsubscribedMessage,
        PongMessage,
        AckMessage,
        ErrorMessage,
        TokenExpiringMessage,
        VideoUpdateMessage,
        NewCommentMessage,
        CommentUpdatedMessage,
        CommentDeletedMessage,
        ProcessingMessage,
        RenditionReadyMessage,
        PlayableMessage,
        ClipFeedMessage,
        NewFollowerMessage,
        ClipViewedMessage,
        NotificationMessage,
    )
}

# What answers each client message (besides `error`, which any of them may get).
REPLIES: dict[str, tuple[str, ...]] = {
    "subscribe": ("subscribed",),
    "unsubscribe": ("unsubscribed",),
    "ping": ("pong",),
    "auth": ("ack",),
    "view": ("ack",),
    "like": ("ack",),
    "comment": ("ack",),
}

# The channels, by address, and the events each carries.
CHANNELS: dict[str, tuple[str, ...]] = {
    "video:{video_id}": (
        "video_update",
        "new_comment",
        "comment_updated",
        "comment_deleted",
        "processing",
        "rendition_ready",
        "playable",
    ),
    "user:{user_id}": (
        "processing",
        "rendition_ready",
        "playable",
        "new_follower",
        "clip_viewed",
        "notification",
    ),
    "feed:clips": ("clip_feed",),
}
