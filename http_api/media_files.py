"""Serving stored media to players.

Watching is not calling the API: media has its own per-address limit (`RATE_LIMIT_MEDIA`),
answers any origin (players embed anywhere; nothing here uses cookies), and says how long it
may be cached. Segments, images and storyboards never change under a key, so public ones are
`immutable` for a year; playlists are cached for seconds. Local files answer `Range` (206/416)
and `If-None-Match` (304) themselves; on S3 without a CDN, playlists and storyboard indexes are
proxied (their relative URIs keep resolving here) and everything else redirects to a
short-lived presigned GET.

Who may fetch what is `reelwire.domain.media_access`: plain URLs for public and unlisted videos
(checked against the video's visibility on every request), signed URLs for the rest.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from http_api.routing import Call, RouteTable
from reelwire.domain import media_access, videos
from reelwire.domain.context import Services
from reelwire.domain.errors import Forbidden, NotFound
from storage import blob_keys
from storage.blobs import LocalBlobStore, check_key, content_type_for

routes = RouteTable()

# Playlists and the storyboard index: cached for seconds, and on S3 proxied (their relative
# URIs must keep resolving here).
_PLAYLISTS = (".m3u8", ".vtt")
YEAR = 31_536_000
PLAYLIST_SECONDS = 10
PRESIGNED_SECONDS = 900

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges, ETag",
}


@routes.get("/media/{key:.+}", tag="media", rate="media", head=True, errors=(403, 404, 416, 429))
async def media_file(call: Call[Any]) -> web.StreamResponse:
    """A stored file: HLS playlists and segments, thumbnails, storyboards. Public videos at
    `/media/<key>`; private videos and clips only at `/media/signed/<token>/<key>`."""
    path = call.request.match_info["key"]
    signed = media_access.split_signed(path)
    key = signed.key if signed is not None else path
    if not servable(key):
        raise NotFound("Not found")
    ctx = call.services
    if signed is not None:
        if not media_access.verify(ctx, signed):
            raise Forbidden("This media link is invalid or has expired; reload the page")
        keep = media_access.cache_seconds(signed)
        if key.endswith(_PLAYLISTS) and await _growing(ctx, key):
            cache = "private, no-cache"
        elif key.endswith(_PLAYLISTS):
            cache = f"private, max-age={min(keep, PLAYLIST_SECONDS)}"
        else:
            cache = f"private, max-age={min(keep, YEAR)}, immutable"
        return await serve_blob(
            call.request, ctx, key, cache_control=cache, presign_for=min(keep, PRESIGNED_SECONDS)
        )
    obj = media_access.media_object(key)
    if obj is None or obj.kind != blob_keys.VIDEOS:
        raise NotFound("Not found")
    video = await videos.load(ctx, obj.object_id)
    if not media_access.plain_allowed(video):
        raise NotFound("Not found")
    if key.endswith(_PLAYLISTS):
        growing = video is not None and video["status"] != "ready"
        cache = "public, no-cache" if growing else f"public, max-age={PLAYLIST_SECONDS}"
    else:
        cache = f"public, max-age={YEAR}, immutable"
    return await serve_blob(call.request, ctx, key, cache_control=cache)


async def _growing(ctx: Services, key: str) -> bool:
    """A playlist of a video still being transcoded: it grows, so caches must ask again."""
    obj = media_access.media_object(key)
    if obj is None or obj.kind != blob_keys.VIDEOS:
        return False
    video = await videos.load(ctx, obj.object_id)
    return video is not None and video["status"] != "ready"


# What /media serves: the outputs of the pipeline, never an original (those go through
# /api/videos/{id}/stream, which checks who asks) and nothing else stored beside them.
_SERVED_SUFFIXES = (".m3u8", ".ts", ".m4s", ".vtt", ".jpg", ".webp", ".mp4")
_SERVED_NAMES = (blob_keys.CUSTOM_THUMBNAIL,)
MAX_KEY_LENGTH = 512


def servable(key: str) -> bool:
    """A media output under its one canonical spelling: no empty, `.` or `..` segments, no
    trailing slash (a file system would ignore them, and `original/` is not `original`)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return False
    try:
        check_key(key)
    except ValueError:
        return False
    segments = key.split("/")
    if any(part in ("", ".", "..") or len(part) > 255 for part in segments):
        return False
    name = segments[-1]
    return name.endswith(_SERVED_SUFFIXES) or name in _SERVED_NAMES


async def media_preflight(request: web.Request) -> web.StreamResponse:
    """CORS preflight for media: any origin, reading only."""
    headers = {
        **CORS_HEADERS,
        "Access-Control-Allow-Methods": "GET, HEAD",
        "Access-Control-Allow-Headers": request.headers.get(
            "Access-Control-Request-Headers", "Range"
        ),
        "Access-Control-Max-Age": "86400",
    }
    return web.Response(status=204, headers=headers)


async def add_media_cors(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: media answers (errors included) are readable by any origin."""
    if request.path.startswith("/media/"):
        for name, value in CORS_HEADERS.items():
            response.headers.setdefault(name, value)


async def serve_blob(
    request: web.Request,
    ctx: Services,
    key: str,
    *,
    content_type: str | None = None,
    cache_control: str = "private, no-cache",
    presign_for: int = PRESIGNED_SECONDS,
) -> web.StreamResponse:
    """Answer with the object behind `key`, whichever backend holds it."""
    content_type = content_type or content_type_for(key)
    blobs = ctx.blobs
    headers = {"Content-Type": content_type, "Cache-Control": cache_control}
    if isinstance(blobs, LocalBlobStore):
        path = blobs.path(key)
        if not path.is_file():
            raise NotFound("Not found")
        # FileResponse answers Range (206/416) and If-None-Match / If-Modified-Since (304).
        return web.FileResponse(path, headers=headers)
    from storage.s3 import S3BlobStore

    assert isinstance(blobs, S3BlobStore)
    if key.endswith(_PLAYLISTS):
        body = await blobs.read_bytes_or_none(key)
        if body is None:
            raise NotFound("Not found")
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        headers["ETag"] = etag
        if etag in _if_none_match(request):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)
    if await blobs.size(key) is None:
        raise NotFound("Not found")
    url = await blobs.presigned_get(key, expires=max(1, presign_for))
    raise web.HTTPFound(url, headers={"Cache-Control": f"private, max-age={presign_for // 2}"})


def _if_none_match(request: web.Request) -> set[str]:
    raw = request.headers.get("If-None-Match", "")
    return {tag.strip().removeprefix("W/") for tag in raw.split(",") if tag.strip()}
