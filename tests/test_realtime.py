"""/ws in one process: auth, permissions, the CLUTCH API messages, commands, recovery, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import UUID

import asyncpg
import orjson
import pytest

from realtime import commands
from realtime.close_codes import CloseCode
from realtime.command_table import CommandTable, command_spec
from realtime.endpoint import COMMAND_TABLE
from realtime.schemas import CLIENT_MESSAGES, LikeMessage
from tests.conftest import Api, Catalog, MakeApi
from tests.wsclient import ConnectionClosed, Socket


async def test_welcome_ping_and_a_like_from_rest_reaches_a_watcher(
    api: Api, catalog: Catalog
) -> None:
    owner, fan = await api.register(), await api.register()
    video = await catalog.video(owner["id"])
    watcher = await Socket.open(api.client)
    assert watcher.welcome["heartbeat"] == 25 and watcher.welcome["node"]
    assert (await watcher.call("ping"))["type"] == "pong"

    subscribed = await watcher.subscribe(f"video:{video}")
    assert subscribed["type"] == "subscribed" and subscribed["recovered"] is False
    assert subscribed["channel"] == f"video:{video}" and subscribed["epoch"]
    snapshot = await watcher.expect("video_update")
    assert snapshot["video_id"] == video and snapshot["data"]["like_count"] == 0

    await api.client.post(
        f"/api/videos/{video}/like", json={"action": "like"}, headers=api.auth(fan["token"])
    )
    update = await watcher.until(lambda m: m.get("data", {}).get("like_count") == 1)
    assert set(update["data"]) >= {
        "view_count",
        "like_count",
        "dislike_count",
        "comment_count",
        "viewer_count",
    }
    assert update["data"]["viewer_count"] == 1 or update["data"]["viewer_count"] == 0


async def test_channel_permissions(api: Api, catalog: Catalog) -> None:
    alice, bob = await api.register(), await api.register()
    secret = await catalog.video(alice["id"], visibility="private")
    anonymous = await Socket.open(api.client)
    as_bob = await Socket.open(api.client, headers=api.auth(bob["token"]))
    as_alice = await Socket.open(api.client, headers=api.auth(alice["token"]))

    refused = await as_bob.subscribe(f"user:{alice['id']}")
    assert refused["type"] == "error" and refused["error"]["code"] == "FORBIDDEN"
    refused = await anonymous.subscribe(f"user:{alice['id']}")
    assert refused["error"]["code"] == "UNAUTHORIZED"
    assert (await as_alice.subscribe(f"user:{alice['id']}"))["type"] == "subscribed"

    hidden = await as_bob.subscribe(f"video:{secret}")
    assert hidden["error"]["code"] == "NOT_FOUND"
    assert (await anonymous.subscribe(f"video:{secret}"))["error"]["code"] == "NOT_FOUND"
    assert (await as_alice.subscribe(f"video:{secret}"))["type"] == "subscribed"

    assert (await anonymous.subscribe("feed:clips"))["error"]["code"] == "UNAUTHORIZED"
    assert (await anonymous.subscribe("admin:everything"))["error"]["code"] == "VALIDATION_ERROR"
    assert (await anonymous.subscribe("video:not-a-uuid"))["error"]["code"] == "VALIDATION_ERROR"
    # still usable after all those refusals
    assert (await as_bob.call("ping"))["type"] == "pong"


async def test_three_ways_to_authenticate(api: Api, catalog: Catalog) -> None:
    user = await api.register()
    own_channel = f"user:{user['id']}"

    by_header = await Socket.open(api.client, headers=api.auth(user["token"]))
    assert (await by_header.subscribe(own_channel))["type"] == "subscribed"

    resp = await api.client.post("/api/ws/ticket", headers=api.auth(user["token"]))
    ticket = (await resp.json())["ticket"]
    assert resp.status == 200 and (await resp.json())["expires_in"] == 30
    by_ticket = await Socket.open(api.client, f"/ws?ticket={ticket}")
    assert (await by_ticket.subscribe(own_channel))["type"] == "subscribed"
    reused = await api.client.get(f"/ws?ticket={ticket}", headers={"Upgrade": "websocket"})
    assert reused.status == 401  # single use
    assert (await api.client.post("/api/ws/ticket")).status == 401

    by_message = await Socket.open(api.client)
    assert (await by_message.subscribe(own_channel))["error"]["code"] == "UNAUTHORIZED"
    bad = await by_message.call("auth", token="not-a-token")
    assert bad["type"] == "error" and bad["error"]["code"] == "UNAUTHORIZED"
    ack = await by_message.call("auth", token=user["token"])
    assert ack["type"] == "ack" and ack["data"]["user_id"] == user["id"]
    assert (await by_message.subscribe(own_channel))["type"] == "subscribed"

    bad_header = await api.client.get(
        "/ws", headers={**api.auth("nope"), "Upgrade": "websocket", "Connection": "Upgrade"}
    )
    assert bad_header.status == 401


async def test_origin_is_checked_against_cors_origins(make_api: MakeApi) -> None:
    api = await make_api(cors_origins=("https://app.example.com",))
    allowed = await Socket.open(api.client, origin="https://app.example.com")
    assert (await allowed.call("ping"))["type"] == "pong"
    try:
        await api.client.ws_connect("/ws", origin="https://evil.example.com")
        raise AssertionError("connected from a foreign origin")
    except Exception as exc:  # aiohttp.WSServerHandshakeError
        assert getattr(exc, "status", None) == 403
    # non-browser clients send no Origin
    assert (await (await Socket.open(api.client)).call("ping"))["type"] == "pong"


async def test_bad_messages_get_answers_until_the_limits(
    make_api: MakeApi, catalog: Catalog
) -> None:
    api = await make_api(ws_max_subscriptions=3, ws_messages_per_second=20)
    user = await api.register()
    videos = [await catalog.video(user["id"]) for _ in range(4)]
    sock = await Socket.open(api.client)

    await sock.ws.send_str("{not json")
    assert (await sock.expect("error"))["error"]["code"] == "VALIDATION_ERROR"
    await sock.ws.send_str("[1, 2]")
    assert (await sock.expect("error"))["error"]["code"] == "VALIDATION_ERROR"
    unknown = await sock.call("dance")
    assert unknown["error"]["code"] == "VALIDATION_ERROR" and "dance" in unknown["error"]["message"]
    missing = await sock.call("subscribe")
    assert "channel" in missing["error"]["field_errors"]
    for video in videos[:3]:
        assert (await sock.subscribe(f"video:{video}"))["type"] == "subscribed"
    over = await sock.subscribe(f"video:{videos[3]}")
    assert over["error"]["code"] == "LIMIT_EXCEEDED"
    gone = await sock.call("unsubscribe", channel=f"video:{videos[0]}")
    assert gone["type"] == "unsubscribed"
    assert (await sock.subscribe(f"video:{videos[3]}"))["type"] == "subscribed"

    # a flood: refused with RATE_LIMITED, then the socket is closed (1008)
    flood = await Socket.open(api.client)
    await asyncio.sleep(1.1)  # a full bucket
    for _ in range(80):
        if flood.ws.closed:
            break
        await flood.send("ping")
    codes = []
    try:
        while True:
            message = await flood.receive(timeout=5)
            codes.append(message.get("error", {}).get("code", message["type"]))
    except ConnectionClosed as closed:
        assert closed.code == 1008
    assert codes.count("pong") == 20 and "RATE_LIMITED" in codes


async def test_oversized_message_closes_with_1009(api: Api) -> None:
    sock = await Socket.open(api.client)
    await sock.ws.send_str(orjson.dumps({"type": "ping", "pad": "x" * 70_000}).decode())
    assert await sock.closed() == 1009


async def test_commands_are_declared_by_decorator_and_registered_explicitly(api: Api) -> None:
    like = command_spec(commands.like)
    assert (like.kind, like.schema, like.auth, like.rate) == ("like", LikeMessage, True, "like")
    table = CommandTable()
    assert len(table) == 0  # declaring registers nothing
    commands.register_commands(table)
    assert set(table) == set(CLIENT_MESSAGES) == set(api.client.app[COMMAND_TABLE])
    with pytest.raises(ValueError, match="already registered"):
        table.register(commands.like)
    with pytest.raises(TypeError, match="websocket_command"):
        table.register(commands.authenticate)  # type: ignore[arg-type]


def test_every_close_code_is_documented() -> None:
    protocol = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    closing = protocol.split("## Limits and closing codes", 1)[1]
    for code in CloseCode:
        assert str(int(code)) in closing, f"{code!r} is not in docs/protocol.md"


async def test_commands_answer_like_rest_and_fan_out(
    api: Api, catalog: Catalog, db: asyncpg.Connection
) -> None:
    owner, fan = await api.register(), await api.register()
    video = await catalog.video(owner["id"])
    watcher = await Socket.open(api.client)
    await watcher.subscribe(f"video:{video}")
    actor = await Socket.open(api.client, headers=api.auth(fan["token"]))

    liked = await actor.call("like", video_id=video, action="like")
    assert liked["type"] == "ack"
    assert liked["data"] == {  # the REST answer's data, without REST's envelope
        "user_action": "liked",
        "like_count": 1,
        "dislike_count": 0,
    }
    viewed = await actor.call("view", video_id=video, watch_time_seconds=3)
    assert viewed["data"] == {"new_view_count": 1}
    commented = await actor.call("comment", video_id=video, content="first!")
    comment = commented["data"]
    assert commented["type"] == "ack" and comment["content"] == "first!"

    arrived = await watcher.expect("new_comment")
    assert arrived["comment"] == comment and arrived["video_id"] == video
    assert arrived["offset"] == 1
    final = await watcher.until(
        lambda m: (
            m.get("type") == "video_update"
            and m["data"]["comment_count"] == 1
            and m["data"]["like_count"] == 1
            and m["data"]["view_count"] == 1
        )
    )
    assert final["offset"] == 1

    # the same rules as REST
    anonymous = await Socket.open(api.client)
    refused = await anonymous.call("like", video_id=video, action="like")
    assert refused["error"]["code"] == "UNAUTHORIZED"
    invalid = await actor.call("like", video_id=video, action="love")
    assert invalid["error"]["code"] == "VALIDATION_ERROR"
    missing = await actor.call("comment", video_id=str(UUID(int=1)), content="hello?")
    assert missing["error"]["code"] == "NOT_FOUND"
    stored = await db.fetchval("SELECT like_count FROM videos WHERE id = $1", UUID(video))
    assert stored == 1


async def test_recovery_replays_exactly_what_was_missed(api: Api, catalog: Catalog) -> None:
    owner = await api.register()
    video = await catalog.video(owner["id"])
    headers = api.auth(owner["token"])
    url = f"/api/videos/{video}/comments"
    channel = f"video:{video}"

    sock = await Socket.open(api.client)
    await sock.subscribe(channel)
    await api.client.post(url, json={"content": "seen"}, headers=headers)
    seen = await sock.expect("new_comment")
    position = {"offset": seen["offset"], "epoch": (await _epoch(sock, channel))}
    await sock.close()

    missed = []
    for n in range(5):
        resp = await api.client.post(url, json={"content": f"missed {n}"}, headers=headers)
        missed.append((await resp.json())["id"])

    back = await Socket.open(api.client)
    answer = await back.subscribe(channel, since=position)
    assert answer["recovered"] is True and answer["offset"] == position["offset"] + 5
    replayed = [await back.expect("new_comment") for _ in missed]
    assert [m["comment"]["id"] for m in replayed] == missed
    assert [m["offset"] for m in replayed] == list(range(2, 7))

    lost = await (await Socket.open(api.client)).subscribe(
        channel, since={"offset": 1, "epoch": "another-epoch"}
    )
    assert lost["recovered"] is False and lost["offset"] == 6


async def _epoch(sock: Socket, channel: str) -> str:
    again = await sock.subscribe(channel)  # subscribing again reports the position
    return str(again["epoch"])


async def test_a_burst_of_likes_is_coalesced_and_ends_at_the_database(
    api: Api, catalog: Catalog, db: asyncpg.Connection
) -> None:
    owner = await api.register()
    video = await catalog.video(owner["id"])
    fans = [await api.register() for _ in range(60)]
    watcher = await Socket.open(api.client)
    await watcher.subscribe(f"video:{video}")
    await watcher.until("video_update")

    async def like(token: str) -> None:
        await api.client.post(
            f"/api/videos/{video}/like", json={"action": "like"}, headers=api.auth(token)
        )

    await asyncio.gather(*(like(f["token"]) for f in fans))
    updates = []
    while True:
        try:
            message = await watcher.receive(timeout=1)
        except TimeoutError:
            break
        if message["type"] == "video_update":
            updates.append(message["data"]["like_count"])
    stored = await db.fetchval("SELECT like_count FROM videos WHERE id = $1", UUID(video))
    assert stored == 60 and updates[-1] == 60
    assert len(updates) < 60 and updates == sorted(updates)


async def test_clip_feed_follows_follows_while_connected(api: Api, catalog: Catalog) -> None:
    me, bob, carol = await api.register(), await api.register(), await api.register()
    bob_clips = [await catalog.clip(bob["id"]) for _ in range(2)]
    carol_clip = await catalog.clip(carol["id"])
    await api.client.post(f"/api/users/{bob['id']}/follow", headers=api.auth(me["token"]))
    sock = await Socket.open(api.client, headers=api.auth(me["token"]))
    assert (await sock.subscribe("feed:clips"))["type"] == "subscribed"

    await api.client.delete(f"/api/clips/{bob_clips[0]}", headers=api.auth(bob["token"]))
    removed = await sock.expect("clip_feed")
    assert removed["action"] == "removed" and removed["clip"]["id"] == bob_clips[0]

    await api.client.delete(f"/api/users/{bob['id']}/follow", headers=api.auth(me["token"]))
    await api.client.post(f"/api/users/{carol['id']}/follow", headers=api.auth(me["token"]))
    await asyncio.sleep(0.3)  # the follow reaches the socket's process through Redis
    await api.client.delete(f"/api/clips/{bob_clips[1]}", headers=api.auth(bob["token"]))
    await api.client.delete(f"/api/clips/{carol_clip}", headers=api.auth(carol["token"]))
    arrived = await sock.expect("clip_feed")
    assert arrived["clip"]["id"] == carol_clip  # not bob's: unfollowed meanwhile
    assert not [m for m in sock.inbox if m["type"] == "clip_feed"]


async def test_viewer_count_counts_sockets(api: Api, catalog: Catalog) -> None:
    owner = await api.register()
    video = await catalog.video(owner["id"])
    socks = [await Socket.open(api.client) for _ in range(3)]
    for sock in socks:
        await sock.subscribe(f"video:{video}")
    seen = await socks[0].until(
        lambda m: m.get("type") == "video_update" and m["data"]["viewer_count"] == 3
    )
    assert seen["video_id"] == video
    await socks[2].close()
    await socks[0].until(
        lambda m: m.get("type") == "video_update" and m["data"]["viewer_count"] == 2
    )


async def test_idle_socket_is_closed_and_shutdown_says_1012(
    make_api: MakeApi, catalog: Catalog
) -> None:
    api = await make_api(ws_auth_timeout=1)
    idle = await Socket.open(api.client)
    assert await idle.closed(timeout=5) == 4001

    user = await api.register()
    video = await catalog.video(user["id"])
    watcher = await Socket.open(api.client)
    await watcher.subscribe(f"video:{video}")
    await asyncio.sleep(1.5)  # past the idle limit: subscribed sockets stay
    assert (await watcher.call("ping"))["type"] == "pong"
    await api.client.app.shutdown()
    assert await watcher.closed() == 1012


async def test_a_peer_that_never_answers_pings_is_dropped(
    make_api: MakeApi, catalog: Catalog
) -> None:
    from tests.test_realtime_processes import StalledReader

    api = await make_api(ws_heartbeat_seconds=1)
    owner = await api.register()
    video = await catalog.video(owner["id"])
    silent = await asyncio.to_thread(StalledReader, api.client.server.port)
    silent.send({"type": "subscribe", "channel": f"video:{video}"})
    lively = await Socket.open(api.client)  # aiohttp answers pings while it reads
    await lively.subscribe(f"video:{video}")
    closing = asyncio.ensure_future(asyncio.to_thread(silent.read_until_close, 15))
    while not closing.done():
        assert (await lively.call("ping"))["type"] == "pong"
        await asyncio.sleep(0.2)
    assert (await closing)[1] == 1001
    assert (await lively.call("ping"))["type"] == "pong"


async def test_a_comment_and_the_count_it_changed_reach_each_watcher_in_one_write(
    make_api: MakeApi, catalog: Catalog
) -> None:
    """The comment and the `video_update` with its new count are published a moment apart;
    each watching socket gets both in one write (one system call on a channel of thousands),
    a socket filtering for comments only just the comment."""
    from reelwire.telemetry import REALTIME

    api = await make_api(ws_write_delay_ms=50)  # the two publishes always fall in one window
    owner = await api.register()
    video = await catalog.video(owner["id"])
    watchers = [await Socket.open(api.client) for _ in range(3)]
    for watcher in watchers:
        await watcher.subscribe(f"video:{video}")
        await watcher.expect("video_update")
    only_comments = await Socket.open(api.client)
    await only_comments.subscribe(f"video:{video}", events=["new_comment"])
    for watcher in watchers:  # the viewer count settled: nothing else is on its way
        await watcher.until(lambda m: m.get("data", {}).get("viewer_count") == 4)
    delivered, writes = REALTIME.delivered, REALTIME.writes

    resp = await api.client.post(
        f"/api/videos/{video}/comments",
        json={"content": "first!"},
        headers=api.auth(owner["token"]),
    )
    assert resp.status == 201
    for watcher in watchers:
        await watcher.expect("new_comment")
        update = await watcher.expect("video_update")
        assert update["data"]["comment_count"] == 1
    assert (await only_comments.expect("new_comment"))["comment"]["content"] == "first!"
    await asyncio.sleep(0.2)
    assert not [m for m in only_comments.inbox if m["type"] != "new_comment"]
    assert (REALTIME.delivered - delivered, REALTIME.writes - writes) == (3 * 2 + 1, 3 + 1)


async def test_sockets_watching_a_video_made_private_are_unsubscribed(
    api: Api, catalog: Catalog
) -> None:
    """Made private, a video's channel keeps its owner and loses everyone else at once, each
    told with `unsubscribed`; nothing posted afterwards reaches them."""
    owner, fan = await api.register(), await api.register()
    video = await catalog.video(owner["id"])
    channel = f"video:{video}"
    sockets = {}
    for name, user in (("owner", owner), ("fan", fan), ("anonymous", None)):
        headers = api.auth(user["token"]) if user else {}
        sockets[name] = await Socket.open(api.client, headers=headers)
        assert (await sockets[name].subscribe(channel))["type"] == "subscribed"
    owner_headers = api.auth(owner["token"])

    resp = await api.client.patch(
        f"/api/videos/{video}", json={"visibility": "private"}, headers=owner_headers
    )
    assert resp.status == 200
    for name in ("fan", "anonymous"):
        told = await sockets[name].expect("unsubscribed")
        assert told["channel"] == channel and told.get("id") is None
    resp = await api.client.post(
        f"/api/videos/{video}/comments", json={"content": "just us"}, headers=owner_headers
    )
    assert resp.status == 201
    assert (await sockets["owner"].expect("new_comment"))["comment"]["content"] == "just us"
    for name in ("fan", "anonymous"):
        with pytest.raises(AssertionError, match="no 'new_comment' within"):
            await sockets[name].expect("new_comment", timeout=0.5)
        refused = await sockets[name].subscribe(channel)
        assert refused["type"] == "error" and refused["error"]["code"] == "NOT_FOUND"
