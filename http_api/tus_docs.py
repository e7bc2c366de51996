"""How the tus routes are described in the OpenAPI document: the protocol is spoken in headers,
which the route declarations cannot say by themselves."""

from __future__ import annotations

from typing import Any

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
OFFSET_STREAM = "application/offset+octet-stream"

_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}
_TEXT = {"type": "string"}


def _header(name: str, schema: dict[str, Any], description: str, required: bool) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": schema,
    }


TUS_RESUMABLE = _header(
    "Tus-Resumable",
    {"type": "string", "enum": [TUS_VERSION]},
    "The tus version the client speaks; anything else is 412 with `Tus-Version`",
    True,
)
UPLOAD_LENGTH = _header(
    "Upload-Length",
    {"type": "integer", "minimum": 1},
    "The whole file's size in bytes (at most MAX_VIDEO_UPLOAD_BYTES, or MAX_CLIP_UPLOAD_BYTES "
    "for a clip: 413 otherwise)",
    True,
)
UPLOAD_METADATA = _header(
    "Upload-Metadata",
    _TEXT,
    "Comma-separated `key base64(value)` pairs: `kind` (`video` or `clip`), `filename`, "
    "`filetype`, and for a video `title`, `description`, `visibility`, for a clip `caption`, "
    "with the limits of the multipart upload routes (400 naming the key otherwise)",
    False,
)
UPLOAD_OFFSET = _header(
    "Upload-Offset",
    {"type": "integer", "minimum": 0},
    "Where this chunk starts: the offset HEAD reported (409 otherwise)",
    True,
)
UPLOAD_CHECKSUM = _header(
    "Upload-Checksum",
    _TEXT,
    "`sha1 <base64 digest>` of this chunk: a chunk that does not match is discarded (460)",
    False,
)

_STATE_HEADERS: dict[str, Any] = {
    "Tus-Resumable": {"required": True, "schema": {"type": "string", "enum": [TUS_VERSION]}},
    "Upload-Offset": {"description": "Bytes received and kept so far", "schema": _DIGITS},
    "Upload-Expires": {
        "description": "When an unfinished upload expires (RFC 9110 date; TUS_EXPIRE_HOURS)",
        "schema": _TEXT,
    },
    "Reelwire-Video-Id": {
        "description": "The video the upload becomes (for a clip: its video, while it is one)",
        "schema": _TEXT,
    },
    "Reelwire-Clip-Id": {"description": "The clip the upload becomes", "schema": _TEXT},
}


def no_content(description: str, **headers: Any) -> dict[str, Any]:
    """A success response with headers and no body."""
    return {"description": description, "headers": {**_STATE_HEADERS, **headers}}


CREATED = no_content(
    "Created; `Location` is the upload's URL",
    Location={"required": True, "description": "The upload's URL", "schema": _TEXT},
)
STATE = no_content(
    "Where the upload stands",
    **{
        "Upload-Length": {"description": "The whole file's size", "schema": _DIGITS},
        "Upload-Metadata": {"description": "The metadata it was created with", "schema": _TEXT},
        "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
    },
)
CHUNK_BODY = {
    "required": True,
    "content": {OFFSET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
}
FIRST_CHUNK_BODY = {**CHUNK_BODY, "required": False}

OPTIONS_OPERATION: dict[str, Any] = {
    "operationId": "tus_options",
    "summary": "What the tus server supports (version, extensions, largest upload)",
    "tags": ["uploads"],
    "parameters": [],
    "responses": {
        "204": {
            "description": "The server's tus capabilities",
            "headers": {
                "Tus-Version": {"schema": {"type": "string", "enum": [TUS_VERSION]}},
                "Tus-Extension": {"schema": {"type": "string", "enum": [TUS_EXTENSIONS]}},
                "Tus-Max-Size": {"schema": _DIGITS},
                "Tus-Checksum-Algorithm": {"schema": {"type": "string", "enum": ["sha1"]}},
            },
        },
        "500": {
            "description": "Server error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        },
    },
}
