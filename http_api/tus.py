"""Resumable uploads at /api/uploads/: tus 1.0.0 with the creation, creation-with-upload,
termination, expiration and checksum (sha1) extensions. This module speaks the headers; the
uploads themselves are `reelwire.domain.resumable`'s.

`POST /api/uploads/` creates an upload (201, `Location`, the new video's id in
`Reelwire-Video-Id`), `HEAD` says its offset, `PATCH` appends a chunk, `DELETE` terminates it,
`OPTIONS` says what the server supports. Every answer carries `Tus-Resumable: 1.0.0`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from http_api import tus_docs as docs
from http_api import tus_headers
from http_api.openapi import documented
from http_api.routing import Call, RouteTable
from http_api.uploads import CHUNK, RESTARTING, drain_over, in_flight
from reelwire.appkeys import SETTINGS
from reelwire.domain import resumable
from reelwire.domain.errors import (
    DomainError,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from reelwire.domain.resumable import BodyInterrupted, UploadState

routes = RouteTable()

COLLECTION = "/api/uploads"
UPLOAD = "/api/uploads/{token}"  # one resource with the signed PUT of direct uploads
IDLE_SECONDS = 60  # a chunk that stalls this long is ended (what arrived is kept)
# Chunks one process receives at once: each holds a PostgreSQL connection of its own (the
# upload's lock), so past this many the next is asked to come back (503, Retry-After).
MAX_CHUNKS_IN_FLIGHT = 32


@dataclass
class Writers:
    """The chunks this process is receiving."""

    active: int = 0


WRITERS = web.AppKey("tus_writers", Writers)
_ERRORS = (400, 404, 409, 410, 412, 413, 415, 423, 460, 503)


@routes.post(
    COLLECTION,
    rate="upload",
    tag="uploads",
    auth="required",
    raw_body=True,
    status=201,
    errors=(400, 412, 413, 415, 460, 503),
)
@documented(
    parameters=[
        docs.TUS_RESUMABLE,
        docs.UPLOAD_LENGTH,
        docs.UPLOAD_METADATA,
        docs.UPLOAD_CHECKSUM,
    ],
    request_body=docs.FIRST_CHUNK_BODY,
    success=docs.CREATED,
)
async def create_upload(call: Call[Any]) -> web.StreamResponse:
    """Create a resumable upload (tus creation; a first chunk may come along)."""
    request = call.request
    tus_headers.check_version(request)
    new = tus_headers.new_upload(request)
    has_body = request.body_exists
    if has_body and request.content_type != docs.OFFSET_STREAM:
        raise UnsupportedMediaType(f"A first chunk must be sent as {docs.OFFSET_STREAM}")
    state = await resumable.create(call.services, call.user, new)
    location = f"{_base(request)}{COLLECTION}/{state.id}"
    if has_body:
        try:
            state = await _receive(call, state.id, 0)
        except DomainError as exc:
            exc.headers.update({"Location": location, **tus_headers.state_headers(state)})
            raise
    answer = {"Location": location, **tus_headers.state_headers(state)}
    return web.Response(status=201, headers=answer)


@routes.route("HEAD", UPLOAD, tag="uploads", auth="required", errors=(404, 410, 412))
@documented(parameters=[docs.TUS_RESUMABLE], success=docs.STATE)
async def upload_state(call: Call[Any]) -> web.StreamResponse:
    """How much of a resumable upload has arrived (tus HEAD)."""
    tus_headers.check_version(call.request)
    upload_id = call.path_uuid("token", message=resumable.UPLOAD_NOT_FOUND)
    state = await resumable.status(call.services, call.user, upload_id)
    answer = {
        **tus_headers.state_headers(state),
        "Upload-Length": str(state.length),
        "Cache-Control": "no-store",
    }
    if state.metadata:
        answer["Upload-Metadata"] = tus_headers.encode_metadata(state.metadata)
    return web.Response(status=200, headers=answer)


@routes.patch(UPLOAD, tag="uploads", auth="required", raw_body=True, status=204, errors=_ERRORS)
@documented(
    parameters=[docs.TUS_RESUMABLE, docs.UPLOAD_OFFSET, docs.UPLOAD_CHECKSUM],
    request_body=docs.CHUNK_BODY,
    success=docs.no_content("The chunk was kept"),
)
async def append_chunk(call: Call[Any]) -> web.StreamResponse:
    """Send the next chunk of a resumable upload at its offset; the last one queues the video
    after the same checks as every upload (400 with the reason if it fails them)."""
    request = call.request
    tus_headers.check_version(request)
    upload_id = call.path_uuid("token", message=resumable.UPLOAD_NOT_FOUND)
    if request.content_type != docs.OFFSET_STREAM:
        raise UnsupportedMediaType(f"Chunks are sent as {docs.OFFSET_STREAM}")
    offset = tus_headers.number(request, "Upload-Offset", minimum=0)
    state = await _receive(call, upload_id, offset)
    return web.Response(status=204, headers=tus_headers.state_headers(state))


@routes.delete(UPLOAD, tag="uploads", auth="required", status=204, errors=(404, 412, 423))
@documented(parameters=[docs.TUS_RESUMABLE], success=docs.no_content("Terminated"))
async def terminate_upload(call: Call[Any]) -> web.StreamResponse:
    """Terminate a resumable upload: its bytes and its unfinished video go (tus termination)."""
    tus_headers.check_version(call.request)
    upload_id = call.path_uuid("token", message=resumable.UPLOAD_NOT_FOUND)
    await resumable.terminate(call.services, call.user, upload_id)
    return web.Response(status=204)


async def _receive(call: Call[Any], upload_id: Any, offset: int) -> UploadState:
    request = call.request
    checksum = tus_headers.checksum(request)
    writers = request.app[WRITERS]
    if writers.active >= MAX_CHUNKS_IN_FLIGHT:
        raise ServiceUnavailable(
            "Too many uploads are arriving at once; send the chunk again in a moment",
            headers={"Retry-After": "5"},
        )
    writers.active += 1
    try:
        with in_flight(request):
            return await resumable.receive(
                call.services,
                call.user,
                upload_id,
                offset,
                _body(request),
                checksum,
                declared=request.content_length,
            )
    finally:
        writers.active -= 1


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    """The chunk as it arrives; BodyInterrupted when the client goes away or stalls, or the
    server has stopped waiting for uploads in flight."""
    while True:
        try:
            data = await asyncio.wait_for(request.content.read(CHUNK), IDLE_SECONDS)
        except (OSError, TimeoutError, HttpProcessingError):
            raise BodyInterrupted() from None
        if not data:
            return
        if drain_over(request):
            message = "The server is restarting; resume the upload in a moment"
            raise BodyInterrupted(ServiceUnavailable(message, headers=dict(RESTARTING)))
        yield data


def _base(request: web.Request) -> str:
    """Upload URLs are relative (they work through any proxy), absolute under PUBLIC_BASE_URL."""
    configured = request.app[SETTINGS].public_base_url
    return configured.rstrip("/") if configured else ""


# --- outside the route table: discovery and the version header ---------------------------------


def is_tus_request(request: web.Request) -> bool:
    """A request to the tus routes (not the signed PUT that shares their path)."""
    path = request.path.rstrip("/")
    if path == COLLECTION:
        return True
    return path.startswith(COLLECTION + "/") and request.method != "PUT"


@web.middleware
async def tus_options(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """`OPTIONS /api/uploads/` says what the server supports; a CORS preflight (it names
    `Access-Control-Request-Method`) goes on to the CORS handler as on every route."""
    if (
        request.method != "OPTIONS"
        or "Access-Control-Request-Method" in request.headers
        or not is_tus_request(request)
    ):
        return await handler(request)
    return web.Response(
        status=204,
        headers={
            "Tus-Version": docs.TUS_VERSION,
            "Tus-Extension": docs.TUS_EXTENSIONS,
            "Tus-Max-Size": str(request.app[SETTINGS].max_video_bytes),
            "Tus-Checksum-Algorithm": ",".join(resumable.CHECKSUM_ALGORITHMS),
        },
    )


async def add_tus_resumable(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: `Tus-Resumable` on every answer of the tus routes, errors too."""
    if is_tus_request(request):
        response.headers["Tus-Resumable"] = docs.TUS_VERSION


def setup_tus(app: web.Application) -> None:
    """Discovery by OPTIONS, the version header on every tus answer, the chunks in flight."""
    app[WRITERS] = Writers()
    app.middlewares.append(tus_options)
    app.on_response_prepare.append(add_tus_resumable)
