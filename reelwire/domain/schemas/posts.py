"""Posts and the communities they are made in."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from reelwire.domain.schemas.common import NOT_BLANK, PageQuery, Pagination, Strict, non_empty


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

    name: Annotated[
        str, Field(max_length=80, json_schema_extra=NOT_BLANK), AfterValidator(non_empty)
    ]
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
