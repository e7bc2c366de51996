"""Clips after upload (the Stories API and beyond): lists, expiry everywhere, views, reactions."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import pytest

from realtime.schemas import ClipViewedMessage
from reelwire.domain.schemas.clips import ClipReactionsOut, ClipsOut, ClipViewersOut, UserClipsOut
from tests.conftest import Api, Catalog, MakeApi
from tests.wsclient import Socket


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


async def test_the_owner_sees_each_new_viewer_live(api: Api, catalog: Catalog) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    dave = await api.register("dave")
    clip = await catalog.clip(alice["id"])
    owner = await Socket.open(api.client, headers=api.auth(alice["token"]))
    assert (await owner.subscribe(f"user:{alice['id']}"))["type"] == "subscribed"

    async def view(user: dict[str, Any]) -> None:
        resp = await api.client.post(f"/api/clips/{clip}/view", headers=api.auth(user["token"]))
        assert resp.status == 200, await resp.text()

    seen = []
    for count, viewer in enumerate((bob, carol), start=1):
        await view(viewer)
        event = ClipViewedMessage.model_validate(await owner.expect("clip_viewed"))
        assert (event.clip_id, event.viewer.id, event.view_count) == (clip, viewer["id"], count)
        assert event.viewer.username == viewer["user"]["username"]
        seen.append(event)

    # The event is the viewer list's row: the same card, the same time.
    resp = await api.client.get(f"/api/clips/{clip}/viewers", headers=api.auth(alice["token"]))
    rows = (await resp.json())["viewers"]
    assert rows == [{**e.viewer.model_dump(), "viewed_at": e.viewed_at} for e in reversed(seen)]

    # A repeat view and the owner's own view are not counted and send nothing...
    await view(bob)
    await view(alice)
    with pytest.raises(TimeoutError):
        await owner.receive(timeout=0.3)
    # ...and the next counted view is the very next event on the channel (no offset between).
    await view(dave)
    event = ClipViewedMessage.model_validate(await owner.receive())
    assert (event.viewer.id, event.view_count) == (dave["id"], 3)
    assert event.offset == seen[-1].offset + 1
    await owner.close()


async def test_viewers_page_newest_first_by_cursor_while_views_arrive(
    api: Api, catalog: Catalog, db: asyncpg.Connection
) -> None:
    alice = await api.register()
    clip = await catalog.clip(alice["id"])
    viewers = [await api.register() for _ in range(25)]
    for viewer in viewers:
        resp = await api.client.post(f"/api/clips/{clip}/view", headers=api.auth(viewer["token"]))
        assert (await resp.json())["counted"]
    # Ties on viewed_at across a page boundary: the viewer's id orders them.
    await db.execute(
        "UPDATE clip_views SET viewed_at = now() - interval '1 hour' "
        "WHERE clip_id = $1 AND viewer_id = ANY($2::uuid[])",
        UUID(clip),
        [UUID(v["id"]) for v in viewers[12:18]],
    )
    stored = await db.fetch(
        "SELECT viewer_id, viewed_at FROM clip_views WHERE clip_id = $1", UUID(clip)
    )
    newest_first = [
        str(r["viewer_id"])
        for r in sorted(stored, key=lambda r: (r["viewed_at"], r["viewer_id"]), reverse=True)
    ]
    headers = api.auth(alice["token"])
    url = f"/api/clips/{clip}/viewers?limit=10"

    page = await (await api.client.get(url, headers=headers)).json()
    ClipViewersOut.model_validate(page)
    assert page["view_count"] == 25 and page["pagination"]["total_items"] == 25
    got = [v["id"] for v in page["viewers"]]
    # A view arriving mid-paging is newer than the cursor: it neither repeats nor shifts a row.
    late = await api.register()
    await api.client.post(f"/api/clips/{clip}/view", headers=api.auth(late["token"]))
    sizes = [len(got)]
    while page["next_cursor"]:
        resp = await api.client.get(f"{url}&cursor={page['next_cursor']}", headers=headers)
        page = await resp.json()
        assert resp.status == 200, page
        assert page["pagination"]["current_page"] is None
        got += [v["id"] for v in page["viewers"]]
        sizes.append(len(page["viewers"]))
    assert got == newest_first and sizes == [10, 10, 5]

    first = await (await api.client.get(url, headers=headers)).json()
    assert first["view_count"] == 26 and first["viewers"][0]["id"] == late["id"]
    numbered = await (await api.client.get(f"{url}&page=3", headers=headers)).json()
    assert [v["id"] for v in numbered["viewers"]] == newest_first[19:]  # the late view shifts it
    for query, field in (("cursor=garbage!!", "cursor"), ("limit=51", "limit")):
        resp = await api.client.get(f"/api/clips/{clip}/viewers?{query}", headers=headers)
        assert resp.status == 400
        assert field in (await resp.json())["error"]["field_errors"]
