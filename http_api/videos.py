"""/api/videos: upload, read, status, stream, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from http_api import schemas as s
from http_api.media_files import serve_blob
from http_api.routing import Call, RouteTable
from http_api.uploads import receive_video
from reelwire.domain import media, present

routes = RouteTable()


@routes.post(
    "/api/videos",
    tag="videos",
    auth="required",
    form=s.VideoUploadForm,
    form_file="video_file",
    response=s.VideoUploadOut,
    status=201,
    errors=(400, 401, 413, 415),
)
async def upload_video(call: Call[Any]) -> dict[str, Any]:
    """Upload a video (multipart `video_file`); probed now, transcoded in the background."""
    row = await receive_video(
        call, file_field="video_file", form_model=s.VideoUploadForm, source="upload"
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
    "/api/videos/{video_id}", tag="videos", auth="optional", response=s.VideoOut, errors=(404,)
)
async def get_video(call: Call[Any]) -> dict[str, Any]:
    """The full video object."""
    return await media.get_video(call.services, call.path_uuid("video_id", "Video"), call.principal)


@routes.delete(
    "/api/videos/{video_id}",
    tag="videos",
    auth="required",
    response=s.MessageOut,
    errors=(401, 403, 404),
)
async def delete_video(call: Call[Any]) -> dict[str, Any]:
    """Delete your video and every rendition, thumbnail and storyboard of it."""
    return await media.delete_video(call.services, call.path_uuid("video_id", "Video"), call.user)


@routes.get(
    "/api/videos/{video_id}/status",
    tag="videos",
    auth="required",
    response=s.VideoStatusOut,
    errors=(401, 403, 404),
)
async def video_status(call: Call[Any]) -> dict[str, Any]:
    """Processing status and progress (seed 003; owner only)."""
    return await media.video_status(call.services, call.path_uuid("video_id", "Video"), call.user)


@routes.get("/api/videos/{video_id}/stream", tag="videos", auth="optional", errors=(404, 416))
async def stream_video(call: Call[Any]) -> web.StreamResponse:
    """The original file, with HTTP Range support (seed 004)."""
    key, content_type = await media.original_for_stream(
        call.services, call.path_uuid("video_id", "Video"), call.principal
    )
    return await serve_blob(call.request, call.services, key, content_type=content_type)
