"""Blob storage behind one interface: local disk under the data dir, or S3 (storage.s3).

Keys are relative paths like ``videos/<id>/hls/720p/playlist.m3u8``. Writers hand over whole
local files or directories (uploads are spooled to disk first so they can be probed), readers
get a URL or, for local disk, a path the web layer serves with Range support.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Protocol

import aiofiles
import aiofiles.os

from storage.blob_keys import child

MEDIA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".vtt": "text/vtt",
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".mp4": "video/mp4",
}


def content_type_for(key: str) -> str:
    """The Content-Type a key is served with."""
    suffix = PurePosixPath(key).suffix.lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


def check_key(key: str) -> str:
    """A key is a relative path without `..`; anything else is a programming error or an attack."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid blob key: {key!r}")
    return key


class BlobStore(Protocol):
    """What the media pipeline needs from storage."""

    backend: str

    async def put_file(
        self, key: str, path: Path, content_type: str | None = None, *, consume: bool = False
    ) -> None:
        """Store a local file under `key`; with `consume` the file may be moved away."""

    async def put_tree(self, prefix: str, directory: Path, *, consume: bool = False) -> list[str]:
        """Store every file under `directory` at `prefix/<relative path>`; return the keys.
        With `consume` the directory may be moved away instead of copied."""

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store a small object."""

    async def fetch_to(self, key: str, path: Path) -> None:
        """Copy the object to a local file."""

    async def local_file(self, key: str, scratch: Path) -> Path:
        """A local file to read the object from: the stored file itself when storage is local,
        else a copy fetched to `scratch`."""

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""

    async def read_head(self, key: str, length: int) -> bytes:
        """The first `length` bytes (for content sniffing)."""

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix/`; return how many."""

    async def delete(self, key: str) -> None:
        """Delete one object (missing is fine)."""

    def url(self, key: str) -> str:
        """Where a client fetches the object (a path of ours, a CDN URL or a presigned GET)."""


class LocalBlobStore:
    """Files under a directory; the web app serves them at /media/<key> with Range support."""

    backend = "local"

    def __init__(self, root: Path, url_prefix: str = "/media") -> None:
        self.root = root
        self.url_prefix = url_prefix.rstrip("/")

    def path(self, key: str) -> Path:
        """The file behind a key."""
        return self.root / check_key(key)

    async def put_file(
        self, key: str, path: Path, content_type: str | None = None, *, consume: bool = False
    ) -> None:
        """Move (when consumed, on one filesystem) or copy the file into place atomically."""
        target = self.path(key)
        await aiofiles.os.makedirs(target.parent, exist_ok=True)
        if consume:
            try:
                await aiofiles.os.replace(path, target)
                return
            except OSError:  # another filesystem: copy below
                pass
        staging = target.with_name(f".{target.name}.incoming")
        await asyncio.to_thread(shutil.copyfile, path, staging)
        await aiofiles.os.replace(staging, target)

    async def put_tree(self, prefix: str, directory: Path, *, consume: bool = False) -> list[str]:
        """Move (or copy) the tree next to its place, then swap it in, so a re-run replaces the
        old outputs whole and readers never see a half-written set."""
        target = self.path(prefix)
        staging = target.with_name(f".{target.name}.incoming")
        keys = [child(prefix, p.relative_to(directory).as_posix()) for p in _files(directory)]
        await asyncio.to_thread(_replace_tree, directory, staging, target, consume)
        return keys

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write a small object."""
        target = self.path(key)
        await aiofiles.os.makedirs(target.parent, exist_ok=True)
        staging = target.with_name(f".{target.name}.incoming")
        async with aiofiles.open(staging, "wb") as handle:
            await handle.write(data)
        await aiofiles.os.replace(staging, target)

    async def fetch_to(self, key: str, path: Path) -> None:
        """Copy the object to `path`."""
        await asyncio.to_thread(shutil.copyfile, self.path(key), path)

    async def local_file(self, key: str, scratch: Path) -> Path:
        """The stored file itself (`scratch` is not used): workers read originals in place
        instead of copying them."""
        return self.path(key)

    async def size(self, key: str) -> int | None:
        """Size in bytes, or None."""
        try:
            stat = await aiofiles.os.stat(self.path(key))
        except FileNotFoundError:
            return None
        return int(stat.st_size)

    async def read_head(self, key: str, length: int) -> bytes:
        """The first bytes."""
        async with aiofiles.open(self.path(key), "rb") as handle:
            head: bytes = await handle.read(length)
        return head

    async def delete_prefix(self, prefix: str) -> int:
        """Remove the directory `prefix`."""
        target = self.path(prefix)
        return await asyncio.to_thread(_remove_tree, target)

    async def delete(self, key: str) -> None:
        """Remove one file."""
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(self.path(key))

    def url(self, key: str) -> str:
        """`/media/<key>`, served by the app."""
        return f"{self.url_prefix}/{check_key(key)}"


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def _replace_tree(source: Path, staging: Path, target: Path, move: bool) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        if not move:
            raise OSError("copy requested")
        os.replace(source, staging)
    except OSError:  # copying asked for, or another filesystem
        shutil.copytree(source, staging)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def _remove_tree(target: Path) -> int:
    if not target.exists():
        return 0
    count = sum(1 for p in target.rglob("*") if p.is_file())
    shutil.rmtree(target, ignore_errors=True)
    return count
