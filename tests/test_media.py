"""The media pipeline on local disk with real FFmpeg: uploads, probing, the ladder, reading,
deleting, clips and the library."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from pubsub import keys
from reelwire.app import create_app
from reelwire.appkeys import SERVICES
from reelwire.domain.schemas.clips import ClipUploadOut
from reelwire.domain.schemas.videos import VideoOut, VideoStatusOut, VideoUploadOut
from reelwire.settings import Settings
from tests.conftest import Api, Backends
from tests.media import Media, fetch, form, upload, wait_for
from tests.test_events import Listener
from transcode.probe import probe

pytestmark = pytest.mark.usefixtures("reset")


async def test_1080p_upload_becomes_a_four_rung_ladder_with_progress_events(
    media_api: Api, media: Media, backends: Backends, tmp_path: Path
) -> None:
    user = await media_api.register("director")
    watcher = aioredis.Redis.from_url(backends.redis_url)
    pubsub = watcher.pubsub()
    await pubsub.subscribe(keys.redis_channel(keys.user_channel(user["id"])))

    status, body = await upload(media_api, user["token"], media.video_1080, title="Sunrise")
    assert status == 201, body
    VideoUploadOut.model_validate(body)
    assert body["title"] == "Sunrise"
    assert body["message"] == "Video uploaded successfully. Processing will begin shortly."
    video = await wait_for(media_api, body["id"], user["token"])
    assert video["status"] == "ready", video
    VideoOut.model_validate(video)
    assert [q["quality"] for q in video["qualities"]] == ["360p", "480p", "720p", "1080p"]
    assert [q["id"] for q in video["qualities"]] == [1, 2, 3, 4]  # the Clipsy API's ids
    assert [q["resolution"] for q in video["qualities"]] == [
        "640x360",
        "854x480",
        "1280x720",
        "1920x1080",
    ]
    assert video["resolution"] == "1920x1080" and video["fps"] == 30
    assert video["duration"] == pytest.approx(6, abs=0.1)
    assert set(video["quality_variants"]) == {"360p", "480p", "720p", "1080p"}

    master = await (await fetch(media_api, video["hls_playlist"])).text()
    variants = re.findall(r"#EXT-X-STREAM-INF:([^\n]+)\n(\S+)", master)
    video_variants = [(attrs, uri) for attrs, uri in variants if "RESOLUTION" in attrs]
    assert [re.search(r"RESOLUTION=(\S+?),", a).group(1) for a, _ in video_variants] == [
        "640x360",
        "854x480",
        "1280x720",
        "1920x1080",
    ]
    durations: list[list[str]] = []
    for attrs, uri in video_variants:
        bandwidth = int(re.search(r"BANDWIDTH=(\d+)", attrs).group(1))
        assert 500_000 < bandwidth < 7_000_000
        assert 'CODECS="avc1.' in attrs and "mp4a.40.2" in attrs
        playlist = await (
            await fetch(media_api, video["hls_playlist"].rsplit("/", 1)[0] + "/" + uri)
        ).text()
        assert "#EXT-X-TARGETDURATION:5" in playlist and "#EXT-X-ENDLIST" in playlist
        durations.append(re.findall(r"#EXTINF:([\d.]+),", playlist))
        segment = re.search(r"^(segment_\d+\.ts)$", playlist, re.M).group(1)
        seg = await fetch(
            media_api,
            video["hls_playlist"].rsplit("/", 1)[0] + "/" + uri.rsplit("/", 1)[0] + "/" + segment,
        )
        assert seg.content_type == "video/mp2t" and len(await seg.read()) > 1000
    # Keyframes are forced at the same instants in every rung, so segments line up exactly.
    assert durations[0] == ["2.000000", "4.000000"]  # a short first segment plays sooner
    assert all(d == durations[0] for d in durations)
    thumb = await fetch(media_api, video["thumbnail_url"])
    assert thumb.content_type == "image/jpeg"
    vtt = await (await fetch(media_api, video["storyboard"]["vtt"])).text()
    assert vtt.startswith("WEBVTT") and "storyboard.jpg#xywh=0,0,160,90" in vtt
    assert (await fetch(media_api, video["storyboard"]["image"])).content_type == "image/jpeg"

    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (events and events[-1].get("status") == "ready"):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message:
            events.append(Listener.decode(message["channel"], message["data"]))
    await pubsub.aclose()
    await watcher.aclose()
    assert all(e["video_id"] == body["id"] for e in events)
    progress = [e for e in events if e["type"] == "processing"]
    statuses = [e["status"] for e in progress]
    assert statuses[0] == "pending" and statuses[-1] == "ready"
    assert "processing" in statuses
    assert progress[-1]["progress"] == 100
    # Playable before ready: each rung as its first segment is up, then the whole video.
    order = [e["type"] if e["type"] != "processing" else e["status"] for e in events]
    kinds = [k for k in order if k in ("rendition_ready", "playable", "ready")]
    assert kinds == ["rendition_ready"] * 4 + ["playable", "ready"], order
    rungs = [(e["quality"], e["resolution"]) for e in events if e["type"] == "rendition_ready"]
    assert rungs == [(q["quality"], q["resolution"]) for q in video["qualities"]]
    (playable,) = [e for e in events if e["type"] == "playable"]
    assert playable["playable"] is True and playable["playback_url"] == video["hls_playlist"]
    assert video["playable"] is True and video["playback_url"] == video["hls_playlist"]
    preview = await fetch(media_api, video["preview_url"])
    assert preview.content_type == "video/mp4"
    (tmp_path / "preview.mp4").write_bytes(await preview.read())
    info = await probe(tmp_path / "preview.mp4")
    assert (info.width, info.height) == (426, 240) and not info.has_audio
    assert info.duration == pytest.approx(3.0, abs=0.1)


async def test_480p_source_is_not_upscaled(media_api: Api, media: Media) -> None:
    user = await media_api.register("small")
    _, body = await upload(media_api, user["token"], media.video_480)
    video = await wait_for(media_api, body["id"], user["token"])
    assert video["status"] == "ready"
    assert [q["quality"] for q in video["qualities"]] == ["360p", "480p"]
    master = await (await fetch(media_api, video["hls_playlist"])).text()
    assert "1280x720" not in master and "1920x1080" not in master


async def test_rotated_portrait_without_audio(media_api: Api, media: Media) -> None:
    user = await media_api.register("vertical")
    _, body = await upload(media_api, user["token"], media.portrait_silent)
    video = await wait_for(media_api, body["id"], user["token"])
    assert video["status"] == "ready", video
    assert video["resolution"] == "360x640"
    assert [q["resolution"] for q in video["qualities"]] == ["360x640"]
    master = await (await fetch(media_api, video["hls_playlist"])).text()
    assert "RESOLUTION=360x640" in master and "mp4a" not in master


@pytest.mark.parametrize(
    ("which", "fragment"),
    [
        ("text_as_mp4", "not a supported video or image format"),
        ("truncated", "could not be read as media"),
        ("playlist_as_mp4", "HLS playlist"),
        ("concat_as_mp4", "concat list"),
        ("audio_only", "no video stream"),
        ("image", "Expected a video file"),
    ],
)
async def test_bad_inputs_get_a_clear_400(
    media_api: Api, media: Media, which: str, fragment: str, db: Any
) -> None:
    user = await media_api.register("prankster")
    status, body = await upload(media_api, user["token"], getattr(media, which))
    assert status == 400, body
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert fragment in body["error"]["field_errors"]["video_file"][0]
    assert await db.fetchval("SELECT count(*) FROM videos") == 0


async def test_limits_on_duration_size_and_form(
    aiohttp_client: Any, media_settings: Settings, media: Media
) -> None:
    limit = 2 * 1024 * 1024
    assert media.portrait_silent.stat().st_size < limit < media.video_1080.stat().st_size
    settings = media_settings.replace(max_video_seconds=1, max_video_bytes=limit)
    api = Api(await aiohttp_client(create_app(settings)))
    user = await api.register("limits")
    status, body = await upload(api, user["token"], media.portrait_silent)
    assert status == 400 and "the limit is 1 s" in body["error"]["message"]
    wide = Api(await aiohttp_client(create_app(media_settings.replace(max_video_dimension=1280))))
    other = await wide.register("wide")
    status, body = await upload(wide, other["token"], media.video_1080)
    assert status == 400
    assert body["error"]["message"] == ("Video is 1920x1080; the limit is 1280 px on the long side")
    status, body = await upload(api, user["token"], media.video_1080)
    assert status == 413
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert body["error"]["message"] == "File size exceeds 2MB"
    resp = await api.client.post(
        "/api/videos",
        data=aiohttp.FormData({"title": "x"}, default_to_multipart=True),
        headers=api.auth(user["token"]),
    )
    body = await resp.json()
    assert resp.status == 400 and body["error"]["field_errors"] == {
        "video_file": ["This field is required."]
    }
    resp = await api.client.post(
        "/api/videos", json={"title": "x"}, headers=api.auth(user["token"])
    )
    assert resp.status == 415
    resp = await api.client.post("/api/videos", data=form("video_file", media.video_480))
    assert resp.status == 401


async def test_stream_supports_ranges_and_status_is_owner_only(
    media_api: Api, media: Media
) -> None:
    owner, other = await media_api.register("owner"), await media_api.register("other")
    _, body = await upload(media_api, owner["token"], media.video_480)
    size = media.video_480.stat().st_size
    resp = await media_api.client.get(
        f"/api/videos/{body['id']}/stream", headers={"Range": "bytes=100-199"}
    )
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert await resp.read() == media.video_480.read_bytes()[100:200]
    resp = await media_api.client.get(
        f"/api/videos/{body['id']}/stream", headers={"Range": f"bytes={size + 10}-"}
    )
    assert resp.status == 416
    full = await media_api.client.get(f"/api/videos/{body['id']}/stream")
    assert full.status == 200 and full.content_type == "video/mp4"
    status = await media_api.client.get(
        f"/api/videos/{body['id']}/status", headers=media_api.auth(owner["token"])
    )
    VideoStatusOut.model_validate(await status.json())
    forbidden = await media_api.client.get(
        f"/api/videos/{body['id']}/status", headers=media_api.auth(other["token"])
    )
    assert forbidden.status == 403
    await wait_for(media_api, body["id"], owner["token"])


async def test_delete_removes_every_stored_file(
    media_api: Api, media: Media, media_settings: Settings
) -> None:
    owner, other = await media_api.register("deleter"), await media_api.register("vandal")
    _, body = await upload(media_api, owner["token"], media.video_480)
    video = await wait_for(media_api, body["id"], owner["token"])
    stored = Path(media_settings.home) / "media" / "videos" / body["id"]
    assert (stored / "original").exists() and (stored / "hls" / "master.m3u8").exists()
    resp = await media_api.client.delete(
        f"/api/videos/{body['id']}", headers=media_api.auth(other["token"])
    )
    assert resp.status == 403
    resp = await media_api.client.delete(
        f"/api/videos/{body['id']}", headers=media_api.auth(owner["token"])
    )
    assert resp.status == 200
    assert not stored.exists()
    assert (await media_api.client.get(f"/api/videos/{body['id']}")).status == 404
    assert (await media_api.client.get(video["hls_playlist"])).status == 404


async def test_concurrent_uploads_all_finish(media_api: Api, media: Media) -> None:
    user = await media_api.register("busy")
    results = await asyncio.gather(
        *(upload(media_api, user["token"], media.video_480) for _ in range(4))
    )
    assert [status for status, _ in results] == [201] * 4
    finished = await asyncio.gather(
        *(wait_for(media_api, body["id"], user["token"]) for _, body in results)
    )
    assert {v["status"] for v in finished} == {"ready"}
    assert len({v["id"] for v in finished}) == 4


async def test_image_clip_is_resized_with_a_thumbnail(
    media_api: Api, media: Media, media_settings: Settings
) -> None:
    user = await media_api.register("storyteller")
    resp = await media_api.client.post(
        "/api/clips/upload",
        data=form("clip", media.image, caption="Hello!"),
        headers=media_api.auth(user["token"]),
    )
    body = await resp.json()
    assert resp.status == 201, body
    ClipUploadOut.model_validate(body)
    assert body["message"] == "Clip uploaded successfully"
    clip = body["clip"]
    assert clip["kind"] == "image" and clip["caption"] == "Hello!"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        services = media_api.client.app[SERVICES]
        async with services.db.acquire() as conn:
            row = await conn.fetchrow("SELECT status, image_key, thumbnail_key, width FROM clips")
        if row["status"] != "processing":
            break
        await asyncio.sleep(0.2)
    assert row["status"] == "ready"
    image = Path(media_settings.home) / "media" / row["image_key"]
    info = await _probe(image)
    assert max(info.width, info.height) == 1080 and info.format == "webp"
    assert (Path(media_settings.home) / "media" / row["thumbnail_key"]).exists()


async def test_clip_delete_is_owner_only_and_removes_media(
    media_api: Api, media: Media, media_settings: Settings
) -> None:
    owner, other = await media_api.register("clipowner"), await media_api.register("clipthief")
    resp = await media_api.client.post(
        "/api/clips/upload", data=form("clip", media.image), headers=media_api.auth(owner["token"])
    )
    clip = (await resp.json())["clip"]
    stored = Path(media_settings.home) / "media" / "clips" / clip["id"]
    assert stored.exists()
    for token in (other["token"],):
        resp = await media_api.client.delete(
            f"/api/clips/{clip['id']}", headers=media_api.auth(token)
        )
        assert resp.status == 404
        assert (await resp.json())["error"]["message"] == "Clip not found or unauthorized"
    resp = await media_api.client.delete(
        f"/api/clips/{clip['id']}", headers=media_api.auth(owner["token"])
    )
    assert resp.status == 200
    assert await resp.json() == {"message": "Clip deleted successfully"}
    assert not stored.exists()


async def test_clip_caption_rules_and_missing_file(media_api: Api, media: Media) -> None:
    user = await media_api.register("captions")
    resp = await media_api.client.post(
        "/api/clips/upload",
        data=form("clip", media.image, caption="<script>x</script>"),
        headers=media_api.auth(user["token"]),
    )
    assert resp.status == 400
    assert "caption" in (await resp.json())["error"]["field_errors"]
    resp = await media_api.client.post(
        "/api/clips/upload",
        data=form("clip", media.image, caption="x" * 501),
        headers=media_api.auth(user["token"]),
    )
    assert resp.status == 400
    resp = await media_api.client.post(
        "/api/clips/upload",
        data=aiohttp.FormData({"caption": "no file"}, default_to_multipart=True),
        headers=media_api.auth(user["token"]),
    )
    body = await resp.json()
    assert resp.status == 400 and body["error"]["message"] == "No clip file provided"


async def test_video_clip_is_transcoded_and_library_video_is_reused(
    media_api: Api, media: Media, db: Any
) -> None:
    user = await media_api.register("clipper")
    resp = await media_api.client.post(
        "/api/clips/upload",
        data=form("clip", media.video_480, caption="moving"),
        headers=media_api.auth(user["token"]),
    )
    clip = (await resp.json())["clip"]
    assert resp.status == 201 and clip["kind"] == "video"
    video = await wait_for(media_api, clip["video_id"], user["token"])
    assert video["status"] == "ready" and video["visibility"] == "unlisted"

    library = await media_api.client.post(
        "/api/v1/upload/video",
        data=form("file", media.video_480, title="mine"),
        headers=media_api.auth(user["token"]),
    )
    entry = await library.json()
    assert library.status == 201, entry
    objects_before = await db.fetchval("SELECT count(*) FROM videos")
    reuse = await media_api.client.post(
        "/api/clips/upload",
        data=aiohttp.FormData(
            {"video_id": entry["id"], "caption": "again"}, default_to_multipart=True
        ),
        headers=media_api.auth(user["token"]),
    )
    reused = (await reuse.json())["clip"]
    assert reuse.status == 201 and reused["video_id"] == entry["id"]
    assert await db.fetchval("SELECT count(*) FROM videos") == objects_before
    await wait_for(media_api, entry["id"], user["token"])


async def test_library_routes(media_api: Api, media: Media) -> None:
    user, other = await media_api.register("archivist"), await media_api.register("stranger")
    uploaded = []
    for path in (media.video_480, media.portrait_silent):
        resp = await media_api.client.post(
            "/api/v1/upload/video", data=form("file", path), headers=media_api.auth(user["token"])
        )
        assert resp.status == 201
        uploaded.append(await resp.json())
    headers = media_api.auth(user["token"])
    page = await (
        await media_api.client.get(
            "/api/v1/videos/s3-videos?page_size=1&sort_by=file_size&sort_order=asc", headers=headers
        )
    ).json()
    assert page["total_count"] == 2 and page["total_pages"] == 2 and page["has_more"] is True
    smallest = min(uploaded, key=lambda v: v["file_size"])
    assert page["videos"][0]["id"] == smallest["id"]
    searched = await (
        await media_api.client.get("/api/v1/videos/s3-videos?search=portrait", headers=headers)
    ).json()
    assert [v["original_filename"] for v in searched["videos"]] == ["portrait.mp4"]
    bad = await media_api.client.get(
        "/api/v1/videos/s3-videos?sort_by=password_hash", headers=headers
    )
    assert bad.status == 400
    recent = await (
        await media_api.client.get("/api/v1/videos/s3-videos/recent?limit=1", headers=headers)
    ).json()
    assert [v["id"] for v in recent["videos"]] == [uploaded[-1]["id"]]
    key = uploaded[0]["s3_key"]
    by_key = await media_api.client.get(f"/api/v1/videos/s3-videos/by-key/{key}", headers=headers)
    assert by_key.status == 200 and (await by_key.json())["id"] == uploaded[0]["id"]
    not_theirs = await media_api.client.get(
        f"/api/v1/videos/s3-videos/by-key/{key}", headers=media_api.auth(other["token"])
    )
    assert not_theirs.status == 404
    others_page = await (
        await media_api.client.get(
            "/api/v1/videos/s3-videos", headers=media_api.auth(other["token"])
        )
    ).json()
    assert others_page["total_count"] == 0
    for entry in uploaded:
        await wait_for(media_api, entry["id"], user["token"])


async def test_private_video_is_hidden_from_others(media_api: Api, media: Media) -> None:
    owner, other = await media_api.register("secretive"), await media_api.register("curious")
    resp = await media_api.client.post(
        "/api/v1/upload/video",
        data=form("file", media.video_480),
        headers=media_api.auth(owner["token"]),
    )
    video_id = (await resp.json())["id"]
    assert (await media_api.client.get(f"/api/videos/{video_id}")).status == 404
    assert (
        await media_api.client.get(
            f"/api/videos/{video_id}", headers=media_api.auth(other["token"])
        )
    ).status == 404
    assert (await media_api.client.get(f"/api/videos/{video_id}/stream")).status == 404
    mine = await media_api.client.get(
        f"/api/videos/{video_id}", headers=media_api.auth(owner["token"])
    )
    assert mine.status == 200
    await wait_for(media_api, video_id, owner["token"])


async def _probe(path: Path) -> Any:
    from transcode.probe import probe

    return await probe(path)
