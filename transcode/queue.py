"""A durable job queue on a Redis stream with a consumer group.

At-least-once: a job stays pending until a worker acks it. A worker refreshes the lease of the
jobs it runs (XCLAIM to itself resets their idle time); when a worker dies its jobs go idle and
another worker takes them over with XAUTOCLAIM after `lease` seconds. Retries with backoff go
through a sorted set of due times. Each delivery is counted, so a job that keeps killing its
worker is given up after `max_deliveries` (a job handed back by a worker that shuts down
cleanly is not counted against it).

Every worker also says it is alive: a sorted set holds each worker's name scored by when its
presence expires (a lease after its last heartbeat), so anyone can count the live workers in one
round trip, and a job with nobody to take it can say so.

An upload accepted while Redis is away is in PostgreSQL already; its job waits in the process's
outbox and joins the stream when Redis answers (and the worker's janitor re-queues any video left
untouched for ten leases, should that process die first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions

from pubsub import keys
from pubsub.cluster import is_cluster
from pubsub.outbox import Outbox

# Live transcode workers: member = worker name, score = when its presence lapses (epoch s).
WORKERS = keys.TRANSCODE_WORKERS

# Move due retries into the stream atomically, so two workers never both promote one retry.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, job in ipairs(due) do
  redis.call('ZREM', KEYS[1], job)
  redis.call('XADD', KEYS[2], '*', 'job', job)
end
return #due
"""


@dataclass(frozen=True)
class Job:
    """One unit of work: `kind` is "video" or "image", `target` the row id."""

    kind: str
    target: str
    attempt: int
    message_id: str = ""
    deliveries: int = 1

    def encode(self) -> bytes:
        """The stream payload."""
        return orjson.dumps({"kind": self.kind, "target": self.target, "attempt": self.attempt})


class JobQueue:
    """The transcode queue."""

    def __init__(
        self,
        redis: aioredis.Redis,
        outbox: Outbox,
        *,
        lease: float = 60.0,
        max_deliveries: int = 5,
    ):
        self.redis = redis
        self.outbox = outbox
        self.lease = lease
        self.max_deliveries = max_deliveries
        # One hash slot on a cluster (the promote script and the transactions use several).
        self.keys = keys.transcode_keys(is_cluster(redis))
        self._promote = redis.register_script(_PROMOTE)

    async def ensure_group(self) -> None:
        """Create the stream and consumer group (idempotent)."""
        try:
            await self.redis.xgroup_create(
                self.keys.stream, keys.TRANSCODE_GROUP, id="0", mkstream=True
            )
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, kind: str, target: str, *, attempt: int = 1, delay: float = 0) -> None:
        """Add a job, now or after `delay` seconds."""
        payload = Job(kind, target, attempt).encode()
        if delay > 0:
            due = time.time() + delay
            await self.outbox.run(lambda: self.redis.zadd(self.keys.delayed, {payload: due}))
        else:
            await self.outbox.run(lambda: self.redis.xadd(self.keys.stream, {"job": payload}))

    async def claim(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        """Up to `count` jobs: due retries, then jobs of dead workers, then new ones."""
        await self._promote(keys=[self.keys.delayed, self.keys.stream], args=[time.time()])
        claimed: Any = await self.redis.xautoclaim(
            self.keys.stream,
            keys.TRANSCODE_GROUP,
            consumer,
            min_idle_time=int(self.lease * 1000),
            start_id="0-0",
            count=count,
        )
        entries = list(claimed[1])
        if len(entries) < count:
            response: Any = await self.redis.xreadgroup(
                keys.TRANSCODE_GROUP,
                consumer,
                {self.keys.stream: ">"},
                count=count - len(entries),
                block=block_ms if not entries else None,
            )
            for _, messages in response or []:
                entries.extend(messages)
        jobs = []
        for message_id, fields in entries:
            if not fields:  # deleted while pending
                await self.redis.xack(self.keys.stream, keys.TRANSCODE_GROUP, message_id)
                continue
            jobs.append(await self._decode(message_id, fields))
        return jobs

    async def heartbeat(self, consumer: str, jobs: list[Job]) -> None:
        """Keep the lease on running jobs (resets their idle time)."""
        if jobs:
            await self.redis.xclaim(
                self.keys.stream,
                keys.TRANSCODE_GROUP,
                consumer,
                min_idle_time=0,
                message_ids=[j.message_id for j in jobs],
                justid=True,
            )

    async def hand_back(self, consumer: str, jobs: list[Job]) -> None:
        """Jobs this worker will not finish (it is shutting down): idle for a whole lease, so
        another worker takes them now, and this delivery not counted as an interruption."""
        if not jobs:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xclaim(
                self.keys.stream,
                keys.TRANSCODE_GROUP,
                consumer,
                min_idle_time=0,
                message_ids=[j.message_id for j in jobs],
                idle=int(self.lease * 1000),
                justid=True,
            )
            for job in jobs:
                pipe.hincrby(self.keys.deliveries, job.message_id, -1)
            await pipe.execute()

    async def beat(self, consumer: str) -> None:
        """This worker is alive for another lease."""
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.workers, {consumer: now + self.lease})
            pipe.zremrangebyscore(self.keys.workers, "-inf", now)
            await pipe.execute()

    async def leave(self, consumer: str) -> None:
        """This worker stops (cleanly)."""
        await self.redis.zrem(self.keys.workers, consumer)

    async def live_workers(self) -> int:
        """How many workers have heartbeated within their lease."""
        return int(await self.redis.zcount(self.keys.workers, f"({time.time()}", "+inf"))

    async def backlog(self) -> int:
        """Jobs not finished yet: queued, running, or waiting for a retry."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.keys.stream)
            pipe.zcard(self.keys.delayed)
            queued, delayed = await pipe.execute()
        return int(queued) + int(delayed)

    async def oldest_age(self) -> float:
        """Seconds since the oldest job still in the stream was queued (0 when none is)."""
        oldest = await self.redis.xrange(self.keys.stream, count=1)
        if not oldest:
            return 0.0
        first_id = oldest[0][0]
        first_id = first_id.decode() if isinstance(first_id, bytes) else str(first_id)
        return max(0.0, time.time() - int(first_id.split("-", 1)[0]) / 1000)

    async def ack(self, job: Job) -> None:
        """The job is done (successfully or for good)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.stream, keys.TRANSCODE_GROUP, job.message_id)
            pipe.xdel(self.keys.stream, job.message_id)
            pipe.hdel(self.keys.deliveries, job.message_id)
            await pipe.execute()

    async def retry_later(self, job: Job, delay: float) -> None:
        """Ack this delivery and schedule the next attempt."""
        await self.enqueue(job.kind, job.target, attempt=job.attempt + 1, delay=delay)
        await self.ack(job)

    async def _decode(self, message_id: Any, fields: dict[Any, Any]) -> Job:
        message_id = message_id.decode() if isinstance(message_id, bytes) else str(message_id)
        data = orjson.loads(fields.get(b"job") or fields.get("job") or b"{}")
        deliveries = int(await self.redis.hincrby(self.keys.deliveries, message_id, 1))
        return Job(
            data["kind"], data["target"], int(data.get("attempt", 1)), message_id, deliveries
        )
