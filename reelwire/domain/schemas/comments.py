"""Comments on videos and their replies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from reelwire.domain.schemas.common import NOT_BLANK, PageQuery, Pagination, Strict, non_empty


class CommentQuery(PageQuery):
    """GET /api/videos/{video_id}/comments."""

    sort: Literal["newest", "oldest", "top"] = "newest"


class CommentBody(Strict):
    """POST /api/videos/{video_id}/comments."""

    content: Annotated[
        str, Field(max_length=1000, json_schema_extra=NOT_BLANK), AfterValidator(non_empty)
    ]
    parent_comment_id: str | None = Field(None, description="Reply to this comment")


class CommentEditBody(Strict):
    """PUT /api/comments/{comment_id}."""

    content: Annotated[
        str, Field(max_length=1000, json_schema_extra=NOT_BLANK), AfterValidator(non_empty)
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
