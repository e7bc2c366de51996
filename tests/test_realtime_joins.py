"""Sockets joining channels in crowds: one Redis read shared by the sockets joining a channel
together, a channel this process watches answered from memory, a video made private refused at
once, and a reconnect storm against a real `reelwire serve` that loses nothing.

Round trips are counted (every command, script and pipeline of the app's Redis client goes into
`reelwire_redis_command_seconds`), never timed: speed is for scripts/bench_fanout.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pubsub.bus import EventBus
from pubsub.outbox import Outbox
from realtime import messages
from realtime.endpoint import HUB
from reelwire import telemetry
from reelwire.appkeys import SERVICES
from tests.conftest import Api, Backends, Catalog, MakeApi
from tests.crowd import Member, gather
from tests.test_realtime_processes import server_env
from tests.test_serve import Server


def round_trips() -> float:
    """Redis round trips of this process's app clients so far."""
    return sum(
        sample.value
        for metric in telemetry.redis_command_seconds.collect()
        for sample in metric.samples
        if sample.name.endswith("_count")
    )


@pytest.fixture
async def quiet(make_api: MakeApi, monkeypatch: pytest.MonkeyPatch) -> Api:
    """An app whose only Redis traffic is its sockets': no view flushes, no presence reports,
    no look at the transcode queue."""
    api = await make_api(view_flush_ms=600_000, ws_max_sockets_per_address=0)
    app = api.client.app

    async def nothing(*args: Any, **kwargs: Any) -> Any:
        return 0

    monkeypatch.setattr(app[HUB].presence, "report", nothing)
    monkeypatch.setattr(app[SERVICES].jobs, "backlog", nothing)
    await asyncio.sleep(0.1)  # the worker watch's first look, if it was under way
    return api


@pytest.fixture
async def bus(backends: Backends) -> AsyncIterator[EventBus]:
    client = aioredis.Redis.from_url(backends.redis_url)
    yield EventBus(client, Outbox(), history_size=1000, history_ttl=600)
    await client.aclose()


def comment(video: str, n: int) -> dict[str, Any]:
    return {"type": "new_comment", "video_id": video, "comment": {"id": str(n), "content": f"c{n}"}}


async def crowd(api: Api, count: int) -> list[Member]:
    server = api.client.server
    return await gather(str(server.host), int(server.port), count)


def offsets(member: Member) -> list[int]:
    return [m["offset"] for m in member.events("new_comment")]


async def test_a_crowd_joining_one_channel_shares_one_read(
    quiet: Api, catalog: Catalog, bus: EventBus
) -> None:
    owner = await quiet.register()
    video = await catalog.video(owner["id"])
    channel = f"video:{video}"
    assert (await quiet.client.get(f"/api/videos/{video}")).status == 200  # now cached in Redis
    for n in range(3):
        await bus.publish(channel, comment(video, n))
    members = await crowd(quiet, 100)

    before = round_trips()
    asked = [member.send("subscribe", channel=channel) for member in members]
    answers = [await m.reply(i) for m, i in zip(members, asked, strict=True)]
    used = round_trips() - before
    assert {a["type"] for a in answers} == {"subscribed"}
    assert {(a["offset"], a["recovered"]) for a in answers} == {(3, False)}
    assert len({a["epoch"] for a in answers}) == 1
    # One pipelined read for the crowd (a second or third for stragglers), where each socket
    # used to make three round trips of its own.
    assert used <= 3, used

    for n in range(3, 8):
        await bus.publish(channel, comment(video, n))
    for member in members:
        await member.wait_for(lambda m: m.get("offset") == 8 and m["type"] == "new_comment")
    for member in members:
        assert offsets(member) == [4, 5, 6, 7, 8]  # every event once, in order
        counts = member.events("video_update")
        assert counts and counts[0]["data"]["like_count"] == 0


async def test_joining_a_watched_channel_costs_no_round_trip(
    quiet: Api, catalog: Catalog, bus: EventBus
) -> None:
    owner = await quiet.register()
    video = await catalog.video(owner["id"])
    channel = f"video:{video}"
    assert (await quiet.client.get(f"/api/videos/{video}")).status == 200
    first, *later = await crowd(quiet, 6)

    before = round_trips()
    assert (await first.reply(first.send("subscribe", channel=channel)))["type"] == "subscribed"
    assert round_trips() - before == 1  # a channel new to this process: one pipelined read

    await bus.publish(channel, comment(video, 1))
    await first.wait_for(lambda m: m.get("offset") == 1)
    before = round_trips()
    for member in later:  # one at a time: each answered from what the channel knows
        answer = await member.reply(member.send("subscribe", channel=channel))
        assert answer["type"] == "subscribed" and answer["offset"] == 1
        assert (await member.wait_for(lambda m: m["type"] == "video_update"))["offset"] == 1
    assert round_trips() - before == 0

    # resuming from an offset the channel still keeps: no round trip either
    back = (await crowd(quiet, 1))[0]
    await bus.publish(channel, comment(video, 2))
    await bus.publish(channel, comment(video, 3))
    await first.wait_for(lambda m: m.get("offset") == 3)
    before = round_trips()
    since = {"offset": 1, "epoch": (await first.reply(1))["epoch"]}
    answer = await back.reply(back.send("subscribe", channel=channel, since=since))
    assert answer["recovered"] is True and answer["offset"] == 3
    await back.wait_for(lambda m: m.get("offset") == 3)
    assert offsets(back) == [2, 3]
    assert round_trips() - before == 0


async def test_sockets_of_one_user_channel_and_of_users_join_together(
    quiet: Api, bus: EventBus
) -> None:
    user = await quiet.register()
    channel = f"user:{user['id']}"
    server = quiet.client.server
    members = await gather(
        str(server.host), int(server.port), 40, headers=lambda n: quiet.auth(user["token"])
    )
    before = round_trips()
    asked = [member.send("subscribe", channel=channel) for member in members]
    answers = [await m.reply(i) for m, i in zip(members, asked, strict=True)]
    assert {(a["type"], a["offset"]) for a in answers} == {("subscribed", 0)}
    assert round_trips() - before <= 3
    await bus.publish(channel, {"type": "notification", "text": "hello"})
    for member in members:
        assert (await member.wait_for(lambda m: m["type"] == "notification"))["offset"] == 1


async def test_a_video_made_private_mid_storm_refuses_everyone_after(
    quiet: Api, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await quiet.register()
    video = await catalog.video(owner["id"])
    channel = f"video:{video}"
    watchers = await crowd(quiet, 20)
    for member in watchers:  # the channel is watched here: joins are answered from memory
        assert (await member.reply(member.send("subscribe", channel=channel)))["type"] == (
            "subscribed"
        )
    early, late = await crowd(quiet, 50), await crowd(quiet, 50)

    async def visibility(value: str) -> None:
        resp = await quiet.client.patch(
            f"/api/videos/{video}", json={"visibility": value}, headers=quiet.auth(owner["token"])
        )
        assert resp.status == 200, await resp.json()

    asked_early = [member.send("subscribe", channel=channel) for member in early]
    await visibility("private")
    asked_late = [member.send("subscribe", channel=channel) for member in late]
    answers = [await m.reply(i) for m, i in zip(early, asked_early, strict=True)]
    assert {a["type"] for a in answers} <= {"subscribed", "error"}
    refused = [await m.reply(i) for m, i in zip(late, asked_late, strict=True)]
    assert {(a["type"], a["error"]["code"]) for a in refused} == {("error", "NOT_FOUND")}

    # the owner still may; then back and forth, each change seen by the very next join
    owners = await gather(
        str(quiet.client.server.host),
        int(quiet.client.server.port),
        1,
        headers=lambda n: quiet.auth(owner["token"]),
    )
    assert (await owners[0].reply(owners[0].send("subscribe", channel=channel)))["type"] == (
        "subscribed"
    )
    # ... even when the process reads its pub/sub connection late (here by 30 ms a read): the
    # change's notice may still be on its way when the next join arrives.
    connection = quiet.client.app[HUB].channels.subscriber._connection
    read_response = connection.read_response

    async def late(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.03)
        return await read_response(*args, **kwargs)

    monkeypatch.setattr(connection, "read_response", late)
    probes = await crowd(quiet, 20)
    for n, probe in enumerate(probes):
        public = n % 2 == 0
        await visibility("public" if public else "private")
        answer = await probe.reply(probe.send("subscribe", channel=channel))
        assert answer["type"] == ("subscribed" if public else "error"), (n, answer)


async def test_a_reconnect_storm_after_a_restart_recovers_everything(
    tmp_path: Path, backends: Backends, reset: None, catalog: Catalog, bus: EventBus
) -> None:
    """2,000 sockets on two videos; their server restarts while events keep coming; all of them
    come back to another process at once with `since`, and each has every event once, in order."""
    env = server_env(backends, WS_MAX_SOCKETS_PER_ADDRESS="0", LOG_LEVEL="WARNING")
    first = Server(tmp_path / "home1", env)
    second: Server | None = None
    try:
        first.wait_healthy()
        owner = await _register(first)
        videos = [await catalog.video(owner) for _ in range(2)]
        channels = [f"video:{v}" for v in videos]
        published = dict.fromkeys(channels, 0)

        async def publish(count: int) -> None:
            for _ in range(count):
                for channel in channels:
                    published[channel] += 1
                    n = published[channel]
                    await bus.publish(channel, comment(channel[6:], n))

        await publish(3)
        members = await gather("127.0.0.1", first.port, 2000)
        where = {id(m): channels[n % 2] for n, m in enumerate(members)}
        asked = [m.send("subscribe", channel=where[id(m)]) for m in members]
        epochs = {}
        for member, message_id in zip(members, asked, strict=True):
            answer = await member.reply(message_id, timeout=30)
            assert answer["type"] == "subscribed" and answer["offset"] == 3, answer
            epochs[where[id(member)]] = answer["epoch"]
        await publish(5)
        for member in members:
            await member.wait_for(lambda m: m.get("offset") == 8, timeout=30)

        first.proc.send_signal(signal.SIGTERM)  # sockets closed with 1012, in batches
        await publish(4)  # missed by every socket
        second = Server(tmp_path / "home2", env)
        # waited for off the loop: the sockets closing with 1012 need it to answer their close
        await asyncio.to_thread(second.wait_healthy)
        try:
            exited = await asyncio.to_thread(first.proc.wait, 30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"not gone 30 s after SIGTERM:\n{first.output()}") from None
        assert exited == 0, first.output()
        back = await gather("127.0.0.1", second.port, len(members))
        asked = []
        for old, new in zip(members, back, strict=True):
            channel = where[id(old)]
            since = {"offset": offsets(old)[-1], "epoch": epochs[channel]}
            asked.append(new.send("subscribe", channel=channel, since=since))
        await publish(3)  # while they come back
        for new, message_id in zip(back, asked, strict=True):
            answer = await new.reply(message_id, timeout=30)
            assert answer["type"] == "subscribed" and answer["recovered"] is True, answer
        for old, new in zip(members, back, strict=True):
            await new.wait_for(lambda m: m.get("offset") == 15, timeout=30)
            assert offsets(old) + offsets(new) == list(range(4, 16))
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def _register(server: Server) -> str:
    import aiohttp

    body = {"username": "owner", "email": "owner@example.com", "password": "Passw0rd!"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/auth/register", json=body) as resp,
    ):
        data = await resp.json()
        assert resp.status == 201, data
    return str(data["user"]["id"])


@pytest.mark.parametrize("message_id", [None, 0, 7, "a-string", 2**40, True])
def test_the_messages_every_joining_socket_gets_are_what_their_models_make(
    message_id: Any,
) -> None:
    for offset, epoch, recovered in ((0, "", False), (12, "0a1b2c3d", True)):
        made = messages.subscribed(message_id, "video:x", offset, epoch, recovered)
        assert made == messages.subscribed_checked(message_id, "video:x", offset, epoch, recovered)
    assert messages.welcome("ab" * 16, "host:1", 25) == messages.welcome_checked(
        "ab" * 16, "host:1", 25
    )


async def test_viewer_count_changes_alone_go_out_at_most_once_a_second(
    api: Api, catalog: Catalog
) -> None:
    owner = await api.register()
    video = await catalog.video(owner["id"])
    channel = f"video:{video}"
    watcher, *joining = await crowd(api, 21)
    assert (await watcher.reply(watcher.send("subscribe", channel=channel)))["type"] == (
        "subscribed"
    )
    await watcher.wait_for(lambda m: m["type"] == "video_update")
    seen = len(watcher.messages)
    # A crowd trickling in for 5 s: the count changes on every presence report (2 a second),
    # which went out as 10 or 11 updates; at most one a second now (and the last one).
    for member in joining:
        member.send("subscribe", channel=channel)
        await asyncio.sleep(0.25)
    final = await watcher.wait_for(
        lambda m: m["type"] == "video_update" and m["data"]["viewer_count"] == 21
    )
    updates = [m for m in watcher.messages[seen:] if m["type"] == "video_update"]
    assert updates[-1] is final and len(updates) <= 7, [m["data"]["viewer_count"] for m in updates]


async def test_a_crowd_of_users_connecting_checks_their_sessions_in_postgresql_only(
    quiet: Api,
) -> None:
    """Sessions of accounts not seen lately are checked (logged out? account still there?) by
    one PostgreSQL query for the sockets connecting together, with no Redis round trip."""
    from reelwire.domain.tokens import ACCOUNT_CHECK_SECONDS

    users = [await quiet.register() for _ in range(30)]
    gone = users.pop()
    resp = await quiet.client.post("/api/auth/logout", headers=quiet.auth(gone["token"]))
    assert resp.status == 200
    await asyncio.sleep(ACCOUNT_CHECK_SECONDS + 0.1)  # nobody was seen lately
    server = quiet.client.server

    before = round_trips()
    members = await gather(
        str(server.host),
        int(server.port),
        len(users),
        headers=lambda n: quiet.auth(users[n]["token"]),
    )
    assert round_trips() - before == 0
    for member, user in zip(members, users, strict=True):
        answer = await member.reply(member.send("subscribe", channel=f"user:{user['id']}"))
        assert answer["type"] == "subscribed"
    with pytest.raises(ConnectionError, match="401"):
        await gather(
            str(server.host), int(server.port), 1, headers=lambda n: quiet.auth(gone["token"])
        )
