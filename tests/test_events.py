"""Every change publishes its event on Redis after it commits (PROTOCOL.md shapes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from pubsub import keys
from tests.conftest import Api, Backends, Catalog


class Listener:
    """A raw Redis subscriber to some protocol channels."""

    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                return self.decode(message["channel"], message["data"])
        raise AssertionError("no event arrived")

    @staticmethod
    def decode(channel: bytes, payload: bytes) -> dict[str, Any]:
        """A history event (`H epoch offset frame`) or a state one (`S json`), as a dict with
        `_channel` (and `_offset` for history); the publish time `ts` is checked and dropped."""
        if payload.startswith(b"H "):
            _, _, offset, frame = payload.split(b" ", 3)
            event: dict[str, Any] = orjson.loads(frame)
            assert event.pop("offset") == int(offset)
            event["_offset"] = int(offset)
        else:
            assert payload.startswith(b"S ")
            event = orjson.loads(payload[2:])
        assert isinstance(event.pop("ts"), int)
        event["_channel"] = keys.channel_of(channel)
        return event

    async def subscribe(self, *channels: str) -> None:
        await self.pubsub.subscribe(*(keys.redis_channel(c) for c in channels))


@pytest.fixture
async def listener(backends: Backends) -> AsyncIterator[Listener]:
    client = aioredis.Redis.from_url(backends.redis_url)
    pubsub = client.pubsub()
    yield Listener(pubsub)
    await pubsub.aclose()
    await client.aclose()


async def test_video_events(api: Api, catalog: Catalog, listener: Listener) -> None:
    owner = await api.register()
    fan = await api.register()
    video = await catalog.video(owner["id"])
    await listener.subscribe(keys.video_channel(video))
    headers = api.auth(fan["token"])

    await api.client.post(f"/api/videos/{video}/like", json={"action": "like"}, headers=headers)
    event = await listener.next()
    assert event["type"] == "video_update" and event["video_id"] == video
    assert event["data"]["like_count"] == 1 and event["data"]["dislike_count"] == 0
    version = event["data"]["counts_version"]

    await api.client.post(f"/api/videos/{video}/view")
    event = await listener.next()
    assert event["type"] == "video_update" and event["data"] == {"view_count": 1}

    resp = await api.client.post(
        f"/api/videos/{video}/comments", json={"content": "hello"}, headers=headers
    )
    comment = await resp.json()
    posted, counts = await listener.next(), await listener.next()  # the comment, then its count
    assert counts["data"]["comment_count"] == 1 and counts["data"]["counts_version"] > version
    assert posted["type"] == "new_comment" and posted["comment"] == comment

    await api.client.put(f"/api/comments/{comment['id']}", json={"content": "hi"}, headers=headers)
    updated = await listener.next()
    assert updated["type"] == "comment_updated" and updated["comment"]["content"] == "hi"

    await api.client.delete(f"/api/comments/{comment['id']}", headers=headers)
    deleted, counts = await listener.next(), await listener.next()
    assert counts["data"]["comment_count"] == 0
    assert deleted == {
        "type": "comment_deleted",
        "video_id": video,
        "comment_id": comment["id"],
        "parent_comment_id": None,
        "_channel": keys.video_channel(video),
        "_offset": 3,  # after new_comment (1) and comment_updated (2); counts carry none
    }


async def test_follow_and_clip_events(api: Api, listener: Listener, catalog: Catalog) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    await listener.subscribe(keys.user_channel(alice["id"]), keys.clip_channel(alice["id"]))
    await api.client.post(f"/api/users/{alice['id']}/follow", headers=api.auth(bob["token"]))
    event = await listener.next()
    assert event["type"] == "new_follower" and event["follower_count"] == 1
    assert event["follower"]["username"] == "bob"

    clip = await catalog.clip(alice["id"])
    await api.client.delete(f"/api/clips/{clip}", headers=api.auth(alice["token"]))
    event = await listener.next()
    assert event["_channel"] == keys.clip_channel(alice["id"])
    assert (event["type"], event["action"], event["clip"]["id"]) == ("clip_feed", "removed", clip)
