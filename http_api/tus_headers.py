"""Reading and writing tus headers: the version, numbers, `Upload-Checksum`,
`Upload-Metadata` (checked by the multipart routes' own models) and where an upload stands."""

from __future__ import annotations

import base64
import binascii
import email.utils
from typing import Any

from aiohttp import web

from http_api.routing import validate_input
from http_api.tus_docs import TUS_VERSION
from reelwire.domain import resumable
from reelwire.domain.errors import PreconditionFailed, ValidationFailed
from reelwire.domain.resumable import Checksum, NewUpload, UploadState
from reelwire.domain.schemas.clips import ClipUploadForm
from reelwire.domain.schemas.resumable import METADATA_KEYS, UploadFileInfo
from reelwire.domain.schemas.videos import VideoUploadForm

EXPOSED_HEADERS = (
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Expires",
    "Upload-Metadata",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Reelwire-Video-Id",
    "Reelwire-Clip-Id",
)


def check_version(request: web.Request) -> None:
    """412 with `Tus-Version` unless the client speaks our version."""
    version = request.headers.get("Tus-Resumable")
    if version != TUS_VERSION:
        raise PreconditionFailed(
            f"This server speaks tus {TUS_VERSION}; Tus-Resumable was {version or 'missing'}",
            headers={"Tus-Version": TUS_VERSION},
        )


def number(request: web.Request, name: str, *, minimum: int) -> int:
    """A header holding a whole number (400 naming it otherwise)."""
    raw = request.headers.get(name, "")
    if not (raw.isascii() and raw.isdecimal()) or len(raw) > 15 or int(raw) < minimum:
        message = f"{name} must be a whole number of at least {minimum}"
        raise ValidationFailed(message, field_errors={name: [message]})
    return int(raw)


def checksum(request: web.Request) -> Checksum | None:
    """`Upload-Checksum: sha1 <base64>`, if sent (400 when it is not that)."""
    raw = request.headers.get("Upload-Checksum")
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in resumable.CHECKSUM_ALGORITHMS:
        message = f"Unsupported checksum algorithm {algorithm[:20]!r}; use sha1"
        raise ValidationFailed(message, field_errors={"Upload-Checksum": [message]})
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 20:
        message = "Upload-Checksum must be `sha1 <base64 of the 20-byte digest>`"
        raise ValidationFailed(message, field_errors={"Upload-Checksum": [message]})
    return Checksum(algorithm, digest)


def new_upload(request: web.Request) -> NewUpload:
    """A creation's `Upload-Length` and `Upload-Metadata`, validated like a multipart form."""
    length = number(request, "Upload-Length", minimum=1)
    meta = _decode_metadata(request.headers.get("Upload-Metadata", ""))
    info = validate_input(UploadFileInfo, _pick(meta, UploadFileInfo), "metadata")
    if info.kind == "clip":
        clip = validate_input(ClipUploadForm, {"caption": meta.get("caption", "")}, "metadata")
        return NewUpload("clip", length, info.filename, info.filetype, caption=clip.caption)
    form = validate_input(VideoUploadForm, _pick(meta, VideoUploadForm), "metadata")
    return NewUpload(
        "video",
        length,
        info.filename,
        info.filetype,
        title=form.title,
        description=form.description,
        visibility=form.visibility,
    )


def _pick(meta: dict[str, str], model: Any) -> dict[str, str]:
    return {k: v for k, v in meta.items() if k in model.model_fields}


def _decode_metadata(header: str) -> dict[str, str]:
    """`key base64,key base64,key`: the keys Reelwire reads, decoded (others are ignored)."""
    meta: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, encoded = pair.partition(" ")
        if not key.isascii() or " " in encoded.strip() or key in meta:
            raise _bad_metadata(key[:40], "Malformed Upload-Metadata pair")
        if key not in METADATA_KEYS:
            continue
        try:
            meta[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise _bad_metadata(key, "Must be base64 of UTF-8 text.") from None
    return meta


def _bad_metadata(key: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Upload-Metadata: {message}", field_errors={key or "Upload-Metadata": [message]}
    )


def encode_metadata(meta: dict[str, str]) -> str:
    """`Upload-Metadata` for HEAD: what the upload was created with."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in meta.items() if value
    )


def state_headers(state: UploadState) -> dict[str, str]:
    """Where an upload stands: offset, expiry while unfinished, the video and clip it becomes."""
    headers = {"Upload-Offset": str(state.offset)}
    if state.state == "receiving":
        headers["Upload-Expires"] = email.utils.format_datetime(state.expires_at, usegmt=True)
    if state.video_id is not None:
        headers["Reelwire-Video-Id"] = str(state.video_id)
    if state.clip_id is not None:
        headers["Reelwire-Clip-Id"] = str(state.clip_id)
    return headers
