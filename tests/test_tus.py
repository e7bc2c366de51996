"""Resumable uploads (tus 1.0.0) at /api/uploads/ with tuspy, the Python tus client: whole
uploads in chunks becoming ready videos and clips, checksums, termination, expiry, the
protocol's headers, and what a bad request gets. Faults (dropped connections, restarts, a
second process) are in test_tus_faults.py, S3 in test_tus_s3.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from yarl import URL

from http_api import tus
from http_api.uploads import DRAIN
from reelwire.appkeys import SERVICES
from reelwire.domain import resumable_finish
from reelwire.settings import Settings
from tests.conftest import Api
from tests.media import Media, wait_for
from tests.tusclient import TUS, metadata, resent, upload
from tests.wsclient import Socket

pytestmark = pytest.mark.usefixtures("reset")
CHUNK = 256 * 1024


def endpoint(api: Api) -> str:
    return str(api.client.make_url("/api/uploads/"))


async def create(api: Api, token: str, length: int, **meta: str) -> Any:
    headers = {**TUS, **api.auth(token), "Upload-Length": str(length)}
    if meta:
        headers["Upload-Metadata"] = metadata(**meta)
    return await api.client.post("/api/uploads/", headers=headers)


async def patch(api: Api, token: str, url: str, offset: int, data: bytes, **headers: str) -> Any:
    return await api.client.patch(
        URL(url).path,
        data=data,
        headers={
            **TUS,
            **api.auth(token),
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        },
    )


async def head(api: Api, token: str, url: str) -> Any:
    return await api.client.head(URL(url).path, headers={**TUS, **api.auth(token)})


def part_file(settings: Settings, url: str) -> Path:
    return settings.home / "tmp" / "resumable" / f"{URL(url).name}.part"


async def test_a_video_uploaded_in_chunks_with_tuspy_becomes_ready(
    media_api: Api, media: Media, media_settings: Settings
) -> None:
    user = await media_api.register("chunky")
    size = media.video_480.stat().st_size
    events = await Socket.open(media_api.client, headers=media_api.auth(user["token"]))
    await events.subscribe(f"user:{user['id']}")
    made = await upload(
        endpoint(media_api),
        user["token"],
        media.video_480,
        chunk_size=CHUNK,
        metadata={"filename": "v480.mp4", "title": "In pieces", "visibility": "unlisted"},
        upload_checksum=True,
    )
    assert len(made.sent) == -(-size // CHUNK) >= 3 and resent(made, size) == 0
    state = await head(media_api, user["token"], made.url)
    assert state.status == 200 and state.headers["Tus-Resumable"] == "1.0.0"
    assert state.headers["Upload-Offset"] == state.headers["Upload-Length"] == str(size)
    assert state.headers["Cache-Control"] == "no-store"
    video_id = state.headers["Reelwire-Video-Id"]
    video = await wait_for(media_api, video_id, user["token"])
    assert video["status"] == "ready", video
    assert video["title"] == "In pieces" and video["visibility"] == "unlisted"
    assert video["resolution"] == "854x480"
    original = media_settings.home / "media" / "videos" / video_id / "original"
    assert original.read_bytes() == media.video_480.read_bytes()
    assert not part_file(media_settings, made.url).exists()
    seen = []
    while "ready" not in seen:
        event = await events.expect("processing", timeout=10)
        seen.append(event["status"])
    assert seen[0] == "uploading" and "pending" in seen and "processing" in seen, seen


async def test_a_clip_uploaded_with_tuspy_is_posted_when_its_bytes_are_in(
    media_api: Api, media: Media
) -> None:
    user = await media_api.register("storyteller")
    fan = await media_api.register("fan")
    await media_api.client.post(
        f"/api/users/{user['id']}/follow", headers=media_api.auth(fan["token"])
    )
    resp = await create(
        media_api, user["token"], media.video_480.stat().st_size, kind="clip", caption="hi"
    )
    assert resp.status == 201, await resp.text()
    clip_id, video_id = resp.headers["Reelwire-Clip-Id"], resp.headers["Reelwire-Video-Id"]
    # Not posted yet: followers do not see a story that cannot play.
    clips_url = f"/api/clips/user/{user['id']}"
    fan_auth = media_api.auth(fan["token"])
    listed = await (await media_api.client.get(clips_url, headers=fan_auth)).json()
    assert listed["count"] == 0
    # The owner sees the video it is becoming.
    mine = await media_api.client.get(
        f"/api/videos/{video_id}", headers=media_api.auth(user["token"])
    )
    assert (await mine.json())["status"] == "uploading"

    data = media.video_480.read_bytes()
    location = resp.headers["Location"]
    for offset in range(0, len(data), CHUNK):
        sent = await patch(
            media_api, user["token"], location, offset, data[offset : offset + CHUNK]
        )
        assert sent.status == 204, await sent.text()
    listed = await (await media_api.client.get(clips_url, headers=fan_auth)).json()
    assert [c["id"] for c in listed["clips"]] == [clip_id]
    assert listed["clips"][0]["caption"] == "hi"
    video = await wait_for(media_api, video_id, user["token"])
    assert video["status"] == "ready", video

    # An image clip: the placeholder video goes, the clip is an image.
    made = await upload(
        endpoint(media_api),
        user["token"],
        media.image,
        chunk_size=CHUNK,
        metadata={"kind": "clip", "caption": "a picture", "filetype": "image/png"},
    )
    state = await head(media_api, user["token"], made.url)
    image_clip = state.headers["Reelwire-Clip-Id"]
    assert "Reelwire-Video-Id" not in state.headers
    feed = await (
        await media_api.client.get("/api/clips/all", headers=media_api.auth(fan["token"]))
    ).json()
    kinds = {c["id"]: c["kind"] for c in feed["clips"]}
    assert kinds == {clip_id: "video", image_clip: "image"}


async def test_a_chunk_that_fails_its_checksum_is_discarded_with_460(
    api: Api, media: Media, settings: Settings
) -> None:
    user = await api.register("careful")
    data = media.video_480.read_bytes()
    location = (await create(api, user["token"], len(data))).headers["Location"]
    first = data[:CHUNK]
    digest = base64.b64encode(hashlib.sha1(first).digest()).decode()
    ok = await patch(
        api, user["token"], location, 0, first, **{"Upload-Checksum": f"sha1 {digest}"}
    )
    assert ok.status == 204 and ok.headers["Upload-Offset"] == str(CHUNK)
    wrong = await patch(
        api,
        user["token"],
        location,
        CHUNK,
        data[CHUNK : 2 * CHUNK],
        **{"Upload-Checksum": f"sha1 {digest}"},
    )
    assert wrong.status == 460, await wrong.text()
    assert wrong.headers["Tus-Resumable"] == "1.0.0"
    assert (await wrong.json())["error"]["code"] == "CHECKSUM_MISMATCH"
    state = await head(api, user["token"], location)
    assert state.headers["Upload-Offset"] == str(CHUNK)
    assert part_file(settings, location).stat().st_size == CHUNK
    unknown = await patch(
        api, user["token"], location, CHUNK, b"x", **{"Upload-Checksum": "md5 AAAA"}
    )
    assert unknown.status == 400


async def test_termination_removes_the_bytes_and_the_unfinished_video(
    api: Api, media: Media, settings: Settings
) -> None:
    user = await api.register("quitter")
    data = media.video_480.read_bytes()
    resp = await create(api, user["token"], len(data), title="never mind")
    location, video_id = resp.headers["Location"], resp.headers["Reelwire-Video-Id"]
    assert (await patch(api, user["token"], location, 0, data[:CHUNK])).status == 204
    assert part_file(settings, location).exists()
    gone = await api.client.delete(URL(location).path, headers={**TUS, **api.auth(user["token"])})
    assert gone.status == 204 and gone.headers["Tus-Resumable"] == "1.0.0"
    assert (await head(api, user["token"], location)).status == 404
    assert not part_file(settings, location).exists()
    video = await api.client.get(f"/api/videos/{video_id}", headers=api.auth(user["token"]))
    assert video.status == 404


async def test_an_expired_upload_is_swept_and_its_video_says_why(
    aiohttp_client: Any, api: Api, media: Media, settings: Settings, db: asyncpg.Connection
) -> None:
    user = await api.register("slowpoke")
    data = media.video_480.read_bytes()
    resp = await create(api, user["token"], len(data))
    location, video_id = resp.headers["Location"], resp.headers["Reelwire-Video-Id"]
    expires = datetime.strptime(resp.headers["Upload-Expires"], "%a, %d %b %Y %H:%M:%S GMT")
    hours = (expires.replace(tzinfo=UTC) - datetime.now(UTC)) / timedelta(hours=1)
    assert 23.9 < hours <= 24
    assert (await patch(api, user["token"], location, 0, data[:CHUNK])).status == 204
    upload_id = UUID(URL(location).name)
    await db.execute(
        "UPDATE resumable_uploads SET expires_at = now() - interval '1 second' WHERE id = $1",
        upload_id,
    )
    assert (await head(api, user["token"], location)).status == 410
    assert (await patch(api, user["token"], location, CHUNK, b"more")).status == 410
    assert await resumable_finish.sweep(api.client.app[SERVICES]) == 1
    assert await db.fetchval("SELECT count(*) FROM resumable_uploads") == 0
    assert not part_file(settings, location).exists()
    video = await (
        await api.client.get(f"/api/videos/{video_id}", headers=api.auth(user["token"]))
    ).json()
    assert video["status"] == "failed" and "expired" in video["error"], video
    assert (await head(api, user["token"], location)).status == 404


async def test_options_says_what_the_server_supports(api: Api, settings: Settings) -> None:
    for path in ("/api/uploads/", "/api/uploads", f"/api/uploads/{UUID(int=1)}"):
        resp = await api.client.options(path)
        assert resp.status == 204, (path, resp.status)
        assert resp.headers["Tus-Version"] == resp.headers["Tus-Resumable"] == "1.0.0"
        extensions = set(resp.headers["Tus-Extension"].split(","))
        assert extensions == {
            "creation",
            "creation-with-upload",
            "termination",
            "expiration",
            "checksum",
        }
        assert resp.headers["Tus-Max-Size"] == str(settings.max_video_bytes)
        assert resp.headers["Tus-Checksum-Algorithm"] == "sha1"


async def test_cross_origin_tus_clients_are_allowed_its_headers(
    make_api: Any,
) -> None:
    origin = "https://app.example.com"
    api = await make_api(cors_origins=(origin,))
    asked = (
        "Authorization, Tus-Resumable, Upload-Length, Upload-Metadata, Upload-Offset, "
        "Upload-Checksum, Content-Type"
    )
    for method, path in (("POST", "/api/uploads/"), ("PATCH", f"/api/uploads/{UUID(int=1)}")):
        preflight = await api.client.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": asked,
            },
        )
        assert preflight.status == 200, await preflight.text()
        allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
        assert all(h.strip().lower() in allowed for h in asked.split(",")), allowed
    discovery = await api.client.options("/api/uploads/", headers={"Origin": origin})
    assert discovery.status == 204 and discovery.headers["Tus-Version"] == "1.0.0"
    user = await api.register("elsewhere")
    resp = await api.client.post(
        "/api/uploads/",
        headers={**TUS, **api.auth(user["token"]), "Upload-Length": "10", "Origin": origin},
    )
    assert resp.status == 201
    exposed = {h.strip().lower() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"location", "upload-offset", "upload-expires", "tus-resumable"} <= exposed
    assert {"reelwire-video-id", "reelwire-clip-id", "upload-length", "tus-version"} <= exposed


async def test_bad_requests_get_clear_4xx_answers(api: Api, settings: Settings) -> None:
    user = await api.register("sloppy")
    token = user["token"]

    async def status_of(
        length: str | None = "100", version: str = "1.0.0", **meta: str
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Tus-Resumable": version, **api.auth(token)}
        if length is not None:
            headers["Upload-Length"] = length
        if meta:
            headers["Upload-Metadata"] = metadata(**meta)
        resp = await api.client.post("/api/uploads/", headers=headers)
        return resp.status, await resp.json() if resp.status != 201 else {}

    status, body = await status_of(title="x" * 101)
    assert status == 400 and "title" in body["error"]["field_errors"], body
    status, body = await status_of(visibility="everyone")
    assert status == 400 and "visibility" in body["error"]["field_errors"], body
    status, body = await status_of(kind="podcast")
    assert status == 400 and "kind" in body["error"]["field_errors"], body
    status, body = await status_of(kind="clip", caption="<script>x</script>")
    assert status == 400 and "caption" in body["error"]["field_errors"], body
    status, body = await status_of(kind="clip", caption="c" * 501)
    assert status == 400 and body["error"]["message"] == "Caption cannot exceed 500 characters"
    status, body = await status_of(filetype="not a type")
    assert status == 400, body
    status, body = await status_of(length=None)
    assert status == 400 and "Upload-Length" in body["error"]["field_errors"], body
    status, body = await status_of(length="-1")
    assert status == 400, body
    status, body = await status_of(length=str(settings.max_video_bytes + 1))
    assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE", body
    status, body = await status_of(length=str(settings.max_clip_bytes + 1), kind="clip")
    assert status == 413, body
    status, body = await status_of(version="0.2.2")
    assert status == 412 and body["error"]["code"] == "PRECONDITION_FAILED", body
    bad = await api.client.post(
        "/api/uploads/",
        headers={**TUS, **api.auth(token), "Upload-Length": "5", "Upload-Metadata": "title %%%"},
    )
    assert bad.status == 400 and bad.headers["Tus-Resumable"] == "1.0.0"
    assert bad.headers.get("Tus-Version") is None
    refused = await api.client.post("/api/uploads/", headers={**TUS, "Upload-Length": "5"})
    assert refused.status == 401 and refused.headers["Tus-Resumable"] == "1.0.0"
    old = await api.client.post(
        "/api/uploads/", headers={**api.auth(token), "Tus-Resumable": "0.2.2", "Upload-Length": "5"}
    )
    assert old.status == 412 and old.headers["Tus-Version"] == "1.0.0"

    location = (await create(api, token, 100)).headers["Location"]
    wrong_type = await api.client.patch(
        URL(location).path,
        data=b"abc",
        headers={**TUS, **api.auth(token), "Upload-Offset": "0", "Content-Type": "text/plain"},
    )
    assert wrong_type.status == 415
    assert (await patch(api, token, location, 5, b"abc")).status == 409
    too_long = await patch(api, token, location, 0, b"x" * 101)
    assert too_long.status == 413  # said by its Content-Length: refused unread
    assert (await head(api, token, location)).headers["Upload-Offset"] == "0"

    async def streamed() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * 40

    chunked = await patch(api, token, location, 0, streamed())
    assert chunked.status == 413  # found out while reading: what fits is kept
    assert (await head(api, token, location)).headers["Upload-Offset"] == "100"


async def test_an_upload_is_its_creators_alone(api: Api) -> None:
    owner, other = await api.register("owner"), await api.register("other")
    location = (await create(api, owner["token"], 100)).headers["Location"]
    assert (await head(api, other["token"], location)).status == 404
    assert (await patch(api, other["token"], location, 0, b"abc")).status == 404
    gone = await api.client.delete(URL(location).path, headers={**TUS, **api.auth(other["token"])})
    assert gone.status == 404
    anonymous = await api.client.head(URL(location).path, headers=TUS)
    assert anonymous.status == 401
    assert (await head(api, owner["token"], location)).headers["Upload-Offset"] == "0"
    nonsense = await head(api, owner["token"], "/api/uploads/not-an-id")
    assert nonsense.status == 404


async def test_a_whole_file_that_fails_the_checks_answers_400_and_fails_the_upload(
    api: Api, media: Media, settings: Settings
) -> None:
    user = await api.register("textfan")
    data = media.text_as_mp4.read_bytes()
    resp = await api.client.post(
        "/api/uploads/",
        data=data,
        headers={
            **TUS,
            **api.auth(user["token"]),
            "Upload-Length": str(len(data)),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    body = await resp.json()
    assert resp.status == 400, body
    assert resp.headers["Location"] and "file" in body["error"]["field_errors"], body
    video_id = resp.headers["Reelwire-Video-Id"]
    video = await (
        await api.client.get(f"/api/videos/{video_id}", headers=api.auth(user["token"]))
    ).json()
    assert video["status"] == "failed" and video["error"] == body["error"]["message"]
    state = await head(api, user["token"], resp.headers["Location"])
    assert state.status == 410
    assert not part_file(settings, resp.headers["Location"]).exists()


async def test_creation_with_upload_and_the_cap_on_unfinished_uploads(
    make_api: Any, media: Media
) -> None:
    api = await make_api(tus_max_unfinished=2)
    user = await api.register("hoarder")
    data = media.video_480.read_bytes()
    first = await api.client.post(
        "/api/uploads/",
        data=data[:1000],
        headers={
            **TUS,
            **api.auth(user["token"]),
            "Upload-Length": str(len(data)),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert first.status == 201 and first.headers["Upload-Offset"] == "1000"
    assert (await create(api, user["token"], 10)).status == 201
    third = await create(api, user["token"], 10)
    assert third.status == 400 and (await third.json())["error"]["code"] == "LIMIT_EXCEEDED"
    await api.client.delete(
        URL(first.headers["Location"]).path, headers={**TUS, **api.auth(user["token"])}
    )
    assert (await create(api, user["token"], 10)).status == 201


async def test_two_chunks_at_once_never_interleave(
    api: Api, media: Media, settings: Settings
) -> None:
    user = await api.register("twice")
    data = media.video_480.read_bytes()[: 4 * CHUNK]
    location = (await create(api, user["token"], len(data))).headers["Location"]
    answers = await asyncio.gather(
        *(patch(api, user["token"], location, 0, data[: 2 * CHUNK]) for _ in range(4))
    )
    statuses = sorted(a.status for a in answers)
    assert statuses.count(204) == 1 and set(statuses) <= {204, 409, 423}, statuses
    assert part_file(settings, location).read_bytes() == data[: 2 * CHUNK]


async def test_the_janitor_finishes_an_upload_whose_check_was_cut_off(
    api: Api, media: Media, settings: Settings, db: asyncpg.Connection
) -> None:
    user = await api.register("interrupted")
    data = media.video_480.read_bytes()
    resp = await create(api, user["token"], len(data), title="all there")
    location, video_id = resp.headers["Location"], resp.headers["Reelwire-Video-Id"]
    assert (await patch(api, user["token"], location, 0, data[:-1])).status == 204
    # The last byte reached the disk and the row, then the process died before checking it.
    with part_file(settings, location).open("ab") as part:
        part.write(data[-1:])
    await db.execute(
        "UPDATE resumable_uploads SET upload_offset = upload_length, "
        "updated_at = now() - interval '2 minutes'"
    )
    stray = part_file(settings, f"/api/uploads/{UUID(int=7)}")
    stray.write_bytes(b"left by an upload whose row is gone")
    old = datetime.now(UTC).timestamp() - 3600
    os.utime(stray, (old, old))
    assert await resumable_finish.sweep(api.client.app[SERVICES]) == 0
    assert not stray.exists()
    state = await head(api, user["token"], location)
    assert state.status == 200 and "Upload-Expires" not in state.headers  # complete
    status = await db.fetchval("SELECT status FROM videos WHERE id = $1", UUID(video_id))
    assert status == "pending"
    original = settings.home / "media" / "videos" / video_id / "original"
    assert original.read_bytes() == data


async def test_a_stopping_server_asks_for_the_next_chunk_later(api: Api, media: Media) -> None:
    user = await api.register("latecomer")
    location = (await create(api, user["token"], 1000)).headers["Location"]
    api.client.app[DRAIN].since = time.monotonic()  # SIGTERM arrived
    resp = await patch(api, user["token"], location, 0, b"x" * 100)
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert (await head(api, user["token"], location)).headers["Upload-Offset"] == "0"


async def test_a_process_receiving_too_many_chunks_asks_for_one_more_later(api: Api) -> None:
    user = await api.register("crowded")
    location = (await create(api, user["token"], 1000)).headers["Location"]
    writers = api.client.app[tus.WRITERS]
    writers.active = tus.MAX_CHUNKS_IN_FLIGHT  # each holds a PostgreSQL connection
    busy = await patch(api, user["token"], location, 0, b"x" * 100)
    assert busy.status == 503 and busy.headers["Retry-After"] == "5"
    writers.active = 0
    assert (await patch(api, user["token"], location, 0, b"x" * 100)).status == 204
