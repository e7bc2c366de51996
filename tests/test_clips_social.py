"""Clips after upload (the Stories API and beyond): lists, expiry everywhere, views, reactions."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import asyncpg

from reelwire.domain.schemas.clips import ClipReactionsOut, ClipsOut, ClipViewersOut, UserClipsOut
from tests.conftest import Api, Catalog, MakeApi


async def test_user_and_followed_clips(api: Api, catalog: Catalog) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    first = await catalog.clip(alice["id"])
    second = await catalog.clip(alice["id"])
    await catalog.clip(carol["id"])
    await api.client.post(f"/api/users/{alice['id']}/follow", headers=api.auth(bob["token"]))

    resp = await api.client.get(f"/api/clips/user/{alice['id']}", headers=api.auth(bob["token"]))
    body = await resp.json()
    assert resp.status == 200, body
    UserClipsOut.model_validate(body)
    assert body["user_id"] == alice["id"] and body["count"] == 2
    assert [c["clip_id"] for c in body["clips"]] == [second, first]

    feed = await (await api.client.get("/api/clips/all", headers=api.auth(bob["token"]))).json()
    ClipsOut.model_validate(feed)
    assert feed["count"] == 2 and {c["uploaded_by"] for c in feed["clips"]} == {"alice"}
    assert (await api.client.get("/api/clips/all")).status == 401


async def test_expired_clip_is_gone_from_every_route(api: Api, catalog: Catalog) -> None:
    alice = await api.register()
    bob = await api.register()
    await api.client.post(f"/api/users/{alice['id']}/follow", headers=api.auth(bob["token"]))
    clip = await catalog.clip(alice["id"], expires_in=timedelta(seconds=1))
    mine, theirs = api.auth(alice["token"]), api.auth(bob["token"])
    listed = await (await api.client.get(f"/api/clips/user/{alice['id']}", headers=theirs)).json()
    assert listed["count"] == 1

    await asyncio.sleep(1.1)  # one second past expires_at; no sweep has run
    listed = await (await api.client.get(f"/api/clips/user/{alice['id']}", headers=theirs)).json()
    assert listed["count"] == 0
    feed = await (await api.client.get("/api/clips/all", headers=theirs)).json()
    assert feed["count"] == 0
    for method, path, headers, body in (
        ("POST", f"/api/clips/{clip}/view", theirs, None),
        ("POST", f"/api/clips/{clip}/reactions", theirs, {"emoji": "🔥"}),
        ("GET", f"/api/clips/{clip}/viewers", mine, None),
        ("DELETE", f"/api/clips/{clip}", mine, None),
    ):
        resp = await api.client.request(method, path, headers=headers, json=body)
        assert resp.status == 404, (method, path)
        assert (await resp.json())["error"]["message"] == "Clip not found or unauthorized"


async def test_views_once_per_viewer_and_viewers_for_the_owner_only(
    api: Api, catalog: Catalog
) -> None:
    alice = await api.register()
    viewers = [await api.register() for _ in range(3)]
    clip = await catalog.clip(alice["id"])

    async def view(token: str) -> dict[str, object]:
        resp = await api.client.post(f"/api/clips/{clip}/view", headers=api.auth(token))
        assert resp.status == 200
        return dict(await resp.json())

    answers = await asyncio.gather(*(view(viewers[0]["token"]) for _ in range(10)))
    assert sum(1 for a in answers if a["counted"]) == 1
    for viewer in viewers[1:]:
        await view(viewer["token"])
    own = await view(alice["token"])
    assert own == {"success": True, "counted": False, "view_count": 3}

    denied = await api.client.get(
        f"/api/clips/{clip}/viewers", headers=api.auth(viewers[0]["token"])
    )
    assert denied.status == 403
    resp = await api.client.get(f"/api/clips/{clip}/viewers", headers=api.auth(alice["token"]))
    body = await resp.json()
    ClipViewersOut.model_validate(body)
    assert body["view_count"] == 3
    assert {v["id"] for v in body["viewers"]} == {v["id"] for v in viewers}


async def test_emoji_reactions(api: Api, catalog: Catalog) -> None:
    alice = await api.register()
    bob = await api.register()
    clip = await catalog.clip(alice["id"])
    url, headers = f"/api/clips/{clip}/reactions", api.auth(bob["token"])
    for emoji in ("🔥", "🔥", "😂", "❤️"):
        resp = await api.client.post(url, json={"emoji": emoji}, headers=headers)
        assert resp.status == 200, await resp.text()
    body = await resp.json()
    ClipReactionsOut.model_validate(body)
    assert body["reactions"] == {"🔥": 1, "😂": 1, "❤️": 1}
    for bad in ("lol", "", "🔥" * 17, "<b>"):
        resp = await api.client.post(url, json={"emoji": bad}, headers=headers)
        assert resp.status == 400, bad


async def test_cleanup_needs_an_admin_or_the_api_key(
    make_api: MakeApi, catalog: Catalog, db: asyncpg.Connection
) -> None:
    api = await make_api(cleanup_api_key="k" * 32)
    admin = await api.admin(db)
    alice = await api.register()
    await catalog.clip(alice["id"], expires_in=timedelta(seconds=-1))
    await catalog.clip(alice["id"], expires_in=timedelta(seconds=-5))
    live = await catalog.clip(alice["id"])
    url = "/api/clips/cleanup/expired"
    assert (await api.client.post(url)).status == 401
    assert (await api.client.post(url, headers=api.auth(alice["token"]))).status == 403
    assert (await api.client.post(url, headers={"X-API-Key": "wrong"})).status == 403
    resp = await api.client.post(url, headers={"X-API-Key": "k" * 32})
    assert await resp.json() == {"message": "Cleanup completed", "deleted_count": 2}
    await catalog.clip(alice["id"], expires_in=timedelta(seconds=-1))
    resp = await api.client.post(url, headers=api.auth(admin["token"]))
    assert await resp.json() == {"message": "Cleanup completed", "deleted_count": 1}
    assert [str(r["id"]) for r in await db.fetch("SELECT id FROM clips")] == [live]


async def test_followed_feed_cache_follows_every_change(api: Api, catalog: Catalog) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    headers = api.auth(bob["token"])

    async def feed() -> list[str]:
        body = await (await api.client.get("/api/clips/all", headers=headers)).json()
        return [c["uploaded_by"] for c in body["clips"]]

    await catalog.clip(alice["id"])
    await catalog.clip(carol["id"])
    assert await feed() == []  # cached empty
    await api.client.post(f"/api/users/{alice['id']}/follow", headers=headers)
    assert await feed() == ["alice"]  # the follow fenced the cache
    form = aiohttp.FormData(
        {"caption": "x", "video_id": await catalog.video(alice["id"])}, default_to_multipart=True
    )
    resp = await api.client.post("/api/clips/upload", data=form, headers=api.auth(alice["token"]))
    assert resp.status == 201, await resp.text()
    assert await feed() == ["alice", "alice"]  # alice's new clip fenced her followers' feeds
    await api.client.delete(f"/api/users/{alice['id']}/follow", headers=headers)
    assert await feed() == []


async def test_the_stories_apis_error_messages(api: Api, catalog: Catalog) -> None:
    """Where the Stories API documents a message, that is the message (codes stay ours)."""
    user = await api.register("storyteller")
    form = aiohttp.FormData(
        {"caption": "x" * 501, "video_id": await catalog.video(user["id"])},
        default_to_multipart=True,
    )
    resp = await api.client.post("/api/clips/upload", data=form, headers=api.auth(user["token"]))
    error = (await resp.json())["error"]
    assert (resp.status, error["code"]) == (400, "VALIDATION_ERROR")
    assert error["message"] == "Caption cannot exceed 500 characters"
    assert "caption" in error["field_errors"]
    for method, path in (("GET", "/api/clips/all"), ("POST", "/api/clips/upload")):
        resp = await api.client.request(method, path)
        assert resp.status == 401
        assert (await resp.json())["error"]["message"] == "Unauthorized"
