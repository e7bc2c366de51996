"""A resumable upload's bytes on S3: multipart parts, and the bytes that do not fill a part yet.

S3 refuses parts under 5 MiB (but the last), while a tus client may send chunks of any size. So
a chunk is appended to a local buffer that starts as the upload's tail (the bytes after its last
part, kept as an object under `uploads/<id>/`); every time the buffer holds a part, the part is
uploaded. When the chunk ends, what is left becomes the new tail object, named by the offset it
ends at, and the row in PostgreSQL records parts, tail and offset together: a process that dies
before the row is written leaves the old tail and the old offset in force (a part uploaded
meanwhile is overwritten when its number is sent again). Any web process, on any machine, can
take the next chunk: nothing that counts lives on one machine's disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from storage import blob_keys
from storage.upload_parts import Progress, Target, write_all

MIN_PART = 5 * 1024 * 1024  # S3's smallest part but the last
MAX_PARTS = 10_000
_GONE = ("NoSuchUpload", "NoSuchKey", "404", "NotFound")


def part_size(length: int) -> int:
    """The part size for an upload of `length` bytes: S3's minimum, or more for very large
    uploads so they fit in 10,000 parts (a whole number of MiB)."""
    needed = math.ceil(length / MAX_PARTS)
    return max(MIN_PART, math.ceil(needed / (1 << 20)) << 20)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Parts:
    """Multipart uploads in one bucket; local buffers under `root` while a chunk arrives."""

    backend = "s3"
    stores_in_place = True

    def __init__(self, client: Any, bucket: str, root: Path) -> None:
        self.client = client
        self.bucket = bucket
        self.root = root

    async def receiver(self, target: Target, progress: Progress) -> S3Receiver:
        buffer = self.root / f"{target.upload_id}.s3buf"
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        fd = await asyncio.to_thread(
            os.open, buffer, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
        )
        receiver = S3Receiver(self, target, progress, fd, buffer)
        try:
            tail = await self.read_tail(target, progress)
            await asyncio.to_thread(write_all, fd, tail)
        except BaseException:
            await receiver.close()
            raise
        receiver.buffered = len(tail)
        return receiver

    async def read_tail(self, target: Target, progress: Progress) -> bytes:
        """The bytes after the last part (empty when there are none)."""
        if progress.offset == progress.parts_bytes:
            return b""
        key = blob_keys.upload_tail(target.upload_id, progress.offset)
        response = await self.client.get_object(Bucket=self.bucket, Key=key)
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def assemble(self, target: Target, progress: Progress, scratch: Path) -> Path:
        try:
            await self._complete(target, progress)
        except ClientError as exc:
            # Completed already, by a process that died before recording it?
            if _code(exc) not in _GONE or await self._stored_size(target) != target.length:
                raise
        await self.delete_tails(target, keep=None)
        response = await self.client.get_object(Bucket=self.bucket, Key=target.key)
        async with response["Body"] as body, _open_write(scratch) as fd:
            async for chunk in body.iter_chunks(1 << 20):
                await asyncio.to_thread(write_all, fd, chunk)
        return scratch

    async def _complete(self, target: Target, progress: Progress) -> None:
        tail = await self.read_tail(target, progress)
        if progress.s3_upload_id is None:  # never filled a part: one object
            await self.client.put_object(
                Bucket=self.bucket, Key=target.key, Body=tail, ContentType=target.content_type
            )
            return
        parts = list(progress.s3_parts)
        if tail:
            number = len(parts) + 1
            part = await self.client.upload_part(
                Bucket=self.bucket,
                Key=target.key,
                UploadId=progress.s3_upload_id,
                PartNumber=number,
                Body=tail,
            )
            parts.append((number, part["ETag"]))
        await self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=target.key,
            UploadId=progress.s3_upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
        )

    async def _stored_size(self, target: Target) -> int | None:
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=target.key)
        except ClientError:
            return None
        return int(head["ContentLength"])

    async def remove(self, target: Target, progress: Progress) -> None:
        if progress.s3_upload_id is not None:
            await self.abort(target, progress.s3_upload_id)
        await self.delete_tails(target, keep=None)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.remove, self.root / f"{target.upload_id}.s3buf")

    async def abort(self, target: Target, upload_id: str) -> None:
        """Abort a multipart upload (one already gone is fine)."""
        try:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=target.key, UploadId=upload_id
            )
        except ClientError as exc:
            if _code(exc) not in _GONE:
                raise

    async def delete_tails(self, target: Target, keep: str | None) -> None:
        """Delete the upload's tail objects but `keep`."""
        prefix = blob_keys.upload_prefix(target.upload_id) + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        stale = []
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            stale += [item["Key"] for item in page.get("Contents", []) if item["Key"] != keep]
        for start in range(0, len(stale), 1000):
            objects = [{"Key": key} for key in stale[start : start + 1000]]
            await self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )


@contextlib.asynccontextmanager
async def _open_write(path: Path) -> Any:
    fd = await asyncio.to_thread(
        os.open, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
    )
    try:
        yield fd
    finally:
        os.close(fd)


class S3Receiver:
    """One chunk: buffered locally, uploaded a part at a time."""

    def __init__(
        self, parts: S3Parts, target: Target, progress: Progress, fd: int, buffer: Path
    ) -> None:
        self.store, self.target, self.fd, self.buffer = parts, target, fd, buffer
        self.part_size = part_size(target.length)
        self.last = progress  # the progress the row records
        self.upload_id = progress.s3_upload_id
        self.parts = list(progress.s3_parts)
        self.parts_bytes = progress.parts_bytes
        self.buffered = 0
        self.new_part = False

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            piece = view[: self.part_size - self.buffered]
            await asyncio.to_thread(write_all, self.fd, piece)
            self.buffered += len(piece)
            view = view[len(piece) :]
            if self.buffered == self.part_size:
                await self._upload_part()

    async def _upload_part(self) -> None:
        body = await asyncio.to_thread(os.pread, self.fd, self.buffered, 0)
        client, bucket, key = self.store.client, self.store.bucket, self.target.key
        if self.upload_id is None:
            created = await client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=self.target.content_type
            )
            self.upload_id = str(created["UploadId"])
        number = len(self.parts) + 1
        part = await client.upload_part(
            Bucket=bucket, Key=key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append((number, str(part["ETag"])))
        self.parts_bytes += self.buffered
        await asyncio.to_thread(_reset, self.fd)
        self.buffered = 0
        self.new_part = True

    def _progress(self, offset: int) -> Progress:
        return Progress(offset, self.parts_bytes, self.upload_id, tuple(self.parts))

    async def checkpoint(self) -> Progress | None:
        if not self.new_part:
            return None
        self.new_part = False
        return self._progress(self.parts_bytes)  # the bytes buffered since are not kept yet

    async def keep(self) -> Progress:
        offset = self.parts_bytes + self.buffered
        if self.buffered and offset != self.last.offset:
            tail = await asyncio.to_thread(os.pread, self.fd, self.buffered, 0)
            key = blob_keys.upload_tail(self.target.upload_id, offset)
            await self.store.client.put_object(Bucket=self.store.bucket, Key=key, Body=tail)
        return self._progress(offset)

    async def discard(self) -> Progress:
        if self.upload_id is not None and self.upload_id != self.last.s3_upload_id:
            await self.store.abort(self.target, self.upload_id)  # started by this chunk
        self.upload_id = self.last.s3_upload_id
        self.parts, self.parts_bytes = list(self.last.s3_parts), self.last.parts_bytes
        self.buffered = 0
        return self.last

    async def recorded(self, progress: Progress) -> None:
        self.last = progress
        current = None
        if progress.offset > progress.parts_bytes:
            current = blob_keys.upload_tail(self.target.upload_id, progress.offset)
        await self.store.delete_tails(self.target, keep=current)

    async def close(self) -> None:
        os.close(self.fd)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.remove, self.buffer)


def _reset(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
