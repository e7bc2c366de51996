"""Multipart uploads streamed to a spool file: memory stays at one chunk whatever the size, and
the limit is enforced while reading (and up front from Content-Length), never after."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os
import pydantic
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from http_api.routing import validate_input
from reelwire.domain import media
from reelwire.domain.errors import (
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    ValidationFailed,
)

CHUNK = 256 * 1024
MAX_TEXT_FIELD = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024


@dataclass
class Upload:
    """A received form: its text fields and (at most) one file, spooled to disk."""

    fields: dict[str, str] = field(default_factory=dict)
    file_field: str | None = None
    path: Path | None = None
    filename: str = ""
    size: int = 0


@dataclass
class Drain:
    """A stopping server's uploads: new ones are refused at once, those in flight may finish
    for `seconds`, and the rest are answered (503, retry) rather than cut off."""

    seconds: float
    since: float | None = None
    active: int = 0  # uploads being received

    @property
    def draining(self) -> bool:
        """SIGTERM has arrived."""
        return self.since is not None

    @property
    def over(self) -> bool:
        """The uploads in flight have had their time."""
        return self.since is not None and time.monotonic() - self.since > self.seconds


DRAIN = web.AppKey("upload_drain", Drain)
RESTARTING = {"Retry-After": "5", "Connection": "close"}


def setup_drain(app: web.Application, seconds: float) -> None:
    """Refuse new uploads once shutdown starts (and in any case before anything else stops)."""
    drain = app[DRAIN] = Drain(seconds)

    async def start_draining(app: web.Application) -> None:
        if drain.since is None:
            drain.since = time.monotonic()

    app.on_shutdown.insert(0, start_draining)


def drain_on_signals(app: web.Application) -> None:
    """For `reelwire serve` (run_app without its own signal handling): SIGTERM or SIGINT
    first refuses new uploads and lets those in flight finish for UPLOAD_DRAIN_SECONDS (or
    answers them 503), then shuts down as usual. A second signal shuts down at once.

    aiohttp's own graceful shutdown cancels a handler that is still reading its request body,
    so an upload in flight would be reset; hence the wait before it starts."""

    async def install(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        drain = app[DRAIN]

        def stop_now() -> None:
            raise web.GracefulExit()  # a SystemExit: it ends run_app's loop, which cleans up

        async def finish_uploads() -> None:
            # Past the drain, the uploads still reading are answered 503 at their next chunk;
            # 5 s more lets those answers go out.
            deadline = (drain.since or 0) + drain.seconds + 5
            while drain.active and time.monotonic() < deadline:  # noqa: ASYNC110 (a counter)
                await asyncio.sleep(0.05)
            loop.call_soon(stop_now)

        def on_signal() -> None:
            if drain.since is not None:
                stop_now()
            drain.since = time.monotonic()
            if not drain.active:
                stop_now()
            app[_FINISHING] = asyncio.ensure_future(finish_uploads())

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)

    app.on_startup.append(install)


_FINISHING = web.AppKey("upload_drain_task", asyncio.Future)


def _check_drain(request: web.Request, *, started: bool) -> None:
    drain = request.app.get(DRAIN)
    if drain is None:
        return
    if not started and drain.draining:
        raise ServiceUnavailable(
            "The server is restarting; send the upload again in a moment", headers=RESTARTING
        )
    if started and drain.over:
        raise ServiceUnavailable(
            "The server is restarting and the upload did not finish in time; send it again",
            headers=RESTARTING,
        )


@contextlib.contextmanager
def in_flight(request: web.Request) -> Iterator[None]:
    """Bytes of an upload received outside a form (a resumable upload's chunk): refused once the
    server is stopping, and waited for while it drains, like a form upload."""
    _check_drain(request, started=False)
    drain = request.app.get(DRAIN)
    if drain is not None:
        drain.active += 1
    try:
        yield
    finally:
        if drain is not None:
            drain.active -= 1


def drain_over(request: web.Request) -> bool:
    """The server is stopping and the uploads in flight have had their time."""
    drain = request.app.get(DRAIN)
    return drain is not None and drain.over


@contextlib.asynccontextmanager
async def receive_form(
    request: web.Request,
    *,
    spool_dir: Path,
    file_fields: tuple[str, ...],
    text_fields: tuple[str, ...],
    max_bytes: int,
    too_large: PayloadTooLarge,
) -> AsyncIterator[Upload]:
    """Read a multipart form; the spool file is removed on exit unless something took it."""
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Expected Content-Type multipart/form-data, got {request.content_type or 'none'}"
        )
    if (
        request.content_length is not None
        and request.content_length > max_bytes + MULTIPART_OVERHEAD
    ):
        raise too_large
    _check_drain(request, started=False)
    drain = request.app.get(DRAIN)
    if drain is not None:
        drain.active += 1
    upload = Upload()
    try:
        try:
            await _read_parts(
                request, upload, spool_dir, file_fields, text_fields, max_bytes, too_large
            )
        except KeyError:
            raise ValidationFailed(
                "Malformed multipart body: the Content-Type names no boundary"
            ) from None
        except (ValueError, AssertionError, HttpProcessingError) as exc:
            # aiohttp's multipart parser: a part header without a colon or over the line limit,
            # a bad or missing boundary, a body that ends before its closing boundary.
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise ValidationFailed(
                f"Malformed multipart body: {str(reason)[:200]}",
            ) from None
        yield upload
    finally:
        if drain is not None:
            drain.active -= 1
        if upload.path is not None:
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(upload.path)


def validate_fields(model: type[pydantic.BaseModel], upload: Upload) -> pydantic.BaseModel:
    """The text fields, validated by a schema (its file fields are left out)."""
    result: pydantic.BaseModel = validate_input(model, upload.fields, "form")
    return result


async def _read_parts(
    request: web.Request,
    upload: Upload,
    spool_dir: Path,
    file_fields: tuple[str, ...],
    text_fields: tuple[str, ...],
    max_bytes: int,
    too_large: PayloadTooLarge,
) -> None:
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ValidationFailed("Nested multipart bodies are not accepted")
        name = part.name or ""
        if name in file_fields:  # a file part, whether or not the client named the file
            if upload.path is not None:
                raise ValidationFailed(
                    "Send one file per request", field_errors={name: ["Only one file."]}
                )
            upload.file_field, upload.filename = name, _safe_name(part.filename or "")
            upload.path = spool_dir / f"upload-{uuid.uuid4().hex}"
            upload.size = await _spool(request, part, upload.path, max_bytes, too_large)
        elif name in text_fields:
            upload.fields[name] = await _text(part, name)
        else:
            raise ValidationFailed(
                "Request validation failed",
                field_errors={name or "(unnamed)": ["Unknown field."]},
            )


async def _spool(
    request: web.Request,
    part: BodyPartReader,
    path: Path,
    limit: int,
    too_large: PayloadTooLarge,
) -> int:
    size = 0
    async with aiofiles.open(path, "wb") as handle:
        while chunk := await part.read_chunk(CHUNK):
            _check_drain(request, started=True)
            size += len(chunk)
            if size > limit:
                raise too_large
            await handle.write(chunk)
    if size == 0:
        raise ValidationFailed("The uploaded file is empty")
    return size


async def _text(part: BodyPartReader, name: str) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > MAX_TEXT_FIELD:
            raise ValidationFailed("Field too long", field_errors={name: ["Too long."]})
    try:
        return data.decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise ValidationFailed(
            "Field is not text", field_errors={name: ["Must be UTF-8 text."]}
        ) from None


def _safe_name(filename: str) -> str:
    """The client's file name without any path, for display only (storage keys are ours)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip().replace("\x00", "")
    return name[:255] or "upload"


async def receive_video(
    call: Any,
    *,
    file_field: str,
    form_model: type[pydantic.BaseModel],
    source: str,
    visibility: str = "public",
) -> Any:
    """A whole video upload form: spool, validate the text fields, probe, store and queue.
    Returns the new video row."""
    ctx = call.services
    limit = ctx.settings.max_video_bytes
    text_fields = tuple(form_model.model_fields)
    async with receive_form(
        call.request,
        spool_dir=ctx.spool_dir,
        file_fields=(file_field,),
        text_fields=text_fields,
        max_bytes=limit,
        too_large=media.too_large(limit),
    ) as upload:
        form = validate_fields(form_model, upload)
        if upload.path is None:
            raise ValidationFailed(
                "No video file provided", field_errors={file_field: ["This field is required."]}
            )
        info = await media.check_video(ctx, upload.path, file_field)
        return await media.accept_upload(
            ctx,
            call.user,
            upload.path,
            info,
            original_filename=upload.filename,
            source=source,
            title=getattr(form, "title", "") or upload.filename[:100],
            description=getattr(form, "description", ""),
            visibility=getattr(form, "visibility", None) or visibility,
        )
