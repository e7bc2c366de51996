"""/api/videos: list, upload, read, edit, like, view, status, stream, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from http_api.media_files import serve_blob
from http_api.routing import Call, RouteTable, page_of
from http_api.uploads import receive_video
from reelwire.domain import media, present, videos
from reelwire.domain.schemas.common import MessageOut
from reelwire.domain.schemas.videos import (
    ReactionBody,
    ReactionOut,
    VideoListOut,
    VideoListQuery,
    VideoPatchBody,
    VideoStatusOut,
    VideoUploadForm,
    VideoUploadOut,
    VideoWithReactionOut,
    ViewBody,
    ViewOut,
)

routes = RouteTable()


@routes.get(
    "/api/videos",
    tag="videos",
    auth="optional",
    query=VideoListQuery,
    response=VideoListOut,
    errors=(400,),
)
async def list_videos(call: Call[Any]) -> dict[str, Any]:
    """Public, ready videos: `sort=latest|popular|trending`, filters, page or `cursor`."""
    q = call.query
    query = videos.VideoQuery(
        sort=q.sort, category=q.category, tags=q.tag_list(), q=q.q, author=q.author
    )
    return await videos.list_public(call.services, query, page_of(q))


@routes.post(
    "/api/videos",
    rate="upload",
    tag="videos",
    auth="required",
    form=VideoUploadForm,
    form_file="video_file",
    response=VideoUploadOut,
    status=201,
    errors=(400, 401, 413, 415),
)
async def upload_video(call: Call[Any]) -> dict[str, Any]:
    """Upload a video (multipart `video_file`); probed now, transcoded in the background."""
    row = await receive_video(
        call, file_field="video_file", form_model=VideoUploadForm, source="upload"
    )
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "description": row["description"],
        "status": row["status"],
        "created_at": present.iso(row["created_at"]),
        "message": media.UPLOADED_MESSAGE,
    }


@routes.get(
    "/api/videos/{video_id}",
    tag="videos",
    auth="optional",
    response=VideoWithReactionOut,
    errors=(404,),
)
async def get_video(call: Call[Any]) -> dict[str, Any]:
    """The full video object, with live counts and your own reaction."""
    return await videos.get(call.services, call.path_uuid("video_id", "Video"), call.principal)


@routes.patch(
    "/api/videos/{video_id}",
    tag="videos",
    auth="required",
    body=VideoPatchBody,
    response=VideoWithReactionOut,
    errors=(400, 401, 403, 404),
)
async def edit_video(call: Call[VideoPatchBody]) -> dict[str, Any]:
    """Edit the title, description, tags, category or visibility of your video."""
    video_id = call.path_uuid("video_id", "Video")
    return await videos.update(call.services, call.user, video_id, call.body.changes())


@routes.post(
    "/api/videos/{video_id}/like",
    tag="videos",
    auth="required",
    rate="like",
    body=ReactionBody,
    response=ReactionOut,
    errors=(400, 401, 404, 429),
)
async def like_video(call: Call[ReactionBody]) -> dict[str, Any]:
    """Like, dislike or remove your reaction (one per user per video)."""
    video_id = call.path_uuid("video_id", "Video")
    return await videos.react(call.services, call.user, video_id, call.body.action)


@routes.post(
    "/api/videos/{video_id}/view",
    tag="videos",
    auth="optional",
    body=ViewBody,
    body_required=False,
    response=ViewOut,
    errors=(400, 404, 429),
)
async def view_video(call: Call[ViewBody]) -> dict[str, Any]:
    """Count a view (and watch time); the answer includes views not yet flushed."""
    video_id = call.path_uuid("video_id", "Video")
    watched = call.body.watch_time_seconds or 0
    return await videos.view(call.services, video_id, call.principal, watched)


@routes.delete(
    "/api/videos/{video_id}",
    tag="videos",
    auth="required",
    response=MessageOut,
    errors=(401, 403, 404),
)
async def delete_video(call: Call[Any]) -> dict[str, Any]:
    """Delete your video and every rendition, thumbnail and storyboard of it."""
    return await media.delete_video(call.services, call.path_uuid("video_id", "Video"), call.user)


@routes.get(
    "/api/videos/{video_id}/status",
    tag="videos",
    unauthorized="Unauthorized",
    auth="required",
    response=VideoStatusOut,
    errors=(401, 403, 404),
)
async def video_status(call: Call[Any]) -> dict[str, Any]:
    """Processing status and progress (the upload-flow API; owner only)."""
    return await media.video_status(call.services, call.path_uuid("video_id", "Video"), call.user)


@routes.get("/api/videos/{video_id}/stream", tag="videos", auth="optional", errors=(404, 416))
async def stream_video(call: Call[Any]) -> web.StreamResponse:
    """The original file, with HTTP Range support (the Clipsy API)."""
    key, content_type = await media.original_for_stream(
        call.services, call.path_uuid("video_id", "Video"), call.principal
    )
    return await serve_blob(call.request, call.services, key, content_type=content_type)
