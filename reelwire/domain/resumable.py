"""Resumable uploads (tus 1.0.0): create an upload, take its bytes a chunk at a time, say where
it stands, terminate it. Transport-agnostic: the tus headers are `http_api/tus.py`'s business.

The upload's row in PostgreSQL holds its offset, so any web process takes the next chunk and an
offset survives a restart; its bytes wait in a `storage.upload_parts` store (a part file, or S3
multipart parts). A chunk is written under the upload's advisory lock, so a second writer at the
same time gets 423 and never interleaves. The video (and a clip's clip) exists from creation in
status `uploading`; when the last byte arrives `resumable_finish.finish` checks the file and
queues it like any other upload.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from reelwire.domain import events, media
from reelwire.domain.clips import CLIP_LIFETIME
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import (
    ChecksumMismatch,
    Conflict,
    DomainError,
    Gone,
    LimitExceeded,
    Locked,
    NotFound,
    PayloadTooLarge,
)
from reelwire.domain.resumable_finish import abandon, finish, store_of, target_of
from storage import clips as clip_rows
from storage import resumable_uploads as upload_rows
from storage import videos as video_rows
from storage.upload_parts import PartsLost, Progress, Receiver

UPLOAD_NOT_FOUND = "Upload not found"
CHECKSUM_ALGORITHMS = ("sha1",)


@dataclass(frozen=True)
class NewUpload:
    """A validated creation request."""

    kind: str  # "video" or "clip"
    length: int
    filename: str = ""
    filetype: str = ""
    title: str = ""
    description: str = ""
    visibility: str = "public"
    caption: str = ""

    def metadata(self) -> dict[str, str]:
        """What the upload was created with (HEAD says it back), empty values left out."""
        own = ("caption",) if self.kind == "clip" else ("title", "description", "visibility")
        fields = ("kind", "filename", "filetype", *own)
        return {name: getattr(self, name) for name in fields if getattr(self, name)}


@dataclass(frozen=True)
class UploadState:
    """Where an upload stands, for the transport to answer with."""

    id: UUID
    kind: str
    length: int
    offset: int
    state: str  # receiving, complete or failed
    expires_at: datetime
    video_id: UUID | None
    clip_id: UUID | None
    metadata: dict[str, str]

    @classmethod
    def of(cls, row: Any) -> UploadState:
        """From an upload row."""
        return cls(
            row["id"],
            row["kind"],
            row["upload_length"],
            row["upload_offset"],
            row["state"],
            row["expires_at"],
            row["video_id"],
            row["clip_id"],
            dict(row["metadata"]),
        )


@dataclass(frozen=True)
class Checksum:
    """A chunk's `Upload-Checksum`."""

    algorithm: str
    digest: bytes


class BodyInterrupted(Exception):
    """Raised by a chunk's byte source when it ends early: the client went away (`answer` is
    None: nobody is listening) or the server is stopping (`answer` is what to say). The bytes
    that arrived are kept, unless the chunk carried a checksum."""

    def __init__(self, answer: DomainError | None = None) -> None:
        super().__init__(answer.message if answer else "the client went away")
        self.answer = answer


async def create(ctx: Services, principal: Principal, new: NewUpload) -> UploadState:
    """A new upload, and the video (and clip) it will become, in status `uploading`."""
    limit = ctx.settings.max_video_bytes if new.kind == "video" else ctx.settings.max_clip_bytes
    if new.length > limit:
        raise media.too_large(limit)
    upload_id, video_id = uuid.uuid4(), uuid.uuid4()
    clip_id = uuid.uuid4() if new.kind == "clip" else None
    now = datetime.now(UTC)
    expires_at = now + timedelta(hours=ctx.settings.tus_expire_hours)
    owner = principal.user_id
    async with ctx.db.acquire() as conn, conn.transaction():
        cap = ctx.settings.tus_max_unfinished
        if await upload_rows.count_unfinished(conn, owner) >= cap:
            raise LimitExceeded(
                f"You have {cap} unfinished uploads; finish or delete one first",
                details={"max_unfinished_uploads": cap},
            )
        await _insert_media(conn, new, owner, video_id, clip_id, now, expires_at)
        await upload_rows.insert(
            conn,
            upload_id,
            owner,
            kind=new.kind,
            video_id=video_id,
            clip_id=clip_id,
            upload_length=new.length,
            metadata=new.metadata(),
            backend=store_of(ctx).backend,
            expires_at=expires_at,
        )
        row = await upload_rows.get(conn, upload_id)
    await events.processing(ctx, video_id, owner, "uploading", 0.0)
    return UploadState.of(row)


async def _insert_media(
    conn: asyncpg.Connection,
    new: NewUpload,
    owner: UUID,
    video_id: UUID,
    clip_id: UUID | None,
    now: datetime,
    expires_at: datetime,
) -> None:
    clip = clip_id is not None
    await video_rows.insert(
        conn,
        video_id,
        owner,
        title=(new.caption if clip else new.title or new.filename)[:100],
        description="" if clip else new.description,
        visibility="unlisted" if clip else new.visibility,
        status="uploading",
        source="clip" if clip else "upload",
        original_filename=new.filename or "upload",
        declared_size=new.length,
        declared_type=new.filetype or None,
        upload_expires_at=expires_at,
    )
    if clip_id is not None:
        # Posted (its 24 hours start) when the bytes are in; until then it outlives the upload.
        await clip_rows.insert(
            conn,
            clip_id,
            owner,
            kind="video",
            video_id=video_id,
            owns_video=True,
            caption=new.caption,
            created_at=now,
            expires_at=expires_at + CLIP_LIFETIME,
        )


async def status(ctx: Services, principal: Principal, upload_id: UUID) -> UploadState:
    """Where the caller's upload stands (404 for anyone else's)."""
    async with ctx.db.acquire() as conn:
        row = await upload_rows.get(conn, upload_id)
    return UploadState.of(_own(row, principal))


async def receive(
    ctx: Services,
    principal: Principal,
    upload_id: UUID,
    offset: int,
    body: AsyncIterable[bytes],
    checksum: Checksum | None = None,
    declared: int | None = None,
) -> UploadState:
    """Append one chunk at `offset`; the last one finishes the upload (checks, then queue).
    A chunk cut short keeps what arrived (without a checksum); a chunk with a checksum is kept
    whole or not at all. A chunk `declared` (Content-Length) to go past the upload's length is
    refused before it is read."""
    async with upload_rows.locked(ctx.settings.database_url or "", upload_id) as conn:
        if conn is None:
            raise Locked("Another request is sending this upload's bytes; retry when it ends")
        row = _own(await upload_rows.get(conn, upload_id), principal)
        if row["upload_offset"] != offset:
            raise Conflict(
                f"Upload-Offset is {offset} but the upload is at {row['upload_offset']}",
                details={"offset": row["upload_offset"]},
            )
        if declared is not None and offset + declared > row["upload_length"]:
            raise PayloadTooLarge(
                f"The chunk ({declared} bytes) goes past Upload-Length ({row['upload_length']})",
                details={"offset": offset, "length": row["upload_length"]},
            )
        if row["state"] == "receiving":
            await _still_wanted(ctx, conn, row)
            progress, ended = await _write(ctx, conn, row, body, checksum)
            if progress.offset == row["upload_length"]:
                await finish(ctx, conn, await upload_rows.get(conn, upload_id))
            elif ended is not None and ended.answer is not None:
                raise ended.answer
        return UploadState.of(await upload_rows.get(conn, upload_id))


async def terminate(ctx: Services, principal: Principal, upload_id: UUID) -> None:
    """Delete an upload: its bytes, and the video or clip it was to become if unfinished (a
    finished upload's video stays; only the upload goes)."""
    async with upload_rows.locked(ctx.settings.database_url or "", upload_id) as conn:
        if conn is None:
            raise Locked("The upload is receiving a chunk; retry when it ends")
        row = await upload_rows.get(conn, upload_id)
        if row is None or row["owner_id"] != principal.user_id:
            raise NotFound(UPLOAD_NOT_FOUND)
        if row["state"] == "receiving":
            await abandon(ctx, row, None)
        await upload_rows.delete(conn, upload_id)


def _own(row: Any, principal: Principal) -> Any:
    """The caller's upload, still there; 404 for anyone else, 410 once expired or failed."""
    if row is None or row["owner_id"] != principal.user_id:
        raise NotFound(UPLOAD_NOT_FOUND)
    if row["state"] == "failed":
        raise Gone(f"The upload failed: {row['error']}", details={"reason": row["error"]})
    if row["state"] == "receiving" and row["expires_at"] <= datetime.now(UTC):
        raise Gone("The upload expired before it was finished; start a new one")
    return row


async def _still_wanted(ctx: Services, conn: asyncpg.Connection, row: Any) -> None:
    """The video (or clip) the upload is for is still there; if its owner deleted it, so
    goes the upload (404)."""
    async with ctx.db.acquire() as db:
        video = await video_rows.get(db, row["video_id"]) if row["video_id"] else None
    if video is None or (row["kind"] == "clip" and row["clip_id"] is None):
        await abandon(ctx, row, None)
        await upload_rows.delete(conn, row["id"])
        raise NotFound("The video this upload was for has been deleted")
    if row["backend"] != store_of(ctx).backend:
        reason = f"Media storage changed from {row['backend']} while the upload was open"
        await abandon(ctx, row, reason)
        await upload_rows.update(conn, row["id"], state="failed", error=reason)
        raise Gone(f"The upload failed: {reason}")


async def _write(
    ctx: Services,
    conn: asyncpg.Connection,
    row: Any,
    body: AsyncIterable[bytes],
    checksum: Checksum | None,
) -> tuple[Progress, BodyInterrupted | None]:
    """Receive the chunk into the part store and record how far it got."""
    store = store_of(ctx)
    try:
        receiver = await store.receiver(target_of(row), Progress.of(row))
    except PartsLost:
        reason = "The bytes received so far were lost; start the upload again"
        await abandon(ctx, row, reason)
        await upload_rows.update(conn, row["id"], state="failed", error=reason)
        raise Gone(reason) from None
    hasher = hashlib.new(checksum.algorithm) if checksum else None
    room = row["upload_length"] - row["upload_offset"]
    ended: BodyInterrupted | None = None
    too_long = False
    try:
        try:
            async for chunk in body:
                if len(chunk) > room:
                    chunk, too_long = chunk[:room], True
                await receiver.write(chunk)
                room -= len(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                elif (checkpoint := await receiver.checkpoint()) is not None:
                    await _record(conn, row, receiver, checkpoint)
                if too_long:
                    break
        except BodyInterrupted as exc:
            ended = exc
        whole = ended is None and not too_long
        if checksum is not None and not (whole and _matches(hasher, checksum)):
            await receiver.discard()
            if ended is not None and ended.answer is not None:
                raise ended.answer
            raise _refused(ended, too_long)
        progress = await receiver.keep()
        await _record(conn, row, receiver, progress)
    finally:
        await receiver.close()
    if too_long:
        raise PayloadTooLarge(
            "The chunk goes past Upload-Length; the bytes up to it were kept",
            details={"offset": progress.offset},
        )
    return progress, ended


def _matches(hasher: Any, checksum: Checksum) -> bool:
    return hasher is not None and bool(hasher.digest() == checksum.digest)


def _refused(ended: BodyInterrupted | None, too_long: bool) -> DomainError:
    if too_long:
        return PayloadTooLarge("The chunk goes past Upload-Length; it was discarded")
    if ended is not None:
        return ChecksumMismatch("The chunk was cut short, so its checksum cannot match")
    return ChecksumMismatch("The chunk does not match its Upload-Checksum; it was discarded")


async def _record(
    conn: asyncpg.Connection, row: Any, receiver: Receiver, progress: Progress
) -> None:
    """The row says how far the bytes are kept; then the store may drop what it replaced."""
    await upload_rows.update(conn, row["id"], **progress.columns())
    await receiver.recorded(progress)
