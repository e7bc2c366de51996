"""Profiles and follows as API.md describes them, exact under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from reelwire.domain.schemas.users import (
    FollowersOut,
    FollowingOut,
    FollowOut,
    ProfileOut,
    UpdateMeOut,
)
from tests.conftest import Api

pytestmark = pytest.mark.usefixtures("reset")


async def test_profile_is_public_and_hides_email(api: Api) -> None:
    user = await api.register("uma", display_name="Uma")
    resp = await api.client.get(f"/api/users/{user['id']}")
    body = await resp.json()
    assert resp.status == 200
    ProfileOut.model_validate(body)
    assert body["user"]["display_name"] == "Uma"
    assert "email" not in body["user"]
    assert body["user"]["is_following"] is False
    for name in ("uma", "UMA", "@uma"):
        by_name = await api.client.get(f"/api/users/{name}")
        assert by_name.status == 200
        assert (await by_name.json())["user"]["id"] == user["id"]


@pytest.mark.parametrize(
    "user_id", ["b94bdbf0-6244-4587-a255-90db0a329df2", "not-a-user", "x" * 300]
)
async def test_unknown_profile_is_404(client: Any, user_id: str) -> None:
    resp = await client.get(f"/api/users/{user_id}")
    assert resp.status == 404
    assert (await resp.json())["error"] == {"code": "NOT_FOUND", "message": "User not found"}


async def test_patch_me_changes_profile_and_merges_settings(api: Api) -> None:
    user = await api.register("vic")
    headers = api.auth(user["token"])
    resp = await api.client.patch(
        "/api/users/me",
        json={
            "display_name": "Victor",
            "bio": "I make clips",
            "avatar_url": "https://cdn.example.com/v.png",
            "settings": {"notifications": {"email": False}},
        },
        headers=headers,
    )
    body = await resp.json()
    assert resp.status == 200, body
    UpdateMeOut.model_validate(body)
    assert body["user"]["display_name"] == "Victor"
    assert body["user"]["bio"] == "I make clips"
    assert body["user"]["avatar_url"] == "https://cdn.example.com/v.png"
    resp = await api.client.patch(
        "/api/users/me",
        json={"settings": {"notifications": {"push": True}, "privacy": {"show_followers": False}}},
        headers=headers,
    )
    settings = (await resp.json())["user"]["settings"]
    assert settings == {
        "notifications": {"email": False, "push": True},
        "privacy": {"show_followers": False},
    }
    me = await (await api.client.get("/api/auth/me", headers=headers)).json()
    assert me["user"]["display_name"] == "Victor"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bio": "x" * 501}, "bio"),
        ({"display_name": ""}, "display_name"),
        ({"avatar_url": "javascript:alert(1)"}, "avatar_url"),
        ({"follower_count": 1000}, "follower_count"),
        ({"role": "admin"}, "role"),
        ({"verified": True}, "verified"),
        ({"settings": {"privacy": {"profile_visibility": "everyone"}}}, "settings.privacy"),
        ({"settings": {"theme": "dark"}}, "settings.theme"),
    ],
)
async def test_patch_me_rejects_bad_and_server_owned_fields(
    api: Api, body: dict[str, Any], field: str
) -> None:
    user = await api.register("wes")
    resp = await api.client.patch("/api/users/me", json=body, headers=api.auth(user["token"]))
    data = await resp.json()
    assert resp.status == 400
    assert any(name.startswith(field) for name in data["error"]["field_errors"]), data


async def test_patch_me_needs_auth(client: Any) -> None:
    resp = await client.patch("/api/users/me", json={"bio": "hi"})
    assert resp.status == 401


async def test_follow_and_unfollow_are_idempotent(api: Api) -> None:
    fan, star = await api.register("fan"), await api.register("star")
    headers = api.auth(fan["token"])
    url = f"/api/users/{star['id']}/follow"
    for _ in range(2):
        resp = await api.client.post(url, headers=headers)
        body = await resp.json()
        assert resp.status == 200
        FollowOut.model_validate(body)
        assert body == {"success": True, "following": True, "follower_count": 1}
    profile = await (await api.client.get(f"/api/users/{star['id']}", headers=headers)).json()
    assert profile["user"]["is_following"] is True
    me = await (await api.client.get("/api/auth/me", headers=headers)).json()
    assert me["user"]["following_count"] == 1
    for _ in range(2):
        resp = await api.client.delete(url, headers=headers)
        assert await resp.json() == {"success": True, "following": False, "follower_count": 0}
    me = await (await api.client.get("/api/auth/me", headers=headers)).json()
    assert me["user"]["following_count"] == 0


async def test_self_follow_is_400_and_unknown_user_is_404(api: Api) -> None:
    user = await api.register("solo")
    headers = api.auth(user["token"])
    resp = await api.client.post(f"/api/users/{user['id']}/follow", headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["message"] == "You cannot follow yourself"
    for method in ("post", "delete"):
        resp = await getattr(api.client, method)(
            f"/api/users/{uuid.uuid4()}/follow", headers=headers
        )
        assert resp.status == 404


async def test_follow_needs_auth(api: Api) -> None:
    star = await api.register("lonely")
    resp = await api.client.post(f"/api/users/{star['id']}/follow")
    assert resp.status == 401


async def test_followers_and_following_lists_with_pages(api: Api) -> None:
    star = await api.register("celebrity")
    fans = [await api.register(f"fan{i}") for i in range(5)]
    for fan in fans:
        await api.client.post(f"/api/users/{star['id']}/follow", headers=api.auth(fan["token"]))
    resp = await api.client.get(f"/api/users/{star['id']}/followers?limit=2&page=1")
    body = await resp.json()
    FollowersOut.model_validate(body)
    assert [f["username"] for f in body["followers"]] == ["fan4", "fan3"]
    assert body["pagination"] == {
        "current_page": 1,
        "total_pages": 3,
        "total_items": 5,
        "has_next": True,
        "has_prev": False,
    }
    page3 = await (await api.client.get(f"/api/users/{star['id']}/followers?limit=2&page=3")).json()
    assert [f["username"] for f in page3["followers"]] == ["fan0"]
    assert page3["pagination"]["has_next"] is False and page3["pagination"]["has_prev"] is True
    entry = page3["followers"][0]
    assert set(entry) >= {"id", "username", "display_name", "avatar_url", "follower_count"}
    assert entry["followed_at"]
    following = await (await api.client.get(f"/api/users/{fans[0]['id']}/following")).json()
    FollowingOut.model_validate(following)
    assert [f["username"] for f in following["following"]] == ["celebrity"]


async def test_cursor_paging_neither_repeats_nor_skips_while_rows_arrive(api: Api) -> None:
    star = await api.register("idol")
    fans = [await api.register(f"early{i}") for i in range(7)]
    for fan in fans:
        await api.client.post(f"/api/users/{star['id']}/follow", headers=api.auth(fan["token"]))
    seen: list[str] = []
    url = f"/api/users/{star['id']}/followers?limit=3"
    page = await (await api.client.get(url)).json()
    seen += [f["username"] for f in page["followers"]]
    # New followers arrive between pages: they are newer than the cursor, so they do not shift
    # the remaining pages (OFFSET paging would repeat rows here).
    for i in range(2):
        late = await api.register(f"late{i}")
        await api.client.post(f"/api/users/{star['id']}/follow", headers=api.auth(late["token"]))
    while page["next_cursor"]:
        page = await (await api.client.get(f"{url}&cursor={page['next_cursor']}")).json()
        assert page["pagination"]["current_page"] is None
        seen += [f["username"] for f in page["followers"]]
    assert seen == [f"early{i}" for i in reversed(range(7))]


async def test_bad_cursor_and_bad_limit_are_400(api: Api) -> None:
    star = await api.register("bad_cursor")
    resp = await api.client.get(f"/api/users/{star['id']}/followers?cursor=garbage!!")
    assert resp.status == 400
    assert "cursor" in (await resp.json())["error"]["field_errors"]
    resp = await api.client.get(f"/api/users/{star['id']}/followers?limit=51")
    assert resp.status == 400
    assert "limit" in (await resp.json())["error"]["field_errors"]
    resp = await api.client.get(f"/api/users/{star['id']}/followers?page=0")
    assert resp.status == 400


async def test_hidden_followers_list_is_403_for_others_only(api: Api) -> None:
    owner, other = await api.register("private_p"), await api.register("nosy")
    await api.client.patch(
        "/api/users/me",
        json={"settings": {"privacy": {"show_followers": False}}},
        headers=api.auth(owner["token"]),
    )
    url = f"/api/users/{owner['id']}/followers"
    assert (await api.client.get(url)).status == 403
    assert (await api.client.get(url, headers=api.auth(other["token"]))).status == 403
    assert (await api.client.get(url, headers=api.auth(owner["token"]))).status == 200
    assert (await api.client.get(f"/api/users/{owner['id']}/following")).status == 200


async def test_fifty_users_following_at_once_counts_fifty(api: Api, db: Any) -> None:
    star = await api.register("popular")
    fans = await asyncio.gather(*(api.register(f"crowd{i}") for i in range(50)))
    url = f"/api/users/{star['id']}/follow"
    responses = await asyncio.gather(
        *(api.client.post(url, headers=api.auth(fan["token"])) for fan in fans)
    )
    assert [r.status for r in responses] == [200] * 50
    profile = await (await api.client.get(f"/api/users/{star['id']}")).json()
    assert profile["user"]["follower_count"] == 50
    assert (
        await db.fetchval(
            "SELECT count(*) FROM follows WHERE following_id = $1", uuid.UUID(star["id"])
        )
        == 50
    )


async def test_one_user_following_twenty_times_at_once_counts_one(api: Api) -> None:
    star, fan = await api.register("target"), await api.register("eager")
    url = f"/api/users/{star['id']}/follow"
    responses = await asyncio.gather(
        *(api.client.post(url, headers=api.auth(fan["token"])) for _ in range(20))
    )
    bodies = [await r.json() for r in responses]
    assert all(b["following"] for b in bodies)
    assert {b["follower_count"] for b in bodies} == {1}
    me = await (await api.client.get("/api/auth/me", headers=api.auth(fan["token"]))).json()
    assert me["user"]["following_count"] == 1
    profile = await (await api.client.get(f"/api/users/{star['id']}")).json()
    assert profile["user"]["follower_count"] == 1


async def test_mutual_follows_at_once_do_not_deadlock(api: Api) -> None:
    a, b = await api.register("mutual_a"), await api.register("mutual_b")
    for _ in range(10):
        await asyncio.gather(
            api.client.post(f"/api/users/{b['id']}/follow", headers=api.auth(a["token"])),
            api.client.post(f"/api/users/{a['id']}/follow", headers=api.auth(b["token"])),
        )
        results = await asyncio.gather(
            api.client.delete(f"/api/users/{b['id']}/follow", headers=api.auth(a["token"])),
            api.client.delete(f"/api/users/{a['id']}/follow", headers=api.auth(b["token"])),
        )
        assert [r.status for r in results] == [200, 200]
    for user in (a, b):
        profile = await (await api.client.get(f"/api/users/{user['id']}")).json()
        assert profile["user"]["follower_count"] == 0
        assert profile["user"]["following_count"] == 0


async def test_an_avatar_url_must_read_back_as_a_url(api: Api) -> None:
    user = await api.register("pictured")
    for bad in ("http://[", "https://[::1", "http://host:99999/x", "http:///path"):
        resp = await api.client.patch(
            "/api/users/me", json={"avatar_url": bad}, headers=api.auth(user["token"])
        )
        assert resp.status == 400, (bad, await resp.text())
    good = await api.client.patch(
        "/api/users/me",
        json={"avatar_url": "https://cdn.example.com/a.png"},
        headers=api.auth(user["token"]),
    )
    assert good.status == 200
