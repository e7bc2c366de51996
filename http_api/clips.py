"""/api/clips: 24-hour stories (seed 000)."""

from __future__ import annotations

from typing import Any

from http_api import schemas as s
from http_api.routing import Call, RouteTable, parse_uuid
from http_api.uploads import receive_form, validate_fields
from reelwire.domain import clips, media
from reelwire.domain.errors import ValidationFailed

routes = RouteTable()


@routes.post(
    "/api/clips/upload",
    rate="upload",
    tag="clips",
    auth="required",
    form=s.ClipUploadForm,
    form_file="clip",
    response=s.ClipUploadOut,
    status=201,
    errors=(400, 401, 404, 413, 415),
)
async def upload_clip(call: Call[Any]) -> dict[str, Any]:
    """Post a clip (image or video) that disappears after 24 hours."""
    ctx = call.services
    limit = ctx.settings.max_clip_bytes
    too_large = media.too_large(limit)
    async with receive_form(
        call.request,
        spool_dir=ctx.spool_dir,
        file_fields=("clip",),
        text_fields=("caption", "video_id"),
        max_bytes=limit,
        too_large=too_large,
    ) as upload:
        form = validate_fields(s.ClipUploadForm, upload)
        assert isinstance(form, s.ClipUploadForm)
        if upload.path is None and form.video_id:
            video_id = parse_uuid(form.video_id, media.VIDEO_NOT_FOUND)
            return await clips.clip_from_library(ctx, call.user, video_id, form.caption)
        if upload.path is None:
            raise ValidationFailed(
                "No clip file provided", field_errors={"clip": ["No clip file provided"]}
            )
        return await clips.upload_clip(ctx, call.user, upload.path, upload.filename, form.caption)


@routes.delete(
    "/api/clips/{clip_id}", tag="clips", auth="required", response=s.MessageOut, errors=(401, 404)
)
async def delete_clip(call: Call[Any]) -> dict[str, Any]:
    """Delete your clip and its media (404 "Clip not found or unauthorized" otherwise)."""
    clip_id = call.path_uuid("clip_id", message=clips.CLIP_NOT_FOUND)
    return await clips.delete_clip(call.services, call.user, clip_id)
