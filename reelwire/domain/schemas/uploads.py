"""Direct uploads (the direct-upload API and the CLUTCH API): signed upload URLs and completion,
and the webhooks an external transcoder calls when it is done.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class UploadUrlBody(BaseModel):
    """POST /api/videos/upload-url (the upload-flow API)."""

    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=255)
    fileSize: int = Field(gt=0)
    mimeType: str = Field(max_length=100)
    metadata: dict[str, Any] | None = None


class UploadUrlOut(BaseModel):
    """The upload-flow API's answer."""

    videoId: str
    uploadUrl: str
    provider: str
    expiresAt: str
    method: str
    headers: dict[str, str]
    completeUrl: str


class VideoUploadRequestBody(BaseModel):
    """POST /api/upload/video/request (the CLUTCH API)."""

    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=255)
    file_size: int = Field(gt=0)
    content_type: str = Field(max_length=100)
    duration: float | None = Field(None, ge=0)


class ThumbnailRequestBody(BaseModel):
    """POST /api/upload/thumbnail/request (the CLUTCH API: "similar structure")."""

    model_config = ConfigDict(extra="forbid")
    video_id: str
    filename: str = Field(min_length=1, max_length=255)
    file_size: int = Field(gt=0)
    content_type: str = Field(max_length=100)


class UploadRequestOut(BaseModel):
    """The CLUTCH API's answer."""

    upload_url: str
    video_id: str
    expires_at: str
    method: str
    headers: dict[str, str]
    complete_url: str


class CompleteQuery(BaseModel):
    """Which upload is complete."""

    kind: Literal["video", "thumbnail"] = "video"


class ProcessedBody(BaseModel):
    """The CLUTCH API's payload (unknown extra fields from the sender are ignored)."""

    video_id: str
    status: Literal["success", "error"]
    quality_variants: dict[str, str] = Field(default_factory=dict)
    duration: float | None = Field(None, ge=0)
    thumbnail_url: str | None = None
    playback_url: str | None = None
    error_message: str | None = Field(None, max_length=2000)
    event_id: str | None = Field(None, max_length=200)


class AssetData(BaseModel):
    """The `data` of a the upload-flow API event."""

    id: str
    playback_url: str | None = None
    thumbnail_url: str | None = None
    duration: float | None = Field(None, ge=0)
    error_message: str | None = Field(None, max_length=2000)


class ProcessingBody(BaseModel):
    """The upload-flow API's event."""

    id: str | None = Field(None, max_length=200)
    type: Literal["video.asset.ready", "video.asset.errored"]
    data: AssetData


class WebhookOut(BaseModel):
    """Acknowledgement."""

    received: bool
    duplicate: bool
    video_id: str | None = None
    status: str | None = None
