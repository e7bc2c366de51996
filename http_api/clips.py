"""/api/clips: 24-hour stories (the Stories API)."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from http_api.routing import Call, RouteTable, page_of
from http_api.uploads import receive_form, validate_fields
from reelwire.domain import clips, media
from reelwire.domain.errors import Forbidden, Unauthorized, ValidationFailed
from reelwire.domain.schemas.clips import (
    CleanupOut,
    ClipReactionBody,
    ClipReactionsOut,
    ClipsOut,
    ClipUploadForm,
    ClipUploadOut,
    ClipViewersOut,
    ClipViewOut,
    FollowedClipsQuery,
    UserClipsOut,
)
from reelwire.domain.schemas.common import MessageOut, PageQuery, parse_uuid

routes = RouteTable()


@routes.post(
    "/api/clips/upload",
    rate="upload",
    tag="clips",
    unauthorized="Unauthorized",
    auth="required",
    form=ClipUploadForm,
    form_file="clip",
    response=ClipUploadOut,
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
        form = validate_fields(ClipUploadForm, upload)
        assert isinstance(form, ClipUploadForm)
        if upload.path is None and form.video_id:
            video_id = parse_uuid(form.video_id, media.VIDEO_NOT_FOUND)
            return await clips.clip_from_library(ctx, call.user, video_id, form.caption)
        if upload.path is None:
            raise ValidationFailed(
                "No clip file provided", field_errors={"clip": ["No clip file provided"]}
            )
        return await clips.upload_clip(ctx, call.user, upload.path, upload.filename, form.caption)


@routes.delete(
    "/api/clips/{clip_id}",
    tag="clips",
    unauthorized="Unauthorized",
    auth="required",
    response=MessageOut,
    errors=(401, 404),
    success_envelope=False,  # the Stories API answers `{message}` alone
)
async def delete_clip(call: Call[Any]) -> dict[str, Any]:
    """Delete your clip and its media (404 "Clip not found or unauthorized" otherwise)."""
    clip_id = call.path_uuid("clip_id", message=clips.CLIP_NOT_FOUND)
    return await clips.delete_clip(call.services, call.user, clip_id)


@routes.get(
    "/api/clips/user/{user_id}",
    tag="clips",
    unauthorized="Unauthorized",
    auth="required",
    response=UserClipsOut,
    errors=(401, 404),
)
async def user_clips(call: Call[Any]) -> dict[str, Any]:
    """A user's clips that have not expired, newest first."""
    return await clips.user_clips(call.services, call.path_uuid("user_id", "User"))


@routes.get(
    "/api/clips/all",
    tag="clips",
    unauthorized="Unauthorized",
    auth="required",
    query=FollowedClipsQuery,
    response=ClipsOut,
    errors=(401,),
)
async def followed_clips(call: Call[Any]) -> web.Response:
    """Clips of everyone you follow, newest first, each with `uploaded_by`."""
    body = await clips.followed_clips_json(call.services, call.user, call.query.limit)
    return web.Response(body=body, content_type="application/json")


@routes.post(
    "/api/clips/cleanup/expired",
    tag="clips",
    unauthorized="Unauthorized",
    auth="optional",
    response=CleanupOut,
    errors=(401, 403),
)
async def cleanup_expired(call: Call[Any]) -> dict[str, Any]:
    """Delete expired clips now (admins, or `X-API-Key` set to CLEANUP_API_KEY)."""
    key = call.services.settings.cleanup_api_key
    sent = call.request.headers.get("X-API-Key")
    if sent is not None:
        if not key or not hmac.compare_digest(sent.encode(), key.encode()):
            raise Forbidden("Invalid API key")
    elif call.principal is None:
        raise Unauthorized("An admin token or X-API-Key is required")
    elif not call.principal.is_admin:
        raise Forbidden("Only admins can run the cleanup")
    return await clips.cleanup_expired(call.services)


@routes.post(
    "/api/clips/{clip_id}/view",
    tag="clips",
    unauthorized="Unauthorized",
    auth="required",
    response=ClipViewOut,
    errors=(401, 404),
)
async def view_clip(call: Call[Any]) -> dict[str, Any]:
    """Mark a clip seen; each viewer counts once."""
    clip_id = call.path_uuid("clip_id", message=clips.CLIP_NOT_FOUND)
    return await clips.view(call.services, call.user, clip_id)


@routes.get(
    "/api/clips/{clip_id}/viewers",
    tag="clips",
    unauthorized="Unauthorized",
    auth="required",
    query=PageQuery,
    response=ClipViewersOut,
    errors=(400, 401, 403, 404),
)
async def clip_viewers(call: Call[Any]) -> dict[str, Any]:
    """Who viewed your clip (owner only), newest first, by `page` or `cursor`."""
    clip_id = call.path_uuid("clip_id", message=clips.CLIP_NOT_FOUND)
    return await clips.viewers(call.services, call.user, clip_id, page_of(call.query))


@routes.post(
    "/api/clips/{clip_id}/reactions",
    tag="clips",
    unauthorized="Unauthorized",
    auth="required",
    rate="like",
    body=ClipReactionBody,
    response=ClipReactionsOut,
    errors=(400, 401, 404, 429),
)
async def react_to_clip(call: Call[ClipReactionBody]) -> dict[str, Any]:
    """React to a clip with an emoji."""
    clip_id = call.path_uuid("clip_id", message=clips.CLIP_NOT_FOUND)
    return await clips.react(call.services, call.user, clip_id, call.body.emoji)
