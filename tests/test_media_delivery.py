"""Media as players fetch it, with real FFmpeg outputs on local disk: caching, conditional and
range requests, a media limit apart from the API's, and private media only at signed URLs."""

from __future__ import annotations

import asyncio
import io
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import pytest

from reelwire.appkeys import SERVICES
from reelwire.domain import media_access
from tests.conftest import Api, MakeApi
from tests.media import Media, form, upload, wait_for
from tests.wsclient import Socket

pytestmark = pytest.mark.usefixtures("reset")


async def _media_tree(api: Api, master_url: str) -> list[str]:
    """Every URL a player reaches from a master playlist: variant and audio playlists and
    all their segments, resolved the way a player resolves relative URIs."""
    urls = [master_url]
    resp = await api.client.get(master_url)
    assert resp.status == 200, (master_url, resp.status)
    master = await resp.text()
    base = master_url.rsplit("/", 1)[0]
    playlists = [line for line in master.splitlines() if line and not line.startswith("#")]
    playlists += re.findall(r'URI="([^"]+)"', master)
    assert playlists, master
    for uri in playlists:
        playlist_url = f"{base}/{uri}"
        urls.append(playlist_url)
        resp = await api.client.get(playlist_url)
        assert resp.status == 200, (playlist_url, resp.status)
        text = await resp.text()
        folder = playlist_url.rsplit("/", 1)[0]
        segments = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert segments, text
        urls += [f"{folder}/{segment}" for segment in segments]
    return urls


def _extras(video: dict[str, Any]) -> list[str]:
    return [
        video["thumbnail_url"],
        video["storyboard"]["image"],
        video["storyboard"]["vtt"],
    ]


async def test_public_media_is_cacheable_conditional_ranged_and_readable_anywhere(
    media_api: Api, media: Media
) -> None:
    user = await media_api.register()
    status, body = await upload(media_api, user["token"], media.video_480, title="open")
    assert status == 201, body
    video = await wait_for(media_api, body["id"], user["token"])
    assert video["status"] == "ready", video
    assert "/signed/" not in video["hls_playlist"]
    urls = await _media_tree(media_api, video["hls_playlist"])
    segment = next(u for u in urls if u.endswith(".ts"))

    playlist = await media_api.client.get(video["hls_playlist"], headers={"Origin": "https://x.io"})
    assert playlist.headers["Cache-Control"] == "public, max-age=10"
    assert playlist.headers["Access-Control-Allow-Origin"] == "*"

    first = await media_api.client.get(segment)
    assert first.status == 200
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert first.content_type == "video/mp2t"
    whole = await first.read()
    etag = first.headers["ETag"]
    again = await media_api.client.get(segment, headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    part = await media_api.client.get(segment, headers={"Range": "bytes=100-299"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-299/{len(whole)}"
    assert await part.read() == whole[100:300]
    beyond = await media_api.client.get(segment, headers={"Range": f"bytes={len(whole) + 10}-"})
    assert beyond.status == 416
    head = await media_api.client.head(segment)
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(whole)
    for url in _extras(video):
        resp = await media_api.client.get(url)
        assert resp.status == 200, url

    preflight = await media_api.client.options(
        segment,
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "range" in preflight.headers["Access-Control-Allow-Headers"].lower()


async def test_watching_is_not_limited_like_api_calls(
    make_api: MakeApi, media: Media, db: asyncpg.Connection
) -> None:
    """5,000 media requests from one address: none refused, and the API's own budget for that
    address is untouched."""
    api = await make_api(
        rate_limits_enabled=True, inline_worker=True, transcode_concurrency=2, job_lease_seconds=5
    )
    user = await api.register()
    status, body = await upload(api, user["token"], media.video_480)
    assert status == 201, body
    video = await wait_for(api, body["id"], user["token"])
    urls = await _media_tree(api, video["hls_playlist"])
    assert len(urls) >= 5

    statuses: dict[int, int] = {}

    async def fetch_many(offset: int, count: int) -> None:
        for i in range(count):
            resp = await api.client.get(urls[(offset + i) % len(urls)])
            await resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1

    await asyncio.gather(*(fetch_many(n, 250) for n in range(20)))
    assert statuses == {200: 5000}
    policy = await api.client.get(urls[-1])
    assert policy.headers["RateLimit-Limit"] == "30000"
    assert int(policy.headers["RateLimit-Remaining"]) < 30000 - 4000  # refills 1 per 0.12 s
    anonymous_api_call = await api.client.get("/api/videos")
    assert anonymous_api_call.status == 200
    assert anonymous_api_call.headers["RateLimit-Limit"] == "1000"
    assert int(anonymous_api_call.headers["RateLimit-Remaining"]) >= 990


async def test_private_media_only_at_urls_signed_for_someone_who_may_see_it(
    media_api: Api, media: Media
) -> None:
    owner = await media_api.register("owner")
    other = await media_api.register("other")
    status, body = await upload(media_api, owner["token"], media.video_480, title="mine")
    assert status == 201, body
    video = await wait_for(media_api, body["id"], owner["token"])
    plain = await _media_tree(media_api, video["hls_playlist"]) + _extras(video)
    assert all("/signed/" not in url for url in plain)

    # Switching to private refuses the plain URLs at once.
    resp = await media_api.client.patch(
        f"/api/videos/{video['id']}",
        json={"visibility": "private"},
        headers=media_api.auth(owner["token"]),
    )
    assert resp.status == 200, await resp.text()
    for url in plain:
        for headers in ({}, media_api.auth(other["token"]), media_api.auth(owner["token"])):
            refused = await media_api.client.get(url, headers=headers)
            assert refused.status == 404, (url, refused.status)
    hidden = await media_api.client.get(
        f"/api/videos/{video['id']}", headers=media_api.auth(other["token"])
    )
    assert hidden.status == 404

    # The owner is given signed URLs, and the player reaches every file through them.
    resp = await media_api.client.get(
        f"/api/videos/{video['id']}", headers=media_api.auth(owner["token"])
    )
    mine = await resp.json()
    assert mine["hls_playlist"].startswith("/media/signed/")
    assert all(u.startswith("/media/signed/") for u in _extras(mine))
    assert all(q["playlist_path"].startswith("/media/signed/") for q in mine["qualities"]), mine[
        "qualities"
    ]
    signed = await _media_tree(media_api, mine["hls_playlist"]) + _extras(mine)
    assert len(signed) == len(plain)
    segment = next(u for u in signed if u.endswith(".ts"))
    resp = await media_api.client.get(segment)
    assert resp.status == 200
    assert resp.headers["Cache-Control"].startswith("private, max-age=")
    assert int(resp.headers["Cache-Control"].split("max-age=")[1].split(",")[0]) <= 4 * 3600 + 600

    # A token is good for its own video only, unaltered, and only until it expires.
    token = mine["hls_playlist"].split("/")[3]
    expires, viewer, signature = token.split(".")
    assert viewer == UUID(owner["id"]).hex
    assert int(expires) <= time.time() + 4 * 3600 + 600
    tampered = segment.replace(
        signature, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    )
    later = segment.replace(f"/{expires}.", f"/{int(expires) + 600}.")
    other_status, other_body = await upload(media_api, other["token"], media.video_480)
    assert other_status == 201
    elsewhere = segment.replace(video["id"], other_body["id"])
    for url in (tampered, later, elsewhere):
        resp = await media_api.client.get(url)
        assert resp.status == 403, (url, resp.status)
    ctx = media_api.client.app[SERVICES]
    key = segment.split("/", 4)[4]
    past = media_access.sign_key(ctx, key, None, now=time.time() - 5 * 3600)
    assert (await media_api.client.get(past)).status == 403
    assert (await media_api.client.get(media_access.sign_key(ctx, key, None))).status == 200


async def test_clip_media_is_signed_and_ends_with_the_clip(
    media_api: Api, media: Media, db: asyncpg.Connection
) -> None:
    owner = await media_api.register("storyteller")
    resp = await media_api.client.post(
        "/api/clips/upload",
        data=form("clip", media.video_480, caption="now"),
        headers=media_api.auth(owner["token"]),
    )
    assert resp.status == 201, await resp.text()
    clip = (await resp.json())["clip"]
    video = await wait_for(media_api, clip["video_id"], owner["token"])
    assert video["hls_playlist"].startswith("/media/signed/")
    # The clip ends in two seconds from now.
    await db.execute(
        "UPDATE clips SET expires_at = $2 WHERE id = $1",
        UUID(clip["id"]),
        datetime.now(UTC) + timedelta(seconds=2),
    )
    resp = await media_api.client.get(
        f"/api/clips/user/{owner['id']}", headers=media_api.auth(owner["token"])
    )
    listed = (await resp.json())["clips"]
    assert len(listed) == 1, listed
    file_url = listed[0]["file_url"]
    assert file_url.startswith("/media/signed/"), file_url
    urls = await _media_tree(media_api, file_url) + [listed[0]["thumbnail_url"]]
    plain = [re.sub(r"/media/signed/[^/]+/", "/media/", u) for u in urls]
    for url in plain:
        assert (await media_api.client.get(url)).status == 404, url
    deadline = datetime.fromisoformat(listed[0]["expires_at"])
    while datetime.now(UTC) < deadline + timedelta(seconds=1):
        await asyncio.sleep(0.2)
    for url in urls:
        resp = await media_api.client.get(url)
        assert resp.status == 403, (url, resp.status)


async def test_followers_hear_when_a_storys_picture_is_ready(media_api: Api, media: Media) -> None:
    author = await media_api.register("poster")
    fan = await media_api.register("fan")
    await media_api.client.post(
        f"/api/users/{author['id']}/follow", headers=media_api.auth(fan["token"])
    )
    sock = await Socket.open(media_api.client, headers=media_api.auth(fan["token"]))
    assert (await sock.subscribe("feed:clips"))["type"] == "subscribed"
    data = aiohttp.FormData()
    data.add_field("caption", "sunrise")
    data.add_field("clip", io.BytesIO(media.image.read_bytes()), filename="sunrise.png")
    resp = await media_api.client.post(
        "/api/clips/upload", data=data, headers=media_api.auth(author["token"])
    )
    assert resp.status == 201, await resp.text()
    added = await sock.expect("clip_feed")
    assert added["action"] == "added" and added["clip"]["status"] == "processing"
    updated = await sock.expect("clip_feed", timeout=30)
    assert updated["action"] == "updated", updated
    clip = updated["clip"]
    assert clip["id"] == added["clip"]["id"] and clip["status"] == "ready"
    assert clip["file_url"].startswith("/media/signed/") and clip["file_url"].endswith(".webp")
    picture = await media_api.client.get(clip["file_url"])
    assert picture.status == 200 and picture.content_type == "image/webp"


async def test_media_paths_that_are_not_outputs_are_refused_never_5xx(
    media_api: Api, media: Media
) -> None:
    owner = await media_api.register("careful")
    status, body = await upload(media_api, owner["token"], media.video_480)
    assert status == 201, body
    video = await wait_for(media_api, body["id"], owner["token"])
    base = f"/media/videos/{video['id']}"
    assert (await media_api.client.get(f"{base}/hls/master.m3u8")).status == 200
    token = media_access.sign_key(media_api.client.app[SERVICES], f"{base[7:]}/hls/x.ts", None)
    signed_base = token.rsplit("/videos/", 1)[0] + f"/videos/{video['id']}"
    for path in (
        f"{base}/original",
        f"{base}/original/",
        f"{base}/original/.",
        f"{base}/original%2F",
        f"{base}//original",
        f"{base}/hls/master.m3u8/",
        f"{base}/hls//master.m3u8",
        f"{base}/hls/{'x' * 300}.ts",
        f"/media/videos/{'y' * 600}",
        f"{signed_base}/original/",
        f"{signed_base}/original",
    ):
        resp = await media_api.client.get(path)
        assert resp.status == 404, (path, resp.status)
    sig = token.split("/")[3].rsplit(".", 1)[1]
    for token_text in ("%C3%A9.0.abc", f"%C2%B2%C2%B2.0.{sig}", f"1.0.{'%C3%A9' * 4}"):
        resp = await media_api.client.get(f"/media/signed/{token_text}{base[6:]}/hls/master.m3u8")
        assert resp.status in (403, 404), (token_text, resp.status)


async def test_a_storys_original_is_its_owners_only(media_api: Api, media: Media) -> None:
    owner = await media_api.register("teller")
    other = await media_api.register("nosy")
    resp = await media_api.client.post(
        "/api/clips/upload",
        data=form("clip", media.video_480, caption="mine"),
        headers=media_api.auth(owner["token"]),
    )
    assert resp.status == 201, await resp.text()
    video_id = (await resp.json())["clip"]["video_id"]
    stream = f"/api/videos/{video_id}/stream"
    assert (await media_api.client.get(stream, headers=media_api.auth(owner["token"]))).status in (
        200,
        206,
    )
    assert (await media_api.client.get(stream)).status == 404
    assert (
        await media_api.client.get(stream, headers=media_api.auth(other["token"]))
    ).status == 404
