"""Where a resumable upload's bytes wait until the upload is whole.

On local storage: one append-only part file per upload under the spool dir (the same filesystem
as the media, so finishing is a rename). Bytes are fsync'd before the offset that counts them is
recorded, and a part file longer than its recorded offset (a process died between the two) is
cut back to it when the next chunk starts. On S3: multipart parts, see `storage.s3_parts`.

A chunk is written through a `Receiver`: `write` what arrives, `keep` (durable, returns the new
`Progress` to record) or `discard` (the chunk failed its checksum), then `recorded` once the
row says so; `checkpoint` offers durable progress in the middle of a long chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

# A long chunk records its progress every this many bytes, so a process killed mid-chunk loses
# at most this much of it.
CHECKPOINT_BYTES = 8 * 1024 * 1024


class PartsLost(Exception):
    """The bytes an upload's row counts are not where they were kept."""


@dataclass(frozen=True)
class Progress:
    """What an upload's row records about its bytes."""

    offset: int
    parts_bytes: int = 0  # S3: bytes in uploaded multipart parts; the rest is the tail object
    s3_upload_id: str | None = None
    s3_parts: tuple[tuple[int, str], ...] = ()  # (PartNumber, ETag)

    @classmethod
    def of(cls, row: Any) -> Progress:
        """From an upload row."""
        parts = tuple((int(n), str(etag)) for n, etag in row["s3_parts"])
        return cls(row["upload_offset"], row["parts_bytes"], row["s3_upload_id"], parts)

    def columns(self) -> dict[str, Any]:
        """The row's columns for this progress."""
        return {
            "upload_offset": self.offset,
            "parts_bytes": self.parts_bytes,
            "s3_upload_id": self.s3_upload_id,
            "s3_parts": [list(part) for part in self.s3_parts],
        }


@dataclass(frozen=True)
class Target:
    """An upload, as its bytes' store sees it."""

    upload_id: UUID
    length: int
    key: str  # the blob key the whole file is stored under
    content_type: str


class Receiver(Protocol):
    """One chunk being received."""

    async def write(self, data: bytes) -> None:
        """Append bytes that arrived."""

    async def checkpoint(self) -> Progress | None:
        """Durable progress worth recording now, if there is any."""

    async def keep(self) -> Progress:
        """Make everything written durable; the progress to record."""

    async def discard(self) -> Progress:
        """Drop everything written since the last recorded progress (which is returned)."""

    async def recorded(self, progress: Progress) -> None:
        """The row now says `progress`: what it no longer refers to may go."""

    async def close(self) -> None:
        """Release what the chunk held."""


class PartStore(Protocol):
    """Local part files or S3 multipart parts."""

    backend: str
    stores_in_place: bool  # assemble() leaves the whole file at target.key already

    async def receiver(self, target: Target, progress: Progress) -> Receiver:
        """Start a chunk at `progress.offset`."""

    async def assemble(self, target: Target, progress: Progress, scratch: Path) -> Path:
        """The whole file as a local path to check (S3: stored at `target.key` first)."""

    async def remove(self, target: Target, progress: Progress) -> None:
        """Delete every byte kept for the upload (an S3 multipart upload is aborted)."""


def for_blobs(blobs: Any, root: Path) -> PartStore:
    """The part store that goes with a blob store: S3 parts for S3, part files otherwise."""
    if getattr(blobs, "backend", "local") == "s3":
        from storage.s3_parts import S3Parts

        return S3Parts(blobs.client, blobs.bucket, root)
    return LocalParts(root)


def files_by_upload(root: Path, older_than: float) -> dict[UUID, list[Path]]:
    """The part and buffer files under `root` not touched for `older_than` seconds, by upload
    (the janitor removes those whose upload is gone)."""
    found: dict[UUID, list[Path]] = {}
    now = time.time()
    with contextlib.suppress(FileNotFoundError), os.scandir(root) as entries:
        for entry in entries:
            stem, _, suffix = entry.name.partition(".")
            if suffix not in ("part", "s3buf"):
                continue
            with contextlib.suppress(ValueError, OSError):
                if now - entry.stat().st_mtime > older_than:
                    found.setdefault(UUID(stem), []).append(Path(entry.path))
    return found


def write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    """Make a new directory entry under `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cut(fd: int, size: int) -> None:
    """Truncate a file to `size` bytes, durably, and write on from there."""
    os.ftruncate(fd, size)
    os.fsync(fd)
    os.lseek(fd, size, os.SEEK_SET)


class LocalParts:
    """Append-only part files: `<root>/<upload id>.part`."""

    backend = "local"
    stores_in_place = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, upload_id: UUID) -> Path:
        """An upload's part file."""
        return self.root / f"{upload_id}.part"

    async def receiver(self, target: Target, progress: Progress) -> Receiver:
        fd = await asyncio.to_thread(self._open_at, self.path(target.upload_id), progress.offset)
        return LocalReceiver(fd, progress.offset)

    def _open_at(self, path: Path, offset: int) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        size = os.fstat(fd).st_size
        if size < offset:
            os.close(fd)
            raise PartsLost(f"{path} holds {size} bytes, {offset} were recorded")
        if size > offset:  # written but never recorded: a process died in between
            os.ftruncate(fd, offset)
        if offset == 0:
            fsync_dir(self.root)
        os.lseek(fd, offset, os.SEEK_SET)
        return fd

    async def assemble(self, target: Target, progress: Progress, scratch: Path) -> Path:
        path = self.path(target.upload_id)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            raise PartsLost(f"{path} is missing") from None
        if size < target.length:
            raise PartsLost(f"{path} holds {size} bytes of {target.length}")
        return path

    async def remove(self, target: Target, progress: Progress) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.remove, self.path(target.upload_id))


class LocalReceiver:
    """Appends to a part file opened at the recorded offset."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.start = self.synced = self.offset = offset

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(write_all, self.fd, data)
        self.offset += len(data)

    async def checkpoint(self) -> Progress | None:
        if self.offset - self.synced < CHECKPOINT_BYTES:
            return None
        return await self.keep()

    async def keep(self) -> Progress:
        if self.offset != self.synced:
            await asyncio.to_thread(os.fsync, self.fd)
            self.synced = self.offset
        return Progress(self.offset)

    async def discard(self) -> Progress:
        await asyncio.to_thread(_cut, self.fd, self.start)
        self.offset = self.synced = self.start
        return Progress(self.start)

    async def recorded(self, progress: Progress) -> None:
        self.start = progress.offset

    async def close(self) -> None:
        os.close(self.fd)
