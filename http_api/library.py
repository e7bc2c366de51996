"""The S3 video library API: the caller's own uploads, by page, recency or storage key."""

from __future__ import annotations

from typing import Any

from http_api.routing import Call, RouteTable
from http_api.uploads import receive_video
from reelwire.domain import library
from reelwire.domain.schemas.library import (
    LibraryPageOut,
    LibraryQuery,
    LibraryUploadForm,
    LibraryVideoOut,
    RecentOut,
    RecentQuery,
)

routes = RouteTable()


@routes.get(
    "/api/v1/videos/s3-videos",
    tag="library",
    auth="required",
    query=LibraryQuery,
    response=LibraryPageOut,
    errors=(400, 401),
)
async def library_page(call: Call[Any]) -> dict[str, Any]:
    """Your videos, searchable by file name, sorted by a whitelisted field."""
    q: LibraryQuery = call.query
    return await library.page(
        call.services,
        call.user,
        page=q.page,
        page_size=q.page_size,
        search=q.search,
        sort_by=q.sort_by,
        descending=q.sort_order == "desc",
    )


@routes.get(
    "/api/v1/videos/s3-videos/recent",
    tag="library",
    auth="required",
    query=RecentQuery,
    response=RecentOut,
    errors=(400, 401),
)
async def library_recent(call: Call[Any]) -> dict[str, Any]:
    """Your most recent videos."""
    return await library.recent(call.services, call.user, call.query.limit)


@routes.get(
    "/api/v1/videos/s3-videos/by-key/{s3_key:.+}",
    tag="library",
    auth="required",
    response=LibraryVideoOut,
    errors=(401, 404),
)
async def library_by_key(call: Call[Any]) -> dict[str, Any]:
    """One of your videos by its storage key."""
    return await library.by_key(call.services, call.user, call.request.match_info["s3_key"])


@routes.post(
    "/api/v1/upload/video",
    rate="upload",
    tag="library",
    auth="required",
    form=LibraryUploadForm,
    form_file="file",
    response=LibraryVideoOut,
    status=201,
    errors=(400, 401, 413, 415),
)
async def library_upload(call: Call[Any]) -> dict[str, Any]:
    """Upload a video to your library (multipart `file`); it is transcoded like any video."""
    row = await receive_video(
        call,
        file_field="file",
        form_model=LibraryUploadForm,
        source="library",
        visibility="private",
    )
    return library.shape(call.services, row, call.user)
