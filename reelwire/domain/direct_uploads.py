"""Direct uploads (the CLUTCH and upload-flow APIs): the client asks for a signed URL, sends the
bytes there, and a completion step checks what was stored (size, type by content, probe) before
queueing it.

On S3 the URL is a presigned PUT whose signature covers the declared Content-Type and
Content-Length. On local disk it is a PUT route of ours carrying an HMAC-signed token (what,
where, how big, which type, until when); the server receives the bytes itself, so completion
runs as soon as the PUT ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from uuid import UUID

import orjson

from reelwire.domain import clips, events, media, media_access, present, videos
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import Forbidden, NotFound, ValidationFailed
from reelwire.domain.visibility import may_see_row
from storage import blob_keys
from storage import videos as video_rows
from transcode.probe import CONTENT_TYPES, InvalidMedia, probe

VIDEO_TYPES = {
    t for f, t in CONTENT_TYPES.items() if f in ("mp4", "mov", "mkv", "webm", "avi", "flv", "wmv")
}
THUMBNAIL_TYPES = {"image/jpeg", "image/png", "image/webp"}


@dataclass(frozen=True)
class UploadGrant:
    """What a signed local upload URL allows."""

    key: str
    video_id: str
    user_id: str
    size: int
    content_type: str
    expires: int
    purpose: str  # "video" or "thumbnail"


def _signing_key(ctx: Services) -> bytes:
    # Derived from the JWT secret with a label, so a token of one kind never verifies as another.
    assert ctx.settings.jwt_secret_key is not None
    return hmac.new(
        ctx.settings.jwt_secret_key.encode(), b"reelwire upload url v1", hashlib.sha256
    ).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_grant(ctx: Services, grant: UploadGrant) -> str:
    """The token of a local upload URL."""
    payload = _b64(orjson.dumps(grant.__dict__))
    signature = hmac.new(_signing_key(ctx), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


def verify_grant(ctx: Services, token: str) -> UploadGrant:
    """The grant of an unaltered, unexpired token; 403 otherwise."""
    payload, _, signature = token.partition(".")
    try:
        expected = hmac.new(_signing_key(ctx), payload.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            raise Forbidden("Upload URL signature is invalid")
        grant = UploadGrant(**orjson.loads(_unb64(payload)))
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise Forbidden("Upload URL signature is invalid") from None
    if grant.expires < time.time():
        raise Forbidden("Upload URL has expired")
    return grant


async def request_video_upload(
    ctx: Services,
    principal: Principal,
    *,
    filename: str,
    size: int,
    content_type: str,
    base_url: str,
    title: str | None = None,
) -> dict[str, Any]:
    """Create a video awaiting its bytes and a URL to PUT them to."""
    # The direct-upload API's messages ("Invalid file type", "File too large"); the field
    # error and the details say exactly what is accepted.
    if content_type not in VIDEO_TYPES:
        message = (
            f"Unsupported video type {content_type}; use one of {', '.join(sorted(VIDEO_TYPES))}"
        )
        raise ValidationFailed("Invalid file type", field_errors={"content_type": [message]})
    if size > ctx.settings.max_video_bytes:
        raise media.too_large(ctx.settings.max_video_bytes, "File too large")
    video_id = uuid.uuid4()
    key = blob_keys.video_original(video_id)
    expires_at = datetime.now(UTC) + timedelta(seconds=ctx.settings.upload_url_ttl)
    async with ctx.db.acquire() as conn:
        await video_rows.insert(
            conn,
            video_id,
            principal.user_id,
            title=(title or filename)[:100],
            status="uploading",
            source="direct",
            source_key=key,
            original_filename=filename,
            declared_size=size,
            declared_type=content_type,
            upload_expires_at=expires_at,
        )
    body = await _grant_body(
        ctx, key, video_id, principal, size, content_type, expires_at, "video", base_url
    )
    return {**body, "provider": "reelwire"}


async def request_thumbnail_upload(
    ctx: Services,
    principal: Principal,
    *,
    video_id: UUID,
    filename: str,
    size: int,
    content_type: str,
    base_url: str,
) -> dict[str, Any]:
    """A URL to PUT a custom thumbnail of one of the caller's videos to."""
    if content_type not in THUMBNAIL_TYPES:
        message = f"Unsupported image type {content_type}; use JPEG, PNG or WebP"
        raise ValidationFailed(message, field_errors={"content_type": [message]})
    if size > ctx.settings.max_image_bytes:
        raise media.too_large(ctx.settings.max_image_bytes)
    await _own_video(ctx, principal, video_id)
    key = blob_keys.video_custom_thumbnail(video_id)
    expires_at = datetime.now(UTC) + timedelta(seconds=ctx.settings.upload_url_ttl)
    return await _grant_body(
        ctx, key, video_id, principal, size, content_type, expires_at, "thumbnail", base_url
    )


async def _grant_body(
    ctx: Services,
    key: str,
    video_id: UUID,
    principal: Principal,
    size: int,
    content_type: str,
    expires_at: datetime,
    purpose: str,
    base_url: str,
) -> dict[str, Any]:
    """Where and how to send the bytes, and where to say they are there."""
    presign = getattr(ctx.blobs, "presigned_put", None)
    if presign is not None:
        url: str = await presign(key, content_type, size, ctx.settings.upload_url_ttl)
    else:
        grant = UploadGrant(
            key,
            str(video_id),
            str(principal.user_id),
            size,
            content_type,
            int(expires_at.timestamp()),
            purpose,
        )
        url = f"{base_url}/api/uploads/{sign_grant(ctx, grant)}"
    complete = f"/api/videos/{video_id}/upload-complete"
    return {
        "video_id": str(video_id),
        "upload_url": url,
        "expires_at": present.iso(expires_at),
        "method": "PUT",
        "headers": {"Content-Type": content_type},
        "complete_url": complete if purpose == "video" else f"{complete}?kind={purpose}",
    }


async def receive_local_upload(ctx: Services, grant: UploadGrant, spool: Path) -> dict[str, Any]:
    """The bytes of a local signed PUT arrived: store them and complete at once."""
    principal = Principal(UUID(grant.user_id), "user", uuid.UUID(int=0))
    await ctx.blobs.put_file(grant.key, spool, grant.content_type, consume=True)
    return await complete(ctx, principal, UUID(grant.video_id), grant.purpose)


async def complete(
    ctx: Services, principal: Principal, video_id: UUID, kind: str = "video"
) -> dict[str, Any]:
    """Check the stored object and queue it (video) or attach it (thumbnail)."""
    row = await _own_video(ctx, principal, video_id)
    if kind == "thumbnail":
        return await _complete_thumbnail(ctx, row, principal)
    if row["status"] != "uploading":
        return await videos.get(ctx, video_id, principal)
    if row["source"] != "direct":
        raise ValidationFailed("This video is being uploaded to its resumable upload URL")
    key = row["source_key"]
    size = await ctx.blobs.size(key)
    if size is None:
        raise ValidationFailed("The file has not been uploaded yet")
    if size != row["declared_size"]:
        reason = f"Uploaded {size} bytes but {row['declared_size']} were declared"
        await _reject(ctx, row, reason)
    with tempfile.TemporaryDirectory(dir=ctx.spool_dir) as scratch:
        local = await ctx.blobs.local_file(key, Path(scratch) / "source")
        try:
            info = await media.check_video(ctx, local, "file")
        except ValidationFailed as exc:
            await _reject(ctx, row, str(exc))
    async with ctx.db.acquire() as conn:
        await media.mark_checked(conn, video_id, info, size)
    await media.queue_transcode(ctx, video_id, row["owner_id"])
    return await videos.get(ctx, video_id, principal)


async def _complete_thumbnail(ctx: Services, row: Any, owner: Principal) -> dict[str, Any]:
    key = blob_keys.video_custom_thumbnail(row["id"])
    head = await ctx.blobs.read_head(key, 64) if await ctx.blobs.size(key) else b""
    if not head:
        raise ValidationFailed("The thumbnail has not been uploaded yet")
    kind = _image_kind(head)
    if kind is None:
        await ctx.blobs.delete(key)
        raise ValidationFailed("The thumbnail is not a JPEG, PNG or WebP image")
    await _check_thumbnail_pixels(ctx, key)
    async with ctx.db.acquire() as conn:
        await video_rows.update(conn, row["id"], thumbnail_key=key)
    await ctx.video_cache.invalidate(row["id"])
    answer = {"thumbnail_url": ctx.blobs.url(key)}
    if media_access.needs_signing(row):
        answer = media_access.sign_urls(ctx, answer, owner)
    return answer


async def _check_thumbnail_pixels(ctx: Services, key: str) -> None:
    """The thumbnail's size from its header (the probe decodes nothing), against
    MAX_IMAGE_PIXELS; a refused one is deleted."""
    with tempfile.TemporaryDirectory(dir=ctx.spool_dir) as scratch:
        local = await ctx.blobs.local_file(key, Path(scratch) / "thumbnail")
        try:
            info = await probe(local)
            if info.kind != "image":
                raise InvalidMedia("Expected an image")
            clips.check_image_limits(ctx, info, "thumbnail")
        except InvalidMedia as exc:
            await ctx.blobs.delete(key)
            message = f"The thumbnail is not a usable image: {exc}"
            raise ValidationFailed(message, field_errors={"thumbnail": [message]}) from None
        except ValidationFailed:
            await ctx.blobs.delete(key)
            raise


def _image_kind(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


async def _reject(ctx: Services, row: Any, reason: str) -> NoReturn:
    async with ctx.db.acquire() as conn:
        await video_rows.update(conn, row["id"], status="failed", error=reason)
    await ctx.blobs.delete(row["source_key"])
    await events.processing(ctx, row["id"], row["owner_id"], "failed", 0.0, reason)
    raise ValidationFailed(reason, field_errors={"file": [reason]})


async def _own_video(ctx: Services, principal: Principal, video_id: UUID) -> Any:
    async with ctx.db.acquire() as conn:
        row = await video_rows.get(conn, video_id)
    if row is None or not may_see_row(row, principal):
        raise NotFound(media.VIDEO_NOT_FOUND)
    if row["owner_id"] != principal.user_id:
        raise Forbidden("Access denied")
    return row
