"""Resumable uploads with media on S3 (moto's S3 server over real HTTP): small chunks wait in a
tail object until they fill a multipart part, any process (here: two apps with different data
dirs) takes the next chunk, and expiry aborts the multipart upload."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from aiobotocore.session import get_session
from yarl import URL

from reelwire.app import create_app
from reelwire.appkeys import SERVICES
from reelwire.domain import resumable_finish
from reelwire.settings import Settings
from tests.conftest import Api
from tests.media import ffmpeg, wait_for
from tests.test_s3 import s3_endpoint  # noqa: F401  (the fixture)
from tests.tusclient import TUS, uploader

pytestmark = pytest.mark.usefixtures("reset")
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def big_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short, cheap to transcode video of more than one 5 MiB part (lossless frames)."""
    path = tmp_path_factory.mktemp("tus-s3") / "lossless.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30:duration=7"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p"),
        str(path),
    )
    assert path.stat().st_size > 6 * MIB
    return path


@pytest.fixture
def s3_settings(media_settings: Settings, s3_endpoint: str) -> Settings:  # noqa: F811
    return media_settings.replace(
        s3_bucket=f"reelwire-{uuid.uuid4().hex[:8]}", s3_endpoint_url=s3_endpoint
    )


class Bucket:
    def __init__(self, endpoint: str, name: str) -> None:
        self.endpoint, self.name = endpoint, name

    async def call(self, operation: str, **kwargs: Any) -> Any:
        session = get_session()
        async with session.create_client(
            "s3", region_name="us-east-1", endpoint_url=self.endpoint
        ) as s3:
            return await getattr(s3, operation)(Bucket=self.name, **kwargs)

    async def keys(self, prefix: str) -> list[str]:
        listed = await self.call("list_objects_v2", Prefix=prefix)
        return [item["Key"] for item in listed.get("Contents", [])]

    async def multipart_uploads(self) -> list[str]:
        listed = await self.call("list_multipart_uploads")
        return [item["Key"] for item in listed.get("Uploads", [])]

    async def read(self, key: str) -> bytes:
        session = get_session()
        async with session.create_client(
            "s3", region_name="us-east-1", endpoint_url=self.endpoint
        ) as s3:
            response = await s3.get_object(Bucket=self.name, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data


@pytest.mark.timeout(180)
async def test_chunks_smaller_than_a_part_wait_in_a_tail_and_any_process_takes_the_next(
    aiohttp_client: Any, s3_settings: Settings, big_video: Path, tmp_path: Path
) -> None:
    first = Api(await aiohttp_client(create_app(s3_settings)))
    # Another process with its own data dir: nothing it needs may be on the first one's disk.
    second = Api(
        await aiohttp_client(
            create_app(s3_settings.replace(home=tmp_path / "other", inline_worker=False))
        )
    )
    bucket = Bucket(s3_settings.s3_endpoint_url or "", s3_settings.s3_bucket or "")
    user = await first.register("cloud")
    data = await asyncio.to_thread(big_video.read_bytes)

    def send(api: Api, stop_at: int, url: str | None) -> str:
        with big_video.open("rb") as stream:
            made = uploader(
                str(api.client.make_url("/api/uploads/")),
                user["token"],
                stream,
                chunk_size=MIB,
                url=url,
                metadata={"filename": "lossless.mp4", "filetype": "video/mp4"},
                upload_checksum=True,
            )
            made.upload(stop_at=stop_at)
            assert made.offset == stop_at
            return str(made.url)

    url = await asyncio.to_thread(send, first, 3 * MIB, None)
    upload_id = URL(url).name
    assert await bucket.keys(f"uploads/{upload_id}/") == [f"uploads/{upload_id}/tail-{3 * MIB}"]
    assert await bucket.multipart_uploads() == []  # nothing fills a part yet

    path = URL(url).path
    await asyncio.to_thread(send, second, 6 * MIB, str(second.client.make_url(path)))
    assert await bucket.keys(f"uploads/{upload_id}/") == [f"uploads/{upload_id}/tail-{6 * MIB}"]
    state = await second.client.head(path, headers={**TUS, **second.auth(user["token"])})
    assert state.headers["Upload-Offset"] == str(6 * MIB)
    video_id = state.headers["Reelwire-Video-Id"]
    assert await bucket.multipart_uploads() == [f"videos/{video_id}/original"]

    await asyncio.to_thread(send, first, len(data), str(first.client.make_url(path)))
    assert await bucket.read(f"videos/{video_id}/original") == data
    assert await bucket.multipart_uploads() == []
    assert await bucket.keys("uploads/") == []
    video = await wait_for(first, video_id, user["token"], timeout=120)
    assert video["status"] == "ready" and video["resolution"] == "854x480", video


async def test_an_expired_upload_on_s3_aborts_its_multipart_upload(
    aiohttp_client: Any, s3_settings: Settings, big_video: Path, db: asyncpg.Connection
) -> None:
    api = Api(await aiohttp_client(create_app(s3_settings.replace(inline_worker=False))))
    bucket = Bucket(s3_settings.s3_endpoint_url or "", s3_settings.s3_bucket or "")
    user = await api.register("abandoner")
    data = await asyncio.to_thread(big_video.read_bytes)
    created = await api.client.post(
        "/api/uploads/",
        data=io.BytesIO(data[: 6 * MIB]),
        headers={
            **TUS,
            **api.auth(user["token"]),
            "Upload-Length": str(len(data)),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert created.status == 201 and created.headers["Upload-Offset"] == str(6 * MIB)
    upload_id = UUID(URL(created.headers["Location"]).name)
    assert len(await bucket.multipart_uploads()) == 1
    assert await bucket.keys("uploads/") == [f"uploads/{upload_id}/tail-{6 * MIB}"]
    await db.execute(
        "UPDATE resumable_uploads SET expires_at = now() - interval '1 second' WHERE id = $1",
        upload_id,
    )
    assert await resumable_finish.sweep(api.client.app[SERVICES]) == 1
    assert await bucket.multipart_uploads() == []
    assert await bucket.keys("uploads/") == []
    video = await (
        await api.client.get(
            f"/api/videos/{created.headers['Reelwire-Video-Id']}", headers=api.auth(user["token"])
        )
    ).json()
    assert video["status"] == "failed" and "expired" in video["error"]
