"""Videos: upload (the Clipsy API), the video object, lists and edits, reactions and views."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, field_validator

from reelwire.domain.schemas.common import NOT_BLANK, Form, PageQuery, Pagination, Strict, non_empty


class VideoUploadForm(Form):
    """POST /api/videos (the Clipsy API): multipart with `video_file`."""

    file_field: ClassVar[str] = "video_file"

    title: str = Field("", max_length=100)
    description: str = Field("", max_length=5000)
    visibility: Literal["public", "unlisted", "private"] = "public"


class VideoUploadOut(BaseModel):
    """201 of POST /api/videos (the Clipsy API)."""

    id: str
    title: str
    description: str
    status: str
    created_at: str
    message: str


class VideoStatusOut(BaseModel):
    """The upload-flow API's status object."""

    videoId: str
    status: str
    playbackUrl: str | None
    thumbnailUrl: str | None
    duration: float | None
    provider: str
    progress: float
    error: str | None


class QualityOut(BaseModel):
    """One rung of the ladder (the Clipsy API's `qualities`)."""

    id: int = Field(description="The rendition's number within the video, in ladder order from 1")
    quality: str
    resolution: str
    bitrate: int
    file_size: int
    playlist_path: str | None


class AuthorOut(BaseModel):
    """A video's author."""

    id: str
    username: str
    display_name: str
    avatar_url: str
    follower_count: int
    verified: bool


class VideoOut(BaseModel):
    """The full video object (the CLUTCH API plus the Clipsy API's fields)."""

    success: bool | None = None
    id: str
    title: str
    description: str
    status: Literal["pending", "uploading", "processing", "ready", "failed"]
    processing_status: Literal["uploaded", "processing", "ready", "error"]
    progress: float
    error: str | None
    thumbnail_url: str | None
    thumbnail: str | None
    video_url: str | None
    hls_playlist: str | None = Field(description="The master playlist once the video is ready")
    playable: bool = Field(
        description="It can be watched now: true from the first segment of every rung, while "
        "the rest is still being transcoded (`status` stays `processing` until `ready`)"
    )
    playback_url: str | None = Field(
        description="The master playlist as soon as the video is playable (an HLS EVENT "
        "playlist that grows until the ladder is complete)"
    )
    preview_url: str | None = Field(
        description="A 3 s silent looping MP4 at feed size (H.264), once the video is ready"
    )
    stream_url: str | None
    duration: float | None
    resolution: str | None
    fps: float | None
    qualities: list[QualityOut]
    quality_variants: dict[str, str | None]
    storyboard: dict[str, str] | None
    view_count: int
    views: int
    like_count: int
    dislike_count: int
    comment_count: int
    author: AuthorOut
    tags: list[str]
    category: str | None
    visibility: Literal["public", "unlisted", "private"]
    metrics: dict[str, float]
    created_at: str
    updated_at: str
    published_at: str | None


_TAG_RE = re.compile(r"^[\w\- ]{1,40}$")


def clean_tags(value: list[str]) -> list[str]:
    """Tags lower-cased, without repeats; refused unless each is a valid tag."""
    cleaned = []
    for tag in value:
        tag = tag.strip().lower()
        if not _TAG_RE.match(tag):
            raise ValueError("Tags are 1-40 letters, digits, spaces, dashes or underscores.")
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


# The tag rule as patterns: one tag (spaces around it are dropped), and a comma-separated list.
_TAG = r"[\w\-](?:[\w\- ]{0,38}[\w\-])?"
TAG_PATTERN = rf"^\s*{_TAG}\s*$"
TAG_LIST_PATTERN = rf"^\s*(?:{_TAG})?\s*(?:,\s*(?:{_TAG})?\s*)*$"
Tag = Annotated[str, Field(json_schema_extra={"pattern": TAG_PATTERN})]
Tags = Annotated[list[Tag], Field(max_length=20), AfterValidator(clean_tags)]


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
        return clean_tags([t for t in self.tags.split(",") if t.strip()])

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: str | None) -> str | None:
        if value:
            clean_tags([t for t in value.split(",") if t.strip()])
        return value


class VideoPatchBody(Strict):
    """PATCH /api/videos/{video_id}: only what you send changes."""

    title: (
        Annotated[
            str,
            Field(min_length=1, max_length=100, json_schema_extra=NOT_BLANK),
            AfterValidator(non_empty),
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
