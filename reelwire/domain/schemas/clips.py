"""Clips (the Stories API): upload, feeds, views, viewers and emoji reactions."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, Field

from reelwire.domain.schemas.common import Form, Input, Pagination, Strict
from reelwire.domain.schemas.users import FollowerCard


def _caption(value: str) -> str:
    if re.search(r"<\s*/?\s*[a-zA-Z!][^>]*>", value) or re.search(r"javascript:", value, re.I):
        raise ValueError("Caption cannot contain HTML or scripts.")
    return value


class ClipUploadForm(Form):
    """POST /api/clips/upload (the Stories API): multipart `clip`, or `video_id` of your own."""

    file_field: ClassVar[str] = "clip"
    contract_messages: ClassVar[dict[tuple[str, str], str]] = {
        ("caption", "string_too_long"): "Caption cannot exceed 500 characters"
    }

    caption: Annotated[str, AfterValidator(_caption)] = Field(
        "", max_length=500, description="At most 500 characters, no HTML"
    )
    video_id: str | None = Field(None, description="Reuse one of your videos instead of a file")


class ClipOut(BaseModel):
    """A clip (the Stories API's fields plus media fields)."""

    id: str
    clip_id: str
    user_id: str
    kind: Literal["video", "image"]
    status: Literal["processing", "ready", "failed"]
    file_url: str | None
    thumbnail_url: str | None
    preview_url: str | None = Field(
        None, description="A video clip's 3 s silent looping MP4 at feed size, once it is ready"
    )
    video_id: str | None
    duration: float | None
    caption: str
    created_at: str
    expires_at: str
    view_count: int = 0
    uploaded_by: str | None = None


class ClipUploadOut(BaseModel):
    """201 of POST /api/clips/upload."""

    message: str
    clip: ClipOut


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


class ClipViewer(FollowerCard):
    """Who viewed a clip (the card `clip_viewed` carries), and when."""

    viewed_at: str


class ClipViewersOut(BaseModel):
    """GET /api/clips/{clip_id}/viewers (owner only), newest first, a page at a time."""

    success: bool
    clip_id: str
    view_count: int
    viewers: list[ClipViewer]
    pagination: Pagination
    next_cursor: str | None


def _emoji(value: str) -> str:
    value = value.strip()
    if not value or any(unicodedata.category(ch)[0] in "LNZC" and ch != "\u200d" for ch in value):
        raise ValueError("Must be an emoji.")
    return value


class ClipReactionBody(Strict):
    """POST /api/clips/{clip_id}/reactions."""

    emoji: Annotated[str, Field(max_length=16), AfterValidator(_emoji)]


class ClipReactionsOut(BaseModel):
    """A clip's reactions, counted per emoji."""

    success: bool
    clip_id: str
    reactions: dict[str, int]
