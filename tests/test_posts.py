"""Posts and communities (the upload-flow API)."""

from __future__ import annotations

from reelwire.domain.schemas.posts import CommunitiesOut, PostOut, PostsOut
from tests.conftest import Api, Catalog


async def test_post_with_video_in_a_community(api: Api, catalog: Catalog) -> None:
    alice = await api.register(display_name="Alice A")
    bob = await api.register()
    headers = api.auth(alice["token"])
    resp = await api.client.post(
        "/api/communities", json={"name": "Skaters", "description": "ollies"}, headers=headers
    )
    community = await resp.json()
    assert resp.status == 201, community
    dup = await api.client.post("/api/communities", json={"name": "skaters"}, headers=headers)
    assert dup.status == 409

    ready = await catalog.video(alice["id"], duration=12.5)
    processing = await catalog.video(alice["id"], status="processing")
    bobs = await catalog.video(bob["id"])

    async def post(body: dict[str, object]) -> tuple[int, dict[str, object]]:
        resp = await api.client.post("/api/posts", json=body, headers=headers)
        return resp.status, dict(await resp.json())

    status, made = await post(
        {"content": "look", "videoId": ready, "communityId": community["id"], "type": "video"}
    )
    assert status == 201, made
    PostOut.model_validate(made)
    assert made["type"] == "video" and made["community"] == {
        "id": community["id"],
        "name": "Skaters",
    }
    assert made["media"]["videoId"] == ready and made["media"]["duration"] == 12.5  # type: ignore[index]
    assert made["author"]["name"] == "Alice A"  # type: ignore[index]
    assert (made["likes"], made["isLiked"]) == (0, False)

    status, body = await post({"content": "wip", "videoId": processing})
    assert (status, body["error"]["message"]) == (400, "Video is still processing")  # type: ignore[index]
    private = await catalog.video(alice["id"], visibility="private")
    status, body = await post({"content": "secret", "videoId": private})
    assert status == 400
    status, body = await post({"content": "not mine", "videoId": bobs})
    assert (status, body["error"]["message"]) == (404, "Video not found")  # type: ignore[index]
    status, text_post = await post({"content": "just words"})
    assert status == 201 and text_post["type"] == "text" and text_post["media"] is None
    assert (await post({"content": ""}))[0] == 400

    feed = await (await api.client.get("/api/posts")).json()
    PostsOut.model_validate(feed)
    assert [p["id"] for p in feed["posts"]] == [text_post["id"], made["id"]]
    scoped = await (await api.client.get(f"/api/posts?communityId={community['id']}")).json()
    assert [p["id"] for p in scoped["posts"]] == [made["id"]]
    communities = await (await api.client.get("/api/communities")).json()
    CommunitiesOut.model_validate(communities)
    assert communities["communities"][0]["post_count"] == 1
