"""Comments and replies (the CLUTCH API) against real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from reelwire.domain.schemas.comments import CommentOut, CommentsOut, RepliesOut
from tests.conftest import Api, Catalog


async def _comment(api: Api, token: str, video: str, content: str, **extra: Any) -> dict[str, Any]:
    resp = await api.client.post(
        f"/api/videos/{video}/comments",
        json={"content": content, **extra},
        headers=api.auth(token),
    )
    body = await resp.json()
    assert resp.status == 201, body
    return dict(body)


async def test_comment_reply_and_counts(api: Api, catalog: Catalog, db: asyncpg.Connection) -> None:
    owner = await api.register()
    fan = await api.register(display_name="The Fan")
    video = await catalog.video(owner["id"])

    top = await _comment(api, fan["token"], video, "  first!  ")
    CommentOut.model_validate(top)
    assert top["content"] == "first!" and top["parent_comment_id"] is None
    assert top["author"]["display_name"] == "The Fan"
    assert top["user_interaction"] == {"liked": False, "disliked": False}
    reply = await _comment(api, owner["token"], video, "thanks", parent_comment_id=top["id"])
    # a reply to a reply joins the top-level thread
    nested = await _comment(api, fan["token"], video, "np", parent_comment_id=reply["id"])
    assert reply["parent_comment_id"] == nested["parent_comment_id"] == top["id"]

    listing = await (await api.client.get(f"/api/videos/{video}/comments")).json()
    CommentsOut.model_validate(listing)
    assert [c["id"] for c in listing["comments"]] == [top["id"]]
    assert listing["comments"][0]["reply_count"] == 2
    replies = await (await api.client.get(f"/api/comments/{top['id']}/replies")).json()
    RepliesOut.model_validate(replies)
    assert [r["id"] for r in replies["replies"]] == [reply["id"], nested["id"]]
    video_body = await (await api.client.get(f"/api/videos/{video}")).json()
    assert video_body["comment_count"] == 3

    for bad in ({"content": ""}, {"content": "   "}, {"content": "x" * 1001}, {"text": "hi"}):
        resp = await api.client.post(
            f"/api/videos/{video}/comments", json=bad, headers=api.auth(fan["token"])
        )
        assert resp.status == 400, bad
    elsewhere = await catalog.video(owner["id"])
    wrong_parent = await api.client.post(
        f"/api/videos/{elsewhere}/comments",
        json={"content": "hi", "parent_comment_id": top["id"]},
        headers=api.auth(fan["token"]),
    )
    assert wrong_parent.status == 400
    assert await db.fetchval("SELECT comment_count FROM videos WHERE id = $1", video) == 3


async def test_sorts_and_user_interaction(api: Api, catalog: Catalog) -> None:
    owner = await api.register()
    fans = [await api.register() for _ in range(3)]
    video = await catalog.video(owner["id"])
    a = await _comment(api, fans[0]["token"], video, "a")
    b = await _comment(api, fans[1]["token"], video, "b")
    c = await _comment(api, fans[2]["token"], video, "c")
    for fan in fans:
        await api.client.post(
            f"/api/comments/{b['id']}/like", json={"action": "like"}, headers=api.auth(fan["token"])
        )
    disliked = await api.client.post(
        f"/api/comments/{a['id']}/like",
        json={"action": "dislike"},
        headers=api.auth(fans[0]["token"]),
    )
    assert await disliked.json() == {
        "success": True,
        "user_action": "disliked",
        "like_count": 0,
        "dislike_count": 1,
    }

    async def order(sort: str, token: str | None = None) -> list[dict[str, Any]]:
        headers = api.auth(token) if token else {}
        resp = await api.client.get(f"/api/videos/{video}/comments?sort={sort}", headers=headers)
        return list((await resp.json())["comments"])

    assert [x["id"] for x in await order("newest")] == [c["id"], b["id"], a["id"]]
    assert [x["id"] for x in await order("oldest")] == [a["id"], b["id"], c["id"]]
    top = await order("top", fans[0]["token"])
    assert [x["id"] for x in top] == [b["id"], c["id"], a["id"]]
    assert top[0]["like_count"] == 3 and top[0]["user_interaction"]["liked"] is True
    assert top[2]["user_interaction"] == {"liked": False, "disliked": True}


async def test_edit_and_delete_rules(api: Api, catalog: Catalog, db: asyncpg.Connection) -> None:
    owner = await api.register()
    author = await api.register()
    stranger = await api.register()
    admin = await api.register()
    await db.execute("UPDATE users SET role = 'admin' WHERE id = $1", admin["id"])
    admin = {
        **admin,
        **(
            await (
                await api.client.post(
                    "/api/auth/login",
                    json={"login": admin["user"]["username"], "password": "Passw0rd!"},
                )
            ).json()
        ),
    }
    admin_token = admin["tokens"]["access_token"]
    video = await catalog.video(owner["id"])
    comment = await _comment(api, author["token"], video, "original")

    url = f"/api/comments/{comment['id']}"
    denied = await api.client.put(url, json={"content": "hacked"}, headers=api.auth(owner["token"]))
    assert denied.status == 403
    edited = await api.client.put(url, json={"content": "fixed"}, headers=api.auth(author["token"]))
    body = await edited.json()
    assert edited.status == 200, body
    assert body["content"] == "fixed" and body["edited"] is True
    assert body["updated_at"] > comment["updated_at"]

    assert (await api.client.delete(url, headers=api.auth(stranger["token"]))).status == 403
    deleted = await api.client.delete(url, headers=api.auth(owner["token"]))  # the video's owner
    assert await deleted.json() == {"success": True, "message": "Comment deleted"}
    assert (await api.client.delete(url, headers=api.auth(owner["token"]))).status == 404

    second = await _comment(api, author["token"], video, "again")
    await _comment(api, stranger["token"], video, "reply", parent_comment_id=second["id"])
    resp = await api.client.delete(f"/api/comments/{second['id']}", headers=api.auth(admin_token))
    assert resp.status == 200
    assert await db.fetchval("SELECT comment_count FROM videos WHERE id = $1", video) == 0
    assert await db.fetchval("SELECT count(*) FROM comments") == 0


async def test_concurrent_comments_keep_exact_counts(
    api: Api, catalog: Catalog, db: asyncpg.Connection
) -> None:
    owner = await api.register()
    fan = await api.register()
    video = await catalog.video(owner["id"])
    top = await _comment(api, fan["token"], video, "thread")
    await asyncio.gather(
        *(
            _comment(api, fan["token"], video, f"r{i}", parent_comment_id=top["id"])
            for i in range(30)
        )
    )
    row = await db.fetchrow(
        "SELECT c.reply_count, v.comment_count FROM comments c JOIN videos v ON v.id = c.video_id "
        "WHERE c.id = $1",
        top["id"],
    )
    assert (row["reply_count"], row["comment_count"]) == (30, 31)
