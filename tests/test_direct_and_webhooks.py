"""Direct uploads to signed URLs (local disk) and signed incoming webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import orjson
import pytest
from yarl import URL

from reelwire.app import create_app
from reelwire.settings import Settings
from tests.conftest import Api
from tests.media import Media, wait_for

pytestmark = pytest.mark.usefixtures("reset")
SECRET = "webhook-secret-for-tests"


@pytest.fixture
async def direct_api(aiohttp_client: Any, media_settings: Settings) -> Api:
    settings = media_settings.replace(webhook_secret=SECRET, upload_url_ttl=60)
    return Api(await aiohttp_client(create_app(settings)))


async def request_url(api: Api, token: str, size: int, mime: str = "video/mp4") -> dict[str, Any]:
    resp = await api.client.post(
        "/api/videos/upload-url",
        json={"filename": "direct.mp4", "fileSize": size, "mimeType": mime},
        headers=api.auth(token),
    )
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def put(api: Api, url: str, data: bytes, content_type: str = "video/mp4") -> Any:
    target = URL(url)
    return await api.client.put(target.path, data=data, headers={"Content-Type": content_type})


async def test_upload_flow_direct_upload_then_ready(direct_api: Api, media: Media) -> None:
    user = await direct_api.register("direct")
    data = media.video_480.read_bytes()
    grant = await request_url(direct_api, user["token"], len(data))
    assert set(grant) >= {"videoId", "uploadUrl", "provider", "expiresAt"}
    assert grant["uploadUrl"].startswith("http://127.0.0.1:")
    status = await direct_api.client.get(
        f"/api/videos/{grant['videoId']}/status", headers=direct_api.auth(user["token"])
    )
    assert (await status.json())["status"] == "uploading"
    resp = await put(direct_api, grant["uploadUrl"], data)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["status"] in ("pending", "processing") and body["resolution"] == "854x480"
    video = await wait_for(direct_api, grant["videoId"], user["token"])
    assert video["status"] == "ready"


async def test_altered_expired_or_mismatched_urls_get_403(
    direct_api: Api, media: Media, aiohttp_client: Any, media_settings: Settings
) -> None:
    user = await direct_api.register("forger")
    data = media.video_480.read_bytes()
    grant = await request_url(direct_api, user["token"], len(data))
    url = URL(grant["uploadUrl"])
    token = url.path.rsplit("/", 1)[1]
    payload, signature = token.split(".")
    altered = f"{payload[:-3]}{'A' if payload[-3] != 'A' else 'B'}{payload[-2:]}.{signature}"
    resp = await direct_api.client.put(
        f"/api/uploads/{altered}", data=data, headers={"Content-Type": "video/mp4"}
    )
    assert resp.status == 403
    resp = await put(direct_api, grant["uploadUrl"], data, content_type="video/webm")
    assert resp.status == 403
    resp = await put(direct_api, grant["uploadUrl"], data + b"extra")
    assert resp.status == 403
    short_lived = Api(await aiohttp_client(create_app(media_settings.replace(upload_url_ttl=1))))
    other = await short_lived.register("late")
    late = await request_url(short_lived, other["token"], len(data))
    await asyncio.sleep(1.2)
    resp = await put(short_lived, late["uploadUrl"], data)
    assert resp.status == 403
    assert (await resp.json())["error"]["message"] == "Upload URL has expired"


async def test_the_direct_upload_apis_error_messages(direct_api: Api) -> None:
    """Where the direct-upload API documents a message, that is the message (codes stay ours)."""
    user = await direct_api.register("contract")

    async def ask(body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
        headers = direct_api.auth(token) if token else {}
        resp = await direct_api.client.post("/api/videos/upload-url", json=body, headers=headers)
        return resp.status, (await resp.json())["error"]

    good = {"filename": "a.mp4", "fileSize": 10, "mimeType": "video/mp4"}
    assert await ask(good, None) == (
        401,
        {
            "code": "UNAUTHORIZED",
            "message": "Unauthorized",
            "details": {"reason": "Authentication required"},
        },
    )
    status, error = await ask(good, "not-a-token")
    assert (status, error["message"]) == (401, "Unauthorized")
    status, error = await ask({**good, "mimeType": "text/plain"}, user["token"])
    assert (status, error["code"], error["message"]) == (
        400,
        "VALIDATION_ERROR",
        "Invalid file type",
    )
    assert "video/mp4" in error["field_errors"]["content_type"][0]
    status, error = await ask({**good, "fileSize": 10**13}, user["token"])
    assert (status, error["message"]) == (413, "File too large")
    assert error["details"]["max_bytes"] > 0
    resp = await direct_api.client.get(f"/api/videos/{user['id']}/status")
    assert (await resp.json())["error"]["message"] == "Unauthorized"
    resp = await direct_api.client.post("/api/posts", json={"content": "hi"})
    assert (await resp.json())["error"]["message"] == "Unauthorized"
    # The CLUTCH API's own routes keep its wording.
    resp = await direct_api.client.post(f"/api/videos/{user['id']}/like", json={"action": "like"})
    assert (await resp.json())["error"]["message"] == "Authentication required"


async def test_declared_type_and_size_are_checked_up_front(direct_api: Api) -> None:
    user = await direct_api.register("declarer")
    resp = await direct_api.client.post(
        "/api/videos/upload-url",
        json={"filename": "x.txt", "fileSize": 10, "mimeType": "text/plain"},
        headers=direct_api.auth(user["token"]),
    )
    assert resp.status == 400
    resp = await direct_api.client.post(
        "/api/upload/video/request",
        json={"filename": "x.mp4", "file_size": 10**13, "content_type": "video/mp4"},
        headers=direct_api.auth(user["token"]),
    )
    assert resp.status == 413


async def test_clutch_request_and_content_checked_at_completion(
    direct_api: Api, media: Media
) -> None:
    user = await direct_api.register("checker")
    fake = media.text_as_mp4.read_bytes()
    resp = await direct_api.client.post(
        "/api/upload/video/request",
        json={"filename": "fake.mp4", "file_size": len(fake), "content_type": "video/mp4"},
        headers=direct_api.auth(user["token"]),
    )
    grant = await resp.json()
    assert set(grant) >= {"upload_url", "video_id", "expires_at"}
    resp = await put(direct_api, grant["upload_url"], fake)
    body = await resp.json()
    assert resp.status == 400
    assert "not a supported video" in body["error"]["message"]
    status = await (
        await direct_api.client.get(
            f"/api/videos/{grant['video_id']}/status", headers=direct_api.auth(user["token"])
        )
    ).json()
    assert status["status"] == "failed" and "not a supported video" in status["error"]


async def test_custom_thumbnail_upload(direct_api: Api, media: Media) -> None:
    user = await direct_api.register("thumbs")
    data = media.video_480.read_bytes()
    grant = await request_url(direct_api, user["token"], len(data))
    image = media.image.read_bytes()
    resp = await direct_api.client.post(
        "/api/upload/thumbnail/request",
        json={
            "video_id": grant["videoId"],
            "filename": "t.png",
            "file_size": len(image),
            "content_type": "image/png",
        },
        headers=direct_api.auth(user["token"]),
    )
    thumb = await resp.json()
    assert resp.status == 200, thumb
    resp = await put(direct_api, thumb["upload_url"], image, content_type="image/png")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["thumbnail_url"].endswith("/custom-thumbnail")
    assert (await direct_api.client.get(body["thumbnail_url"])).status == 200


# --- webhooks ------------------------------------------------------------------------------


def sign(body: bytes, timestamp: str | None = None) -> dict[str, str]:
    signed = body if timestamp is None else timestamp.encode() + b"." + body
    digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    headers = {"x-webhook-signature": f"sha256={digest}", "Content-Type": "application/json"}
    if timestamp is not None:
        headers["x-webhook-timestamp"] = timestamp
    return headers


async def pending_video(api: Api) -> tuple[dict[str, Any], str]:
    user = await api.register()
    grant = await request_url(api, user["token"], 1000)
    return user, grant["videoId"]


async def test_clutch_webhook_marks_ready_once(direct_api: Api) -> None:
    _, video_id = await pending_video(direct_api)
    payload = {
        "video_id": video_id,
        "status": "success",
        "duration": 12.5,
        "thumbnail_url": "https://cdn.example.com/t.jpg",
        "quality_variants": {"720p": "https://cdn.example.com/720.m3u8"},
        "playback_url": "https://cdn.example.com/master.m3u8",
    }
    body = orjson.dumps(payload)
    resp = await direct_api.client.post(
        "/api/webhooks/video-processed", data=body, headers=sign(body)
    )
    assert await resp.json() == {
        "received": True,
        "duplicate": False,
        "video_id": video_id,
        "status": "ready",
    }
    video = await (await direct_api.client.get(f"/api/videos/{video_id}")).json()
    assert video["status"] == "ready" and video["hls_playlist"] == payload["playback_url"]
    assert video["quality_variants"] == {"720p": "https://cdn.example.com/720.m3u8"}
    assert video["duration"] == 12.5
    again = await direct_api.client.post(
        "/api/webhooks/video-processed", data=body, headers=sign(body)
    )
    assert (await again.json())["duplicate"] is True


async def test_upload_flow_error_event_fails_the_video(direct_api: Api) -> None:
    user, video_id = await pending_video(direct_api)
    body = orjson.dumps(
        {
            "id": "evt_1",
            "type": "video.asset.errored",
            "data": {"id": video_id, "error_message": "codec unsupported"},
        }
    )
    resp = await direct_api.client.post(
        "/api/webhooks/video-processing", data=body, headers=sign(body)
    )
    assert resp.status == 200
    status = await (
        await direct_api.client.get(
            f"/api/videos/{video_id}/status", headers=direct_api.auth(user["token"])
        )
    ).json()
    assert status["status"] == "failed" and status["error"] == "codec unsupported"


async def test_webhook_signature_timestamp_and_payload_checks(
    direct_api: Api, aiohttp_client: Any, media_settings: Settings
) -> None:
    _, video_id = await pending_video(direct_api)
    body = orjson.dumps({"video_id": video_id, "status": "success"})
    url = "/api/webhooks/video-processed"
    resp = await direct_api.client.post(
        url, data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 401
    tampered = body.replace(b"success", b"error")
    resp = await direct_api.client.post(url, data=tampered, headers=sign(body))
    assert resp.status == 401
    stale = str(int(time.time()) - 600)
    resp = await direct_api.client.post(url, data=body, headers=sign(body, stale))
    assert resp.status == 401
    error = (await resp.json())["error"]
    assert error["message"] == "Invalid signature"  # the direct-upload API's words
    assert "300 s window" in error["details"]["reason"]
    resp = await direct_api.client.post(url, data=body, headers=sign(body, str(int(time.time()))))
    assert resp.status == 200
    invalid = orjson.dumps({"video_id": video_id, "status": "finished"})
    resp = await direct_api.client.post(url, data=invalid, headers=sign(invalid))
    assert resp.status == 400
    assert "status" in (await resp.json())["error"]["field_errors"]
    unknown = orjson.dumps(
        {"video_id": "00000000-0000-0000-0000-000000000000", "status": "success"}
    )
    resp = await direct_api.client.post(url, data=unknown, headers=sign(unknown))
    assert resp.status == 404
    unconfigured = Api(await aiohttp_client(create_app(media_settings)))
    resp = await unconfigured.client.post(url, data=body, headers=sign(body))
    assert resp.status == 403


async def test_signed_upload_urls_never_follow_the_host_header(
    direct_api: Api, make_api: Any
) -> None:
    user = await direct_api.register("hosted")
    resp = await direct_api.client.post(
        "/api/videos/upload-url",
        json={"filename": "a.mp4", "fileSize": 1000, "mimeType": "video/mp4"},
        headers={**direct_api.auth(user["token"]), "Host": "evil.example"},
    )
    grant = await resp.json()
    assert resp.status == 200, grant
    port = direct_api.client.server.port
    assert grant["uploadUrl"].startswith(f"http://127.0.0.1:{port}/api/uploads/"), grant
    assert "evil.example" not in str(grant)

    proxied = await make_api(public_base_url="https://videos.example.com")
    other = await proxied.register("proxied")
    resp = await proxied.client.post(
        "/api/videos/upload-url",
        json={"filename": "a.mp4", "fileSize": 1000, "mimeType": "video/mp4"},
        headers={**proxied.auth(other["token"]), "Host": "evil.example"},
    )
    grant = await resp.json()
    assert grant["uploadUrl"].startswith("https://videos.example.com/api/uploads/"), grant
    doc = await (await proxied.client.get("/api/asyncapi.json", headers={"Host": "x.io"})).json()
    assert "x.io" not in str(doc["servers"]) and "videos.example.com" in str(doc["servers"])


async def test_a_signed_webhook_with_text_the_database_cannot_store_is_a_400(
    direct_api: Api,
) -> None:
    _, video_id = await pending_video(direct_api)
    body = orjson.dumps(
        {"video_id": video_id, "status": "success", "playback_url": "https://cdn.example.com/\x00"}
    )
    resp = await direct_api.client.post(
        "/api/webhooks/video-processed", data=body, headers=sign(body)
    )
    answer = await resp.json()
    assert resp.status == 400, answer
    assert "playback_url" in answer["error"]["field_errors"], answer
    listed = await direct_api.client.post(
        "/api/webhooks/video-processed", data=b"[1]", headers=sign(b"[1]")
    )
    assert listed.status == 400
