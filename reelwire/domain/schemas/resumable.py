"""Resumable uploads (tus 1.0.0): what `Upload-Metadata` may say about the file.

The text fields are checked by the multipart routes' own models (`VideoUploadForm` for a video,
`ClipUploadForm`'s caption for a clip), so both ways of uploading take the same values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reelwire.domain.schemas.common import Input

METADATA_KEYS = (
    "kind",
    "filename",
    "filetype",
    "title",
    "description",
    "visibility",
    "caption",
)


class UploadFileInfo(Input):
    """What the upload is and the file it carries (other keys a tus client adds are ignored)."""

    kind: Literal["video", "clip"] = Field(
        "video", description="`video`, or `clip` for a 24-hour story (image or video)"
    )
    filename: str = Field("", max_length=255, description="Shown as the original's name")
    filetype: str = Field(
        "",
        max_length=100,
        pattern=r"^$|^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$",
        description="The file's MIME type as the client sees it (the server decides by content)",
    )
