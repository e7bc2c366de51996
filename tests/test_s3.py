"""The S3 backend end to end, against moto's S3 server over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
from aiobotocore.session import get_session

from reelwire.app import create_app
from reelwire.appkeys import SERVICES, SETTINGS
from reelwire.settings import Settings
from tests.conftest import Api
from tests.media import Media, form, until_playable, upload, wait_for

pytestmark = pytest.mark.usefixtures("reset")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, with dummy credentials in the environment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
async def s3_api(aiohttp_client: Any, media_settings: Settings, s3_endpoint: str) -> Api:
    settings = media_settings.replace(
        s3_bucket=f"reelwire-{uuid.uuid4().hex[:8]}", s3_endpoint_url=s3_endpoint
    )
    return Api(await aiohttp_client(create_app(settings)))


async def list_keys(endpoint: str, bucket: str, prefix: str) -> list[str]:
    session = get_session()
    async with session.create_client("s3", region_name="us-east-1", endpoint_url=endpoint) as s3:
        response = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for item in response.get("Contents", [])]


async def test_upload_transcode_read_and_delete_on_s3(
    s3_api: Api, media: Media, s3_endpoint: str
) -> None:
    user = await s3_api.register("cloudy")
    status, body = await upload(s3_api, user["token"], media.video_1080, title="in the cloud")
    assert status == 201, body
    video = await wait_for(s3_api, body["id"], user["token"])
    assert video["status"] == "ready", video
    assert [q["quality"] for q in video["qualities"]] == ["360p", "480p", "720p", "1080p"]
    bucket = _bucket(s3_api)
    keys = await list_keys(s3_endpoint, bucket, f"videos/{body['id']}/")
    assert f"videos/{body['id']}/original" in keys
    assert f"videos/{body['id']}/hls/master.m3u8" in keys
    for name in ("360p", "480p", "720p", "1080p", "audio"):
        assert f"videos/{body['id']}/hls/{name}/playlist.m3u8" in keys
    for name in ("thumbnail.jpg", "storyboard.jpg", "storyboard.vtt"):
        assert f"videos/{body['id']}/hls/{name}" in keys

    # Playlists come through the app, so their relative URIs keep resolving here ...
    master = await s3_api.client.get(video["hls_playlist"])
    assert master.status == 200 and master.content_type == "application/vnd.apple.mpegurl"
    variant_path = video["qualities"][0]["playlist_path"]
    playlist = await (await s3_api.client.get(variant_path)).text()
    segment = next(line for line in playlist.splitlines() if line.endswith(".ts"))
    # ... and segments redirect to a short-lived presigned GET on S3.
    seg = await s3_api.client.get(
        variant_path.rsplit("/", 1)[0] + "/" + segment, allow_redirects=False
    )
    assert seg.status == 302
    location = seg.headers["Location"]
    assert location.startswith(s3_endpoint) and "X-Amz-Signature=" in location
    async with aiohttp.ClientSession() as http:
        fetched = await http.get(location)
        assert fetched.status == 200 and len(await fetched.read()) > 1000
        stream = await s3_api.client.get(f"/api/videos/{body['id']}/stream", allow_redirects=False)
        assert stream.status == 302
        ranged = await http.get(stream.headers["Location"], headers={"Range": "bytes=0-99"})
        assert ranged.status == 206 and len(await ranged.read()) == 100

    resp = await s3_api.client.delete(
        f"/api/videos/{body['id']}", headers=s3_api.auth(user["token"])
    )
    assert resp.status == 200
    assert await list_keys(s3_endpoint, bucket, f"videos/{body['id']}/") == []


async def test_a_video_on_s3_plays_while_it_transcodes(
    s3_api: Api, media: Media, s3_endpoint: str
) -> None:
    user = await s3_api.register("eager")
    _, body = await upload(s3_api, user["token"], media.long_1080)
    video = await until_playable(s3_api, body["id"], user["token"])
    assert video["playable"] and video["status"] == "processing", video
    master = await s3_api.client.get(video["playback_url"])
    assert master.status == 200
    first_variant = next(
        line for line in (await master.text()).splitlines() if line.endswith(".m3u8")
    )
    base = video["playback_url"].rsplit("/", 1)[0]
    resp = await s3_api.client.get(f"{base}/{first_variant}")
    assert resp.headers["Cache-Control"] == "public, no-cache"
    growing = await resp.text()
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in growing and "#EXT-X-ENDLIST" not in growing
    segment = next(line for line in growing.splitlines() if line.endswith(".ts"))
    seg = await s3_api.client.get(
        f"{base}/{first_variant.rsplit('/', 1)[0]}/{segment}", allow_redirects=False
    )
    assert seg.status == 302 and seg.headers["Location"].startswith(s3_endpoint)
    async with aiohttp.ClientSession() as http:
        fetched = await http.get(seg.headers["Location"])
        assert fetched.status == 200 and len(await fetched.read()) > 1000

    done = await wait_for(s3_api, body["id"], user["token"], timeout=150)
    assert done["status"] == "ready"
    final = await (await s3_api.client.get(f"{base}/{first_variant}")).text()
    assert final.startswith(growing.split("#EXTINF")[0]) and "#EXT-X-ENDLIST" in final
    keys = await list_keys(s3_endpoint, _bucket(s3_api), f"videos/{body['id']}/hls/")
    assert f"videos/{body['id']}/hls/preview.mp4" in keys
    assert not [k for k in keys if ".incoming" in k or k.endswith(".tmp")]


async def test_direct_upload_to_a_presigned_put(
    s3_api: Api, media: Media, s3_endpoint: str
) -> None:
    user = await s3_api.register("direct_s3")
    data = media.video_480.read_bytes()
    resp = await s3_api.client.post(
        "/api/upload/video/request",
        json={"filename": "d.mp4", "file_size": len(data), "content_type": "video/mp4"},
        headers=s3_api.auth(user["token"]),
    )
    grant = await resp.json()
    url = grant["upload_url"]
    assert url.startswith(s3_endpoint)
    query = parse_qs(urlparse(url).query)
    # The signature covers the declared size and type, and the URL expires.
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert query["X-Amz-Expires"] == [str(s3_api.client.app[SETTINGS].upload_url_ttl)]
    async with aiohttp.ClientSession() as http:
        put = await http.put(url, data=data, headers={"Content-Type": "video/mp4"})
        assert put.status == 200
    done = await s3_api.client.post(
        f"/api/videos/{grant['video_id']}/upload-complete", headers=s3_api.auth(user["token"])
    )
    body = await done.json()
    assert done.status == 200, body
    assert body["status"] in ("pending", "processing")
    video = await wait_for(s3_api, grant["video_id"], user["token"])
    assert video["status"] == "ready"


async def test_completion_rejects_a_different_size_than_declared(s3_api: Api, media: Media) -> None:
    user = await s3_api.register("liar")
    data = media.video_480.read_bytes()
    resp = await s3_api.client.post(
        "/api/upload/video/request",
        json={"filename": "d.mp4", "file_size": len(data) + 1, "content_type": "video/mp4"},
        headers=s3_api.auth(user["token"]),
    )
    grant = await resp.json()
    store = s3_api.client.app[SERVICES].blobs
    # What a client could store if S3 did not enforce the signed length (moto does not).
    await store.put_bytes(f"videos/{grant['video_id']}/original", data, "video/mp4")
    done = await s3_api.client.post(
        f"/api/videos/{grant['video_id']}/upload-complete", headers=s3_api.auth(user["token"])
    )
    assert done.status == 400
    assert "declared" in (await done.json())["error"]["message"]


async def test_image_clip_on_s3(s3_api: Api, media: Media, s3_endpoint: str) -> None:
    user = await s3_api.register("s3clips")
    resp = await s3_api.client.post(
        "/api/clips/upload", data=form("clip", media.image), headers=s3_api.auth(user["token"])
    )
    clip = (await resp.json())["clip"]
    assert resp.status == 201
    deadline = time.monotonic() + 30
    keys: list[str] = []
    while time.monotonic() < deadline and not any(k.endswith("image.webp") for k in keys):
        keys = await list_keys(s3_endpoint, _bucket(s3_api), f"clips/{clip['id']}/")
        await asyncio.sleep(0.2)
    assert f"clips/{clip['id']}/media/image.webp" in keys
    assert f"clips/{clip['id']}/media/thumbnail.jpg" in keys


def _bucket(api: Api) -> str:
    bucket = api.client.app[SETTINGS].s3_bucket
    assert bucket
    return bucket


async def test_private_video_on_s3_plays_only_through_signed_urls(
    s3_api: Api, media: Media, s3_endpoint: str
) -> None:
    owner = await s3_api.register("hidden")
    status, body = await upload(
        s3_api, owner["token"], media.video_480, title="private", visibility="private"
    )
    assert status == 201, body
    video = await wait_for(s3_api, body["id"], owner["token"])
    assert video["status"] == "ready", video
    master_url = video["hls_playlist"]
    assert master_url.startswith("/media/signed/")
    plain_master = f"/media/videos/{body['id']}/hls/master.m3u8"
    assert (await s3_api.client.get(plain_master)).status == 404
    # The player's walk: master -> variant (relative, keeps the token) -> segment -> S3.
    master = await s3_api.client.get(master_url)
    assert master.status == 200 and master.headers["ETag"]
    again = await s3_api.client.get(master_url, headers={"If-None-Match": master.headers["ETag"]})
    assert again.status == 304
    variant = next(line for line in (await master.text()).splitlines() if line.endswith(".m3u8"))
    base = master_url.rsplit("/", 1)[0]
    playlist = await s3_api.client.get(f"{base}/{variant}")
    assert playlist.status == 200
    segment = next(line for line in (await playlist.text()).splitlines() if line.endswith(".ts"))
    segment_url = f"{base}/{variant.rsplit('/', 1)[0]}/{segment}"
    seg = await s3_api.client.get(segment_url, allow_redirects=False)
    assert seg.status == 302
    async with aiohttp.ClientSession() as http:
        fetched = await http.get(seg.headers["Location"])
        assert fetched.status == 200 and len(await fetched.read()) > 1000
    plain_segment = segment_url.split("/", 4)[4]
    assert (await s3_api.client.get(f"/media/{plain_segment}")).status == 404
    forged = segment_url.replace(".", "x", 1)
    assert (await s3_api.client.get(forged, allow_redirects=False)).status in (403, 404)
