"""Video lists, edits, likes and views over REST, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from reelwire.appkeys import SERVICES
from reelwire.domain import videos
from reelwire.domain.schemas.videos import ReactionOut, VideoListOut, VideoWithReactionOut
from tests.conftest import Api, Catalog, MakeApi


async def test_list_shows_only_public_ready_videos_newest_first(api: Api, catalog: Catalog) -> None:
    owner = await api.register()
    now = datetime.now(UTC)
    old = await catalog.video(owner["id"], published_at=now - timedelta(hours=2))
    new = await catalog.video(owner["id"], published_at=now - timedelta(hours=1))
    await catalog.video(owner["id"], visibility="private")
    await catalog.video(owner["id"], visibility="unlisted")
    await catalog.video(owner["id"], status="processing", published_at=None)

    resp = await api.client.get("/api/videos")
    body = await resp.json()
    assert resp.status == 200, body
    VideoListOut.model_validate(body)
    assert [v["id"] for v in body["videos"]] == [new, old]
    assert body["pagination"] == {
        "current_page": 1,
        "total_pages": 1,
        "total_items": 2,
        "has_next": False,
        "has_prev": False,
    }


async def test_filters_by_category_tags_and_words(api: Api, catalog: Catalog) -> None:
    owner = await api.register()
    cooking = await catalog.video(
        owner["id"], title="Perfect pasta at home", category="Food", tags=["pasta", "italian"]
    )
    await catalog.video(owner["id"], title="Skate park", category="Sports", tags=["skate"])
    await catalog.video(owner["id"], title="Pizza night", category="Food", tags=["pizza"])

    async def ids(query: str) -> list[str]:
        resp = await api.client.get(f"/api/videos?{query}")
        assert resp.status == 200, await resp.text()
        return [v["id"] for v in (await resp.json())["videos"]]

    assert len(await ids("category=food")) == 2
    assert await ids("tags=Pasta,italian") == [cooking]
    assert await ids("tags=pasta,skate") == []
    assert await ids("q=pasta") == [cooking]
    resp = await api.client.get("/api/videos?sort=oldest")
    assert resp.status == 400
    assert "sort" in (await resp.json())["error"]["field_errors"]


async def test_a_profile_lists_one_authors_public_videos(api: Api, catalog: Catalog) -> None:
    ann, bob = await api.register(), await api.register()
    first = await catalog.video(ann["id"], title="first")
    await catalog.video(ann["id"], title="hidden", visibility="private")
    await catalog.video(bob["id"], title="bob's")
    second = await catalog.video(ann["id"], title="second")
    for sort in ("latest", "trending"):
        resp = await api.client.get(f"/api/videos?author={ann['id']}&sort={sort}")
        body = await resp.json()
        assert resp.status == 200, body
        assert sorted(v["id"] for v in body["videos"]) == sorted([first, second])
        assert all(v["author"]["id"] == ann["id"] for v in body["videos"])
    resp = await api.client.get("/api/videos?author=not-a-user")
    assert resp.status == 400
    assert "author" in (await resp.json())["error"]["field_errors"]


async def test_popular_and_trending_orders(api: Api, catalog: Catalog) -> None:
    owner = await api.register()
    now = datetime.now(UTC)
    many_old = await catalog.video(
        owner["id"], view_count=5000, like_count=10, published_at=now - timedelta(days=3)
    )
    few_new = await catalog.video(
        owner["id"], view_count=300, like_count=80, published_at=now - timedelta(minutes=30)
    )
    quiet = await catalog.video(owner["id"], view_count=1, published_at=now - timedelta(hours=5))

    popular = await (await api.client.get("/api/videos?sort=popular")).json()
    assert [v["id"] for v in popular["videos"]] == [many_old, few_new, quiet]
    trending = await (await api.client.get("/api/videos?sort=trending&limit=2")).json()
    assert [v["id"] for v in trending["videos"]] == [few_new, many_old]
    rest = await (
        await api.client.get(f"/api/videos?sort=trending&cursor={trending['next_cursor']}")
    ).json()
    assert [v["id"] for v in rest["videos"]] == [quiet]
    assert rest["next_cursor"] is None


async def test_cursor_paging_neither_repeats_nor_skips_while_rows_arrive(
    api: Api, catalog: Catalog
) -> None:
    owner = await api.register()
    start = datetime.now(UTC) - timedelta(days=1)
    existing = [
        await catalog.video(owner["id"], published_at=start + timedelta(minutes=i))
        for i in range(25)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/videos?limit=4" + (f"&cursor={cursor}" if cursor else "")
        body = await (await api.client.get(url)).json()
        seen += [v["id"] for v in body["videos"]]
        # newer videos keep arriving while the client pages through older ones
        await catalog.video(owner["id"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(existing))


async def test_get_includes_own_reaction_and_private_is_hidden(api: Api, catalog: Catalog) -> None:
    owner = await api.register()
    other = await api.register()
    public = await catalog.video(owner["id"])
    private = await catalog.video(owner["id"], visibility="private")

    like = await api.client.post(
        f"/api/videos/{public}/like", json={"action": "like"}, headers=api.auth(other["token"])
    )
    assert like.status == 200, await like.text()
    mine = await (
        await api.client.get(f"/api/videos/{public}", headers=api.auth(other["token"]))
    ).json()
    VideoWithReactionOut.model_validate(mine)
    assert mine["user_reaction"] == "liked" and mine["like_count"] == 1
    anonymous = await (await api.client.get(f"/api/videos/{public}")).json()
    assert anonymous["user_reaction"] == "none" and anonymous["like_count"] == 1

    assert (await api.client.get(f"/api/videos/{private}")).status == 404
    hidden = await api.client.get(f"/api/videos/{private}", headers=api.auth(other["token"]))
    assert hidden.status == 404
    shown = await api.client.get(f"/api/videos/{private}", headers=api.auth(owner["token"]))
    assert shown.status == 200


async def test_owner_edits_and_the_cache_shows_the_edit(api: Api, catalog: Catalog) -> None:
    owner = await api.register()
    other = await api.register()
    video = await catalog.video(owner["id"], title="before")
    assert (await (await api.client.get(f"/api/videos/{video}")).json())["title"] == "before"

    denied = await api.client.patch(
        f"/api/videos/{video}", json={"title": "mine now"}, headers=api.auth(other["token"])
    )
    assert denied.status == 403
    resp = await api.client.patch(
        f"/api/videos/{video}",
        json={"title": "after", "tags": ["Cats", "cats", "fun"], "visibility": "unlisted"},
        headers=api.auth(owner["token"]),
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert body["title"] == "after" and body["tags"] == ["cats", "fun"]
    again = await (await api.client.get(f"/api/videos/{video}")).json()
    assert again["title"] == "after" and again["visibility"] == "unlisted"
    listed = await (await api.client.get("/api/videos")).json()
    assert listed["videos"] == []  # unlisted: reachable by id, not in lists

    bad = await api.client.patch(
        f"/api/videos/{video}", json={"view_count": 10**6}, headers=api.auth(owner["token"])
    )
    assert bad.status == 400
    assert "view_count" in (await bad.json())["error"]["field_errors"]


async def test_like_dislike_remove_follow_clutch(api: Api, catalog: Catalog) -> None:
    owner = await api.register()
    fan = await api.register()
    video = await catalog.video(owner["id"])
    url, headers = f"/api/videos/{video}/like", api.auth(fan["token"])

    async def act(action: str) -> dict[str, Any]:
        resp = await api.client.post(url, json={"action": action}, headers=headers)
        body = await resp.json()
        assert resp.status == 200, body
        ReactionOut.model_validate(body)
        return body

    assert await act("like") == {
        "success": True,
        "user_action": "liked",
        "like_count": 1,
        "dislike_count": 0,
    }
    assert (await act("like"))["like_count"] == 1
    assert await act("dislike") == {
        "success": True,
        "user_action": "disliked",
        "like_count": 0,
        "dislike_count": 1,
    }
    assert await act("remove") == {
        "success": True,
        "user_action": "none",
        "like_count": 0,
        "dislike_count": 0,
    }
    assert (await api.client.post(url, json={"action": "love"}, headers=headers)).status == 400
    assert (await api.client.post(url, json={"action": "like"})).status == 401


async def test_hundred_users_liking_at_once_give_a_hundred(
    api: Api, catalog: Catalog, db: asyncpg.Connection
) -> None:
    owner = await api.register()
    video = await catalog.video(owner["id"])
    fans = [await api.register() for _ in range(100)]

    async def like(token: str) -> int:
        resp = await api.client.post(
            f"/api/videos/{video}/like", json={"action": "like"}, headers=api.auth(token)
        )
        return resp.status

    statuses = await asyncio.gather(*(like(f["token"]) for f in fans))
    assert set(statuses) == {200}
    assert await db.fetchval("SELECT like_count FROM videos WHERE id = $1", video) == 100
    assert (
        await db.fetchval("SELECT count(*) FROM video_reactions WHERE video_id = $1", video) == 100
    )
    body = await (await api.client.get(f"/api/videos/{video}")).json()
    assert body["like_count"] == 100


async def test_one_user_liking_fifty_times_at_once_gives_one(
    api: Api, catalog: Catalog, db: asyncpg.Connection
) -> None:
    owner = await api.register()
    fan = await api.register()
    video = await catalog.video(owner["id"])
    headers = api.auth(fan["token"])

    async def like() -> dict[str, Any]:
        resp = await api.client.post(
            f"/api/videos/{video}/like", json={"action": "like"}, headers=headers
        )
        assert resp.status == 200
        return dict(await resp.json())

    answers = await asyncio.gather(*(like() for _ in range(50)))
    assert {a["like_count"] for a in answers} == {1}
    assert await db.fetchval("SELECT like_count FROM videos WHERE id = $1", video) == 1


async def test_two_hundred_views_counted_live_and_flushed(
    api: Api, catalog: Catalog, db: asyncpg.Connection
) -> None:
    owner = await api.register()
    video = await catalog.video(owner["id"], view_count=7)

    async def view() -> int:
        resp = await api.client.post(
            f"/api/videos/{video}/view", json={"watch_time_seconds": 3, "quality": "720p"}
        )
        body = await resp.json()
        assert resp.status == 200, body
        return int(body["new_view_count"])

    counts = await asyncio.gather(*(view() for _ in range(200)))
    assert sorted(counts) == list(range(8, 208))  # every answer a distinct live count
    listed = await (await api.client.get("/api/videos")).json()
    assert listed["videos"][0]["view_count"] == 207  # includes what is not flushed yet

    await videos.flush_views(_services(api))
    row = await db.fetchrow(
        "SELECT view_count, watch_time_seconds FROM videos WHERE id = $1", video
    )
    assert (row["view_count"], row["watch_time_seconds"]) == (207, 600)
    # a second flush has nothing left to add
    await videos.flush_views(_services(api))
    assert await db.fetchval("SELECT view_count FROM videos WHERE id = $1", video) == 207
    again = await (await api.client.post(f"/api/videos/{video}/view")).json()
    assert again["new_view_count"] == 208


def _services(api: Api) -> Any:
    return api.client.app[SERVICES]


async def test_clean_shutdown_flushes_pending_views(
    make_api: MakeApi, catalog: Catalog, db: asyncpg.Connection
) -> None:
    api = await make_api(view_flush_ms=600_000)  # no periodic flush during the test
    owner = await api.register()
    video = await catalog.video(owner["id"])
    for _ in range(5):
        await api.client.post(f"/api/videos/{video}/view", json={"watch_time_seconds": 2})
    assert await db.fetchval("SELECT view_count FROM videos WHERE id = $1", video) == 0
    await api.client.close()  # runs the app's cleanup: the flusher writes what is pending
    row = await db.fetchrow(
        "SELECT view_count, watch_time_seconds FROM videos WHERE id = $1", video
    )
    assert (row["view_count"], row["watch_time_seconds"]) == (5, 10)


async def test_following_feed_and_creator_figures(api: Api, catalog: Catalog) -> None:
    creator = await api.register()
    other = await api.register()
    fan = await api.register()
    first = await catalog.video(creator["id"], view_count=40, like_count=3)
    second = await catalog.video(creator["id"], view_count=2, like_count=1)
    await catalog.video(creator["id"], visibility="private", view_count=5)
    await catalog.video(other["id"])
    await api.client.post(f"/api/users/{creator['id']}/follow", headers=api.auth(fan["token"]))

    resp = await api.client.get("/api/users/me/following/videos", headers=api.auth(fan["token"]))
    feed = await resp.json()
    assert resp.status == 200, feed
    VideoListOut.model_validate(feed)
    assert [v["id"] for v in feed["videos"]] == [second, first]
    assert feed["pagination"]["total_items"] == 2

    me = await (await api.client.get("/api/auth/me", headers=api.auth(creator["token"]))).json()
    assert me["profile"] == {"total_views": 47, "total_videos": 3, "total_likes_received": 4}


async def test_cached_profile_follows_a_follow_at_once(api: Api) -> None:
    star = await api.register()
    fans = [await api.register() for _ in range(3)]
    for n, fan in enumerate(fans, start=1):
        await api.client.post(f"/api/users/{star['id']}/follow", headers=api.auth(fan["token"]))
        profile = await (await api.client.get(f"/api/users/{star['id']}")).json()
        assert profile["user"]["follower_count"] == n
    await api.client.patch(
        "/api/users/me", json={"bio": "new bio"}, headers=api.auth(star["token"])
    )
    profile = await (await api.client.get(f"/api/users/{star['id']}")).json()
    assert profile["user"]["bio"] == "new bio"
