"""Schemas of the social layer: video lists and edits, reactions, views, comments, clips' extras,
posts and communities. They validate input and document the output."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, field_validator

from http_api.schemas import (
    NOT_BLANK_PATTERN,
    ClipOut,
    Input,
    PageQuery,
    Pagination,
    Strict,
    VideoOut,
)

_TAG_RE = re.compile(r"^[\w\- ]{1,40}$")


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("Must not be empty.")
    return value


def _tags(value: list[str]) -> list[str]:
    cleaned = []
    for tag in value:
        tag = tag.strip().lower()
        if not _TAG_RE.match(tag):
            raise ValueError("Tags are 1-40 letters, digits, spaces, dashes or underscores.")
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def _emoji(value: str) -> str:
    value = value.strip()
    if not value or any(unicodedata.category(ch)[0] in "LNZC" and ch != "\u200d" for ch in value):
        raise ValueError("Must be an emoji.")
    return value


# The tag rule as patterns: one tag (spaces around it are dropped), and a comma-separated list.
_TAG = r"[\w\-](?:[\w\- ]{0,38}[\w\-])?"
TAG_PATTERN = rf"^\s*{_TAG}\s*$"
TAG_LIST_PATTERN = rf"^\s*(?:{_TAG})?\s*(?:,\s*(?:{_TAG})?\s*)*$"
Tag = Annotated[str, Field(json_schema_extra={"pattern": TAG_PATTERN})]
Tags = Annotated[list[Tag], Field(max_length=20), AfterValidator(_tags)]
_NOT_BLANK: dict[str, Any] = {"pattern": NOT_BLANK_PATTERN}
NonEmpty = Annotated[str, Field(json_schema_extra=_NOT_BLANK), AfterValidator(_text)]


class VideoListQuery(PageQuery):
    """GET /api/videos."""

    sort: Literal["latest", "popular", "trending"] = "latest"
    category: str | None = Field(None, max_length=50)
    tags: Annotated[str, Field(json_schema_extra={"pattern": TAG_LIST_PATTERN})] | None = Field(
        None, max_length=500, description="Comma-separated; all must match"
    )
    q: str | None = Field(None, max_length=200, description="Words in the title or description")
    author: UUID | None = Field(None, description="Only this user's videos (a profile's list)")

    def tag_list(self) -> list[str]:
        """`tags` split, lower-cased and validated."""
        if not self.tags:
            return []
        return _tags([t for t in self.tags.split(",") if t.strip()])

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: str | None) -> str | None:
        if value:
            _tags([t for t in value.split(",") if t.strip()])
        return value


class VideoPatchBody(Strict):
    """PATCH /api/videos/{video_id}: only what you send changes."""

    title: (
        Annotated[
            str,
            Field(min_length=1, max_length=100, json_schema_extra=_NOT_BLANK),
            AfterValidator(_text),
        ]
        | None
    ) = None
    description: str | None = Field(None, max_length=5000)
    tags: Tags | None = None
    category: str | None = Field(None, max_length=50)
    visibility: Literal["public", "unlisted", "private"] | None = None

    def changes(self) -> dict[str, Any]:
        """The fields that were sent."""
        return self.model_dump(exclude_unset=True)


class ReactionBody(Strict):
    """POST .../like (the CLUTCH API)."""

    action: Literal["like", "dislike", "remove"]


class ReactionOut(BaseModel):
    """The CLUTCH API's answer to a like."""

    success: bool
    user_action: Literal["liked", "disliked", "none"]
    like_count: int
    dislike_count: int


class ViewBody(Strict):
    """POST /api/videos/{video_id}/view (the CLUTCH API); the body is optional."""

    watch_time_seconds: float | None = Field(None, ge=0, le=86_400)
    quality: str | None = Field(None, max_length=16)


class ViewOut(BaseModel):
    """The live view count, including views not yet written to PostgreSQL."""

    success: bool
    new_view_count: int


class VideoWithReactionOut(VideoOut):
    """GET /api/videos/{video_id}: the video plus the caller's reaction."""

    user_reaction: Literal["liked", "disliked", "none"]
    user_interaction: dict[str, bool]


class VideoListOut(BaseModel):
    """A page of videos."""

    success: bool
    videos: list[VideoOut]
    pagination: Pagination
    next_cursor: str | None


class CommentQuery(PageQuery):
    """GET /api/videos/{video_id}/comments."""

    sort: Literal["newest", "oldest", "top"] = "newest"


class CommentBody(Strict):
    """POST /api/videos/{video_id}/comments."""

    content: Annotated[
        str, Field(max_length=1000, json_schema_extra=_NOT_BLANK), AfterValidator(_text)
    ]
    parent_comment_id: str | None = Field(None, description="Reply to this comment")


class CommentEditBody(Strict):
    """PUT /api/comments/{comment_id}."""

    content: Annotated[
        str, Field(max_length=1000, json_schema_extra=_NOT_BLANK), AfterValidator(_text)
    ]


class CommentAuthor(BaseModel):
    """A comment's author."""

    id: str
    username: str
    display_name: str
    avatar_url: str
    verified: bool


class CommentOut(BaseModel):
    """The CLUTCH API's comment object."""

    id: str
    video_id: str
    user_id: str
    parent_comment_id: str | None
    content: str
    like_count: int
    dislike_count: int
    reply_count: int
    created_at: str
    updated_at: str
    edited: bool
    author: CommentAuthor
    user_interaction: dict[str, bool]


class CommentsOut(BaseModel):
    """A page of top-level comments."""

    success: bool
    comments: list[CommentOut]
    pagination: Pagination
    next_cursor: str | None


class RepliesOut(BaseModel):
    """A page of replies, oldest first."""

    success: bool
    replies: list[CommentOut]
    pagination: Pagination
    next_cursor: str | None


class UserClipsOut(BaseModel):
    """GET /api/clips/user/{user_id} (the Stories API)."""

    user_id: str
    clips: list[ClipOut]
    count: int


class FollowedClipsQuery(Input):
    """GET /api/clips/all."""

    limit: int = Field(100, ge=1, le=500)


class ClipsOut(BaseModel):
    """GET /api/clips/all (the Stories API)."""

    clips: list[ClipOut]
    count: int


class CleanupOut(BaseModel):
    """POST /api/clips/cleanup/expired (the Stories API)."""

    message: str
    deleted_count: int


class ClipViewOut(BaseModel):
    """A clip view: counted once per viewer."""

    success: bool
    counted: bool
    view_count: int


class ClipViewer(BaseModel):
    """Who viewed a clip, and when."""

    id: str
    username: str
    display_name: str
    avatar_url: str
    viewed_at: str


class ClipViewersOut(BaseModel):
    """GET /api/clips/{clip_id}/viewers (owner only)."""

    success: bool
    clip_id: str
    view_count: int
    viewers: list[ClipViewer]


class ClipReactionBody(Strict):
    """POST /api/clips/{clip_id}/reactions."""

    emoji: Annotated[str, Field(max_length=16), AfterValidator(_emoji)]


class ClipReactionsOut(BaseModel):
    """A clip's reactions, counted per emoji."""

    success: bool
    clip_id: str
    reactions: dict[str, int]


class PostBody(Strict):
    """POST /api/posts (the upload-flow API, camelCase as written there)."""

    content: str = Field("", max_length=5000)
    videoId: str | None = None
    communityId: str | None = None
    type: Literal["text", "video"] | None = None


class PostsQuery(PageQuery):
    """GET /api/posts."""

    communityId: str | None = None


class PostAuthor(BaseModel):
    """The upload-flow API's post author."""

    id: str
    name: str
    username: str
    avatar: str
    verified: bool


class PostMedia(BaseModel):
    """The video attached to a post."""

    type: Literal["video"]
    videoId: str
    url: str | None
    thumbnail: str | None
    duration: float | None


class PostCommunity(BaseModel):
    """The community a post was made in."""

    id: str
    name: str


class PostOut(BaseModel):
    """The upload-flow API's post object."""

    id: str
    content: str
    type: Literal["text", "video"]
    author: PostAuthor
    media: PostMedia | None
    community: PostCommunity | None
    likes: int
    comments: int
    shares: int
    views: int
    timestamp: str
    isLiked: bool
    isSaved: bool


class PostsOut(BaseModel):
    """A page of posts, newest first."""

    success: bool
    posts: list[PostOut]
    pagination: Pagination
    next_cursor: str | None


class CommunityBody(Strict):
    """POST /api/communities."""

    name: Annotated[str, Field(max_length=80, json_schema_extra=_NOT_BLANK), AfterValidator(_text)]
    description: str = Field("", max_length=1000)


class CommunityOut(BaseModel):
    """A community."""

    id: str
    name: str
    description: str
    owner_id: str | None
    post_count: int
    created_at: str


class CommunitiesOut(BaseModel):
    """A page of communities, newest first."""

    success: bool
    communities: list[CommunityOut]
    pagination: Pagination
    next_cursor: str | None


class SuccessMessageOut(BaseModel):
    """`{success, message}`."""

    success: bool
    message: str
