"""Reelwire on a real three-master Redis Cluster: sharded pub/sub, one slot per script.

The cluster comes from a Redis 7+ `redis-server` (tests/redis_cluster.py); without one these tests
are skipped loudly, and under CI=true that is a failure.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient

from cache.rate_limits import Limit, RateLimiter
from cache.views import ViewBatch, ViewCounter
from pubsub import history, keys
from pubsub.bus import EventBus
from pubsub.outbox import Outbox
from pubsub.presence import Presence
from pubsub.subscriber import ChannelSubscriber, ShardedChannelSubscriber
from tests.conftest import Backends, Catalog
from tests.redis_cluster import RedisCluster
from tests.test_realtime_processes import Cluster, server_env
from tests.test_serve import Server
from transcode.queue import JobQueue
from transcode.worker import JobFunctions, Worker


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def client(redis_cluster: RedisCluster) -> AsyncIterator[Any]:
    redis_cluster.flushall()
    client = ClusterClient.from_url(redis_cluster.url)
    await client.initialize()
    try:
        yield client
    finally:
        await client.aclose()


def node_of(client: Any, channel: str) -> str:
    """The master that owns a protocol channel's shard channel."""
    return str(client.get_node_from_key(keys.redis_channel(channel, True)).name)


def channels_on_two_shards(client: Any, kind: str = "video") -> tuple[str, str]:
    first = f"{kind}:{uuid.uuid4()}"
    while True:
        second = f"{kind}:{uuid.uuid4()}"
        if node_of(client, second) != node_of(client, first):
            return first, second


async def test_sharded_subscriber_delivers_in_order_and_recovers_after_losing_its_shards(
    client: Any,
) -> None:
    a, b = channels_on_two_shards(client)
    got: list[tuple[str, bytes]] = []
    reconnects: list[int] = []
    subscriber = ChannelSubscriber(
        client, lambda ch, payload: got.append((ch, payload)), lambda: reconnects.append(1)
    )
    assert isinstance(subscriber, ShardedChannelSubscriber)
    bus = EventBus(client, Outbox(), history_size=100, history_ttl=60)
    await subscriber.start()
    try:
        await subscriber.acquire(a)
        await subscriber.acquire(b)
        assert len(subscriber._shards) == 2  # one connection per master with a wanted channel
        for n in range(5):
            await bus.publish(a, {"type": "new_comment", "n": n})
            await bus.publish(b, {"type": "new_comment", "n": n})
        await bus.publish_state(a, {"type": "video_update", "data": {}})
        async with asyncio.timeout(5):
            while len(got) < 11:
                await asyncio.sleep(0.01)
        for channel in (a, b):
            offsets = [int(p.split()[2]) for ch, p in got if ch == channel and p[:1] == b"H"]
            assert offsets == [1, 2, 3, 4, 5]
        assert any(ch == a and p.startswith(b"S ") for ch, p in got)

        # every shard connection dropped (as in a failover): resubscribed, then told to recover
        for node in client.get_primaries():
            await client.execute_command("CLIENT KILL TYPE pubsub", target_nodes=node)
        async with asyncio.timeout(10):
            while not reconnects:
                await asyncio.sleep(0.05)
        position = await history.position(client, a)
        missed = await history.since(client, a, position.epoch, 3, 100)
        assert missed.recovered and [o for o, _ in missed.frames] == [4, 5]
        got.clear()
        await bus.publish(b, {"type": "new_comment", "n": 5})
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0.01)
        assert got[0][0] == b and int(got[0][1].split()[2]) == 6

        subscriber.release(a)
        await asyncio.sleep(0.1)
        got.clear()
        await bus.publish(a, {"type": "new_comment"})  # nobody here wants it any more
        await bus.publish(b, {"type": "new_comment"})
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert [ch for ch, _ in got] == [b]
    finally:
        await subscriber.stop()


async def test_channels_of_several_slots_on_one_master_are_resubscribed_after_a_reconnect(
    client: Any,
) -> None:
    """A master owning two watched channels of different slots: after the shard connection
    drops they are subscribed again (one SSUBSCRIBE per slot; one command for both is refused
    with CROSSSLOT) and stay subscribed, with no reconnect loop."""
    first = f"video:{uuid.uuid4()}"
    while True:
        second = f"video:{uuid.uuid4()}"
        same_master = node_of(client, second) == node_of(client, first)
        slots = {client.keyslot(keys.redis_channel(c, True)) for c in (first, second)}
        if same_master and len(slots) == 2:
            break
    got: list[tuple[str, bytes]] = []
    reconnects: list[int] = []
    subscriber = ChannelSubscriber(
        client, lambda ch, p: got.append((ch, p)), lambda: reconnects.append(1)
    )
    bus = EventBus(client, Outbox(), history_size=100, history_ttl=60)
    await subscriber.start()
    try:
        for channel in (first, second):
            await subscriber.acquire(channel)
        for node in client.get_primaries():
            await client.execute_command("CLIENT KILL TYPE pubsub", target_nodes=node)
        async with asyncio.timeout(10):
            while not reconnects:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # a refused resubscription would have broken the shard again
        assert len(reconnects) == 1
        for channel in (first, second):
            await bus.publish(channel, {"type": "new_comment"})
        async with asyncio.timeout(5):
            while len(got) < 2:
                await asyncio.sleep(0.01)
        assert sorted(ch for ch, _ in got) == sorted([first, second])
        assert len(reconnects) == 1
    finally:
        await subscriber.stop()


async def test_a_resharded_channel_is_followed_to_its_new_master_without_a_gap(
    client: Any, redis_cluster: RedisCluster
) -> None:
    (channel,) = channels_on_two_shards(client)[:1]
    got: list[bytes] = []
    reconnects: list[int] = []
    subscriber = ChannelSubscriber(
        client, lambda ch, p: got.append(p), lambda: reconnects.append(1)
    )
    bus = EventBus(client, Outbox(), history_size=100, history_ttl=60)
    await subscriber.start()
    try:
        await subscriber.acquire(channel)
        for n in range(2):
            await bus.publish(channel, {"type": "new_comment", "n": n})
        name = keys.redis_channel(channel, True)
        slot = client.keyslot(name)
        source = int(client.get_node_from_key(name).port)
        target = next(p for p in redis_cluster.ports if p != source)
        redis_cluster.move_slot(slot, source, target)
        async with asyncio.timeout(10):  # the old owner drops the channel: subscribed anew
            while not reconnects:
                await asyncio.sleep(0.05)
        assert {s.name for s in subscriber._shards.values()} == {f"127.0.0.1:{target}"}
        await bus.publish(channel, {"type": "new_comment", "n": 2})  # follows MOVED
        async with asyncio.timeout(5):
            while len(got) < 3:
                await asyncio.sleep(0.01)
        assert [int(p.split()[2]) for p in got] == [1, 2, 3]  # the history moved with the slot
        position = await history.position(client, channel)
        assert position.offset == 3
    finally:
        await subscriber.stop()


async def test_presence_totals_and_events_on_a_cluster(client: Any) -> None:
    a, b = channels_on_two_shards(client)
    got: list[tuple[str, bytes]] = []
    subscriber = ChannelSubscriber(client, lambda ch, p: got.append((ch, p)), lambda: None)
    await subscriber.start()
    try:
        await subscriber.acquire(a)
        presence = Presence(client, "node-1", 5)
        assert await presence.report({a: 2, b: 3}) == {a: 2, b: 3}
        assert await Presence(client, "node-2", 5).report({a: 1}) == {a: 3}
        assert await presence.total(b) == 3
        async with asyncio.timeout(5):
            while len(got) < 2:
                await asyncio.sleep(0.01)
        assert [b'"viewer_count":2' in p for _, p in got] == [True, False]
    finally:
        await subscriber.stop()


async def test_views_counted_and_flushed_exactly_once_across_slots(client: Any) -> None:
    views = ViewCounter(client, Outbox())
    videos = [uuid.uuid4() for _ in range(12)]
    assert len({keys.views_shard(v) for v in videos}) > 1

    async def flushed(video: UUID) -> int:
        return 10

    for n, video in enumerate(videos):
        for _ in range(n + 1):
            await views.record(video, 2, flushed)
    assert await views.live(videos) == {v: 10 + n + 1 for n, v in enumerate(videos)}

    batches: list[ViewBatch] = []

    async def apply(batch: ViewBatch) -> None:
        batches.append(batch)

    assert await views.flush(apply) == sum(range(1, 13))
    totals: dict[UUID, int] = {}
    for batch in batches:
        for video, count in batch.views.items():
            totals[video] = totals.get(video, 0) + count
    assert totals == {v: n + 1 for n, v in enumerate(videos)}
    assert len({batch.batch_id for batch in batches}) == len(batches)
    assert await views.flush(apply) == 0  # nothing counted twice

    async def broken(batch: ViewBatch) -> None:
        raise RuntimeError("PostgreSQL went away")

    await views.record(videos[0], 0, flushed)
    with pytest.raises(RuntimeError):
        await views.flush(broken)
    assert await views.flush(apply) == 1  # the batch left behind is retried


async def test_job_queue_hands_jobs_to_a_worker(client: Any) -> None:
    queue = JobQueue(client, Outbox(), lease=2)
    assert len({client.keyslot(k) for k in queue.keys}) == 1
    await queue.ensure_group()
    await queue.enqueue("video", "now")
    await queue.enqueue("video", "later", delay=0.2)
    await queue.beat("worker-1")
    assert await queue.live_workers() == 1
    jobs = await queue.claim("worker-1", 10, 100)
    assert [j.target for j in jobs] == ["now"]
    await queue.retry_later(jobs[0], 0.1)
    await asyncio.sleep(0.3)
    jobs = await queue.claim("worker-1", 10, 100)
    assert sorted((j.target, j.attempt) for j in jobs) == [("later", 1), ("now", 2)]
    for job in jobs:
        await queue.ack(job)
    assert await queue.backlog() == 0
    await queue.leave("worker-1")


async def test_the_transcode_worker_runs_and_retries_jobs_on_a_cluster(
    client: Any, tmp_path: Path
) -> None:
    done: list[str] = []
    attempts: dict[str, int] = {}

    async def run(ctx: None, target: str) -> None:
        attempts[target] = attempts.get(target, 0) + 1
        if target == "flaky" and attempts[target] == 1:
            raise RuntimeError("first attempt fails")
        done.append(target)

    async def fail(ctx: None, target: str, reason: str) -> None:
        raise AssertionError(f"{target} failed for good: {reason}")

    queue = JobQueue(client, Outbox(), lease=2)
    worker: Worker[None] = Worker(
        None,
        queue,
        functions={"video": JobFunctions(run, fail)},
        concurrency=2,
        scratch_root=tmp_path,
        name="cluster-worker",
    )
    running = asyncio.create_task(worker.run())
    try:
        await queue.enqueue("video", "steady")
        await queue.enqueue("video", "flaky")
        async with asyncio.timeout(20):
            while sorted(done) != ["flaky", "steady"]:
                await asyncio.sleep(0.05)
        assert attempts == {"steady": 1, "flaky": 2}
        assert await queue.live_workers() == 1
        async with asyncio.timeout(5):
            while await queue.backlog():
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await running


async def test_rate_limits_on_a_cluster_are_one_budget(client: Any) -> None:
    limiters = [RateLimiter(client, Outbox()) for _ in range(2)]
    decisions = await asyncio.gather(
        *(limiters[n % 2].hit("test", "someone", Limit(5, 60)) for n in range(9))
    )
    assert sum(d.allowed for d in decisions) == 5


@pytest.fixture
async def servers(
    tmp_path: Path, backends: Backends, reset: None, client: Any, redis_cluster: RedisCluster
) -> AsyncIterator[Cluster]:
    env = server_env(
        backends, redis_url=redis_cluster.url, RATE_LIMITS_ENABLED="true",
        RATE_LIMIT_GENERAL="40/hour",
    )  # fmt: skip
    procs = [Server(tmp_path / f"home{i}", env) for i in range(2)]
    try:
        for server in procs:
            server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            yield Cluster(procs, http)
    finally:
        for server in procs:
            server.stop()
        for server in procs:
            log = server.output()
            assert "MovedError" not in log and "CROSSSLOT" not in log.upper(), log[-3000:]


@pytest.mark.timeout(120)
async def test_two_processes_on_a_cluster_fan_out_count_and_recover(
    servers: Cluster, catalog: Catalog, client: Any
) -> None:
    http = servers.http
    for n in range(2):
        async with http.get(f"{servers.url(n)}/readyz") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["checks"]["redis"] == "ok", body
    owner = await servers.register("owner")
    fan = await servers.register("fan", server=1)
    async with http.post(
        f"{servers.url(1)}/api/auth/login", json={"login": "owner", "password": "Passw0rd!"}
    ) as resp:
        assert resp.status == 200
    videos = [await catalog.video(owner["id"])]
    while True:
        video = await catalog.video(owner["id"])
        if node_of(client, f"video:{video}") != node_of(client, f"video:{videos[0]}"):
            videos.append(video)
            break
    sockets = [await servers.socket(n % 2) for n in range(4)]
    for sock in sockets:
        for video in videos:
            assert (await sock.subscribe(f"video:{video}"))["type"] == "subscribed"

    actor = await servers.socket(1, fan["token"])
    for video in videos:
        liked = await actor.call("like", video_id=video, action="like")
        assert liked["type"] == "ack", liked
        for n in range(4):
            posted = await servers.comment(n % 2, fan["token"], video, f"{video} {n}")
            assert posted.status == 201
        async with http.post(
            f"{servers.url(0)}/api/videos/{video}/view", json={"watch_time_seconds": 3}
        ) as resp:
            assert resp.status == 200, await resp.text()
    for sock in sockets:
        seen: dict[str, list[int]] = {}
        while sum(len(v) for v in seen.values()) < 8:
            message = await sock.expect("new_comment")
            seen.setdefault(message["comment"]["content"].split()[0], []).append(message["offset"])
        assert seen == {v: [1, 2, 3, 4] for v in videos}
        for video in videos:
            await sock.until(
                lambda m, v=video: (
                    m.get("type") == "video_update"
                    and m.get("video_id") == v
                    and m["data"].get("like_count") == 1
                )
            )
    async with http.get(f"{servers.url(1)}/api/videos/{videos[1]}") as resp:
        assert (await resp.json())["view_count"] == 1

    # a socket that drops comes back on the other process with `since`
    channel = f"video:{videos[0]}"
    first = await servers.socket(0)
    epoch = (await first.subscribe(channel))["epoch"]
    await first.close()
    for n in range(3):
        await servers.comment(n % 2, fan["token"], videos[0], f"missed {n}")
    back = await servers.socket(1)
    answer = await back.subscribe(channel, since={"offset": 4, "epoch": epoch})
    assert answer["recovered"] is True
    missed = [await back.expect("new_comment") for _ in range(3)]
    assert [m["offset"] for m in missed] == [5, 6, 7]


@pytest.mark.timeout(90)
async def test_rate_limits_exact_across_processes_on_a_cluster(servers: Cluster) -> None:
    async def get(i: int) -> int:
        async with servers.http.get(f"{servers.url(i % 2)}/api/videos") as resp:
            return resp.status

    statuses = await asyncio.gather(*(get(i) for i in range(55)))
    assert statuses.count(200) == 40 and statuses.count(429) == 15


@pytest.mark.timeout(60)
async def test_a_redis_cluster_url_says_cluster_without_asking(
    tmp_path: Path, backends: Backends, reset: None, redis_cluster: RedisCluster
) -> None:
    """`redis+cluster://` names one node and says "cluster": serve starts on it and is ready."""
    url = redis_cluster.url.replace("redis://", "redis+cluster://", 1)
    server = Server(tmp_path / "home", server_env(backends, redis_url=url))
    try:
        server.wait_healthy()
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/readyz") as resp:
            body = await resp.json()
        assert resp.status == 200, body
        assert body["checks"]["redis"] == "ok"
    finally:
        server.stop()


async def test_a_dead_workers_job_is_taken_over_on_a_cluster(client: Any) -> None:
    """A worker that claimed a job and died (no ack, no heartbeat) loses it after the lease: the
    next worker's claim takes it over (XAUTOCLAIM on the queue's slot), and its presence lapses."""
    queue = JobQueue(client, Outbox(), lease=1)
    await queue.ensure_group()
    await queue.enqueue("video", "orphan")
    await queue.beat("doomed")
    (job,) = await queue.claim("doomed", 1, 100)  # then "doomed" is killed: nothing more
    assert await queue.claim("heir", 1, 100) == []  # its lease still runs
    await asyncio.sleep(1.3)
    taken = await queue.claim("heir", 1, 100)
    assert [(j.target, j.kind) for j in taken] == [(job.target, job.kind)]
    assert await queue.live_workers() == 0  # the dead one's presence lapsed too
    await queue.ack(taken[0])
    assert await queue.backlog() == 0


async def test_a_dead_processes_viewers_lapse_on_a_cluster(client: Any) -> None:
    """Presence heals: a process that stops reporting (killed) drops out of the total after its
    share's time to live, while the live one keeps its share."""
    channel, _ = channels_on_two_shards(client)
    alive, dead = Presence(client, "alive", 1), Presence(client, "dead", 1)
    assert await alive.report({channel: 2}) == {channel: 2}
    assert await dead.report({channel: 5}) == {channel: 7}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        await alive.report({channel: 2})  # the live process refreshes its share
        if await alive.total(channel) == 2:
            break
        await asyncio.sleep(0.2)
    assert await alive.total(channel) == 2
