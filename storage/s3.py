"""The S3 blob store (aiobotocore): multipart for large files, bounded concurrency for trees,
presigned PUTs for direct uploads and presigned GETs for private reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from storage.blob_keys import child
from storage.blobs import check_key, content_type_for

PART_SIZE = 8 * 1024 * 1024
TREE_CONCURRENCY = 8


class S3BlobStore:
    """Objects in one bucket. Public URLs come from CDN_BASE_URL when set; otherwise clients go
    through the app's /media route, which presigns a GET per request."""

    backend = "s3"

    def __init__(self, client: Any, bucket: str, *, cdn_base_url: str | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.cdn_base_url = cdn_base_url.rstrip("/") if cdn_base_url else None

    async def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (development and tests)."""
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            await self.client.create_bucket(Bucket=self.bucket)

    async def put_file(
        self, key: str, path: Path, content_type: str | None = None, *, consume: bool = False
    ) -> None:
        """Upload a file: one PUT when small, multipart (8 MiB parts, bounded memory) when large."""
        check_key(key)
        content_type = content_type or content_type_for(key)
        size = (await aiofiles.os.stat(path)).st_size
        if size <= PART_SIZE:
            async with aiofiles.open(path, "rb") as handle:
                body = await handle.read()
            await self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
            )
        else:
            await self._multipart(key, path, content_type)
        if consume:
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(path)

    async def _multipart(self, key: str, path: Path, content_type: str) -> None:
        upload = await self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        upload_id = upload["UploadId"]
        parts = []
        try:
            async with aiofiles.open(path, "rb") as handle:
                number = 1
                while chunk := await handle.read(PART_SIZE):
                    part = await self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                    parts.append({"ETag": part["ETag"], "PartNumber": number})
                    number += 1
            await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            raise

    async def put_tree(self, prefix: str, directory: Path, *, consume: bool = False) -> list[str]:
        """Upload every file under `directory`, several at a time; stale extras are removed.
        (`consume` changes nothing here: the caller's scratch directory goes away anyway.)"""
        files = await asyncio.to_thread(
            lambda: sorted(p for p in directory.rglob("*") if p.is_file())
        )
        keys = [child(check_key(prefix), p.relative_to(directory).as_posix()) for p in files]
        gate = asyncio.Semaphore(TREE_CONCURRENCY)

        async def one(path: Path, key: str) -> None:
            async with gate:
                await self.put_file(key, path)

        await asyncio.gather(*(one(p, k) for p, k in zip(files, keys, strict=True)))
        written = set(keys)
        stale = [k async for k in self._list(prefix) if k not in written]
        await self._delete_keys(stale)
        return keys

    async def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store a small object."""
        await self.client.put_object(
            Bucket=self.bucket,
            Key=check_key(key),
            Body=data,
            ContentType=content_type or content_type_for(key),
        )

    async def fetch_to(self, key: str, path: Path) -> None:
        """Stream the object into a local file."""
        response = await self.client.get_object(Bucket=self.bucket, Key=check_key(key))
        async with response["Body"] as body, aiofiles.open(path, "wb") as handle:
            async for chunk in body.iter_chunks(1 << 20):
                await handle.write(chunk)

    async def local_file(self, key: str, scratch: Path) -> Path:
        """The object fetched to `scratch` (objects are remote)."""
        await self.fetch_to(key, scratch)
        return scratch

    async def read_bytes(self, key: str) -> bytes:
        """A whole (small) object."""
        response = await self.client.get_object(Bucket=self.bucket, Key=check_key(key))
        async with response["Body"] as body:
            data: bytes = await body.read()
            return data

    async def read_bytes_or_none(self, key: str) -> bytes | None:
        """A whole (small) object, or None when it does not exist (one round trip)."""
        try:
            return await self.read_bytes(key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    async def size(self, key: str) -> int | None:
        """ContentLength, or None when missing."""
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    async def read_head(self, key: str, length: int) -> bytes:
        """The first bytes, by a ranged GET."""
        response = await self.client.get_object(
            Bucket=self.bucket, Key=check_key(key), Range=f"bytes=0-{length - 1}"
        )
        async with response["Body"] as body:
            data: bytes = await body.read()
            return data

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix/`."""
        keys = [k async for k in self._list(prefix)]
        await self._delete_keys(keys)
        return len(keys)

    async def delete(self, key: str) -> None:
        """Delete one object."""
        await self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def url(self, key: str) -> str:
        """CDN URL when configured, else the app's /media route (which presigns)."""
        check_key(key)
        if self.cdn_base_url:
            return f"{self.cdn_base_url}/{key}"
        return f"/media/{key}"

    async def presigned_get(self, key: str, expires: int = 3600) -> str:
        """A time-limited GET URL for a private object."""
        url: str = await self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": check_key(key)},
            ExpiresIn=expires,
        )
        return url

    async def presigned_put(self, key: str, content_type: str, size: int, expires: int) -> str:
        """A PUT URL whose signature covers the declared Content-Type and Content-Length."""
        url: str = await self.client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": check_key(key),
                "ContentType": content_type,
                "ContentLength": size,
            },
            ExpiresIn=expires,
        )
        return url

    async def _list(self, prefix: str) -> AsyncIterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{check_key(prefix)}/"):
            for item in page.get("Contents", []):
                yield item["Key"]

    async def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            await self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )


@contextlib.asynccontextmanager
async def open_s3(
    bucket: str, *, region: str, endpoint_url: str | None, cdn_base_url: str | None
) -> AsyncIterator[S3BlobStore]:
    """An S3BlobStore whose client lives as long as the context."""
    config = AioConfig(
        signature_version="s3v4",
        s3={"addressing_style": "path"} if endpoint_url else None,
        max_pool_connections=32,
        retries={"max_attempts": 5, "mode": "standard"},
    )
    session = get_session()
    async with session.create_client(
        "s3", region_name=region, endpoint_url=endpoint_url, config=config
    ) as client:
        yield S3BlobStore(client, bucket, cdn_base_url=cdn_base_url)
