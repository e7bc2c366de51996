"""The S3 video library API: the caller's own uploads, by page, recency or storage key."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from reelwire.domain.schemas.common import Form


class LibraryUploadForm(Form):
    """POST /api/v1/upload/video (the S3 video library API): multipart with `file`."""

    file_field: ClassVar[str] = "file"

    title: str = Field("", max_length=100)


class LibraryQuery(BaseModel):
    """The S3 video library API's query; `sort_by` is a whitelist, never a column from input."""

    page: int = Field(1, ge=1, le=100_000)
    page_size: int = Field(10, ge=1, le=50)
    search: str | None = Field(None, max_length=200)
    sort_by: Literal["created_at", "filename", "file_size", "duration"] = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"


class RecentQuery(BaseModel):
    """How many recent videos (max 20)."""

    limit: int = Field(5, ge=1, le=20)


class LibraryVideoOut(BaseModel):
    """The S3 video library API's video object."""

    id: str
    filename: str | None
    original_filename: str
    s3_key: str | None
    s3_url: str | None
    content_type: str | None
    file_size: int | None
    duration: float | None
    thumbnail_url: str | None
    uploaded_at: str
    status: str
    metadata: dict[str, Any]


class LibraryPageOut(BaseModel):
    """GET /api/v1/videos/s3-videos."""

    videos: list[LibraryVideoOut]
    total_count: int
    page: int
    page_size: int
    total_pages: int
    has_more: bool


class RecentOut(BaseModel):
    """GET /api/v1/videos/s3-videos/recent."""

    videos: list[LibraryVideoOut]
