"""Serving stored media: local files with Range (206/416) and long-lived caching; on S3 without
a CDN, playlists are proxied (so their relative URIs keep resolving here) and everything else
redirects to a short-lived presigned GET."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from http_api.routing import Call, RouteTable
from reelwire.domain.context import Services
from reelwire.domain.errors import NotFound
from storage.blobs import LocalBlobStore, check_key, content_type_for

routes = RouteTable()

_PROXIED = (".m3u8", ".vtt")


@routes.get("/media/{key:.+}", tag="media", errors=(404, 416))
async def media_file(call: Call[Any]) -> web.StreamResponse:
    """A stored file: HLS playlists and segments, thumbnails, storyboards, originals."""
    key = call.request.match_info["key"]
    try:
        check_key(key)
    except ValueError:
        raise NotFound("Not found") from None
    if key.endswith("/original"):
        # Originals are served by /api/videos/{id}/stream, which checks visibility.
        raise NotFound("Not found")
    return await serve_blob(call.request, call.services, key)


async def serve_blob(
    request: web.Request, ctx: Services, key: str, *, content_type: str | None = None
) -> web.StreamResponse:
    """Answer with the object behind `key`, whichever backend holds it."""
    content_type = content_type or content_type_for(key)
    blobs = ctx.blobs
    if isinstance(blobs, LocalBlobStore):
        path = blobs.path(key)
        if not path.is_file():
            raise NotFound("Not found")
        response = web.FileResponse(
            path, headers={"Content-Type": content_type, "Cache-Control": _cache_control(key)}
        )
        return response
    from storage.s3 import S3BlobStore

    assert isinstance(blobs, S3BlobStore)
    if await blobs.size(key) is None:
        raise NotFound("Not found")
    if key.endswith(_PROXIED):
        body = await blobs.read_bytes(key)
        return web.Response(
            body=body, content_type=content_type, headers={"Cache-Control": _cache_control(key)}
        )
    raise web.HTTPFound(await blobs.presigned_get(key, expires=900))


def _cache_control(key: str) -> str:
    # Segments and images never change under a key; playlists may be rewritten by a re-run.
    if key.endswith((".m3u8", ".vtt")):
        return "public, max-age=10"
    return "public, max-age=86400"
