"""Direct uploads (the direct-upload API and the CLUTCH API): signed URLs, our signed PUT route,
and completion."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import aiofiles
import aiofiles.os

from http_api.routing import Call, RouteTable
from http_api.uploads import CHUNK
from http_api.urls import public_base_url
from reelwire.domain import direct_uploads
from reelwire.domain.errors import Forbidden, PayloadTooLarge, ValidationFailed
from reelwire.domain.schemas.common import parse_uuid
from reelwire.domain.schemas.uploads import (
    CompleteQuery,
    ThumbnailRequestBody,
    UploadRequestOut,
    UploadUrlBody,
    UploadUrlOut,
    VideoUploadRequestBody,
)

routes = RouteTable()


def _base_url(call: Call[Any]) -> str:
    return public_base_url(call.request)


@routes.post(
    "/api/videos/upload-url",
    rate="upload",
    tag="uploads",
    unauthorized="Unauthorized",
    auth="required",
    body=UploadUrlBody,
    response=UploadUrlOut,
    errors=(400, 401, 413),
)
async def upload_url(call: Call[UploadUrlBody]) -> dict[str, Any]:
    """A signed URL to PUT a video to directly (the upload-flow API)."""
    body = call.body
    result = await direct_uploads.request_video_upload(
        call.services,
        call.user,
        filename=body.filename,
        size=body.fileSize,
        content_type=body.mimeType,
        base_url=_base_url(call),
    )
    return {
        "videoId": result["video_id"],
        "uploadUrl": result["upload_url"],
        "provider": result["provider"],
        "expiresAt": result["expires_at"],
        "method": result["method"],
        "headers": result["headers"],
        "completeUrl": result["complete_url"],
    }


@routes.post(
    "/api/upload/video/request",
    rate="upload",
    tag="uploads",
    auth="required",
    body=VideoUploadRequestBody,
    response=UploadRequestOut,
    errors=(400, 401, 413),
)
async def video_upload_request(call: Call[VideoUploadRequestBody]) -> dict[str, Any]:
    """A presigned URL to upload a video to (the CLUTCH API)."""
    body = call.body
    result = await direct_uploads.request_video_upload(
        call.services,
        call.user,
        filename=body.filename,
        size=body.file_size,
        content_type=body.content_type,
        base_url=_base_url(call),
    )
    result.pop("provider")
    return result


@routes.post(
    "/api/upload/thumbnail/request",
    rate="upload",
    tag="uploads",
    auth="required",
    body=ThumbnailRequestBody,
    response=UploadRequestOut,
    errors=(400, 401, 403, 404, 413),
)
async def thumbnail_upload_request(call: Call[ThumbnailRequestBody]) -> dict[str, Any]:
    """A presigned URL to upload a custom thumbnail of your video to (the CLUTCH API)."""
    body = call.body
    return await direct_uploads.request_thumbnail_upload(
        call.services,
        call.user,
        video_id=parse_uuid(body.video_id, "Video not found"),
        filename=body.filename,
        size=body.file_size,
        content_type=body.content_type,
        base_url=_base_url(call),
    )


@routes.put("/api/uploads/{token}", rate=None, tag="uploads", errors=(400, 403, 413))
async def signed_put(call: Call[Any]) -> dict[str, Any]:
    """The signed PUT target on local storage (the token is the authorization)."""
    request, ctx = call.request, call.services
    grant = direct_uploads.verify_grant(ctx, request.match_info["token"])
    if request.content_type != grant.content_type:
        raise Forbidden(f"This URL accepts Content-Type {grant.content_type} only")
    if request.content_length is not None and request.content_length != grant.size:
        raise Forbidden(f"This URL accepts exactly {grant.size} bytes")
    # Unique per request: two PUTs to one URL must not write into the same spool file.
    spool = ctx.spool_dir / f"put-{grant.purpose}-{uuid.uuid4().hex}"
    try:
        size = 0
        async with aiofiles.open(spool, "wb") as handle:
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > grant.size:
                    raise PayloadTooLarge(f"This URL accepts exactly {grant.size} bytes")
                await handle.write(chunk)
        if size != grant.size:
            raise ValidationFailed(f"Received {size} bytes; {grant.size} were declared")
        return await direct_uploads.receive_local_upload(ctx, grant, spool)
    finally:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(spool)


@routes.post(
    "/api/videos/{video_id}/upload-complete",
    tag="uploads",
    auth="required",
    query=CompleteQuery,
    errors=(400, 401, 403, 404),
)
async def upload_complete(call: Call[Any]) -> dict[str, Any]:
    """Check a direct upload and queue it for processing (or attach the thumbnail)."""
    return await direct_uploads.complete(
        call.services, call.user, call.path_uuid("video_id", "Video"), call.query.kind
    )
