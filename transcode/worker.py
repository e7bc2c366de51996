"""The worker: a pool of concurrent jobs fed from the durable queue.

It knows the mechanics only. What a job of each kind does, what failing it means and what runs
periodically are handed to it by the composition root (`reelwire.resources.build_worker`), the
way arq's `WorkerSettings.functions` and `cron_jobs` are: `Worker(ctx, queue, functions={"video":
JobFunctions(...), ...}, periodic=[Periodic(...)], ...)`. `ctx` is passed to every function as
it is.

It claims only as many jobs as it has free slots, keeps the lease on the ones it runs, retries
transient failures with exponential backoff (an FFmpeg killed by a signal is one: the OOM
killer is not the video's fault), fails bad media for good, and on shutdown kills its FFmpeg
processes and marks their jobs idle so another worker takes them at once. It heartbeats its
presence, so a queue with no live worker can say so. At start, and on every janitor pass, it
removes the scratch directories of jobs that died with their worker; the janitor also runs the
periodic tasks that are due.

Every job ends: a transient failure is retried MAX_ATTEMPTS times in all, and a job whose
worker dies under it is given up after the queue's `max_deliveries`, each with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import redis.exceptions

from pubsub.outbox import REDIS_DOWN
from reelwire import telemetry
from transcode import scratch
from transcode.failures import PermanentFailure, TransientFailure
from transcode.queue import Job, JobQueue

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
BACKOFF_SECONDS = (5.0, 20.0, 80.0)


Ctx = TypeVar("Ctx")


def retry_delay(attempt: int) -> float:
    """Seconds before the attempt after `attempt` (1-based): 5, 20, 80."""
    return BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)]


@dataclass(frozen=True)
class JobFunctions(Generic[Ctx]):
    """What the worker does with a job of one kind.

    `run(ctx, target)` does the work (raising PermanentFailure for bad media, anything else
    to be retried); `fail(ctx, target, reason)` records that the job ended without success;
    `retrying(ctx, target, reason)`, when given, records that it waits for another attempt.
    """

    run: Callable[[Ctx, str], Awaitable[None]]
    fail: Callable[[Ctx, str, str], Awaitable[None]]
    retrying: Callable[[Ctx, str, str], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Periodic(Generic[Ctx]):
    """A task the janitor runs at most every `every` seconds (the first time at start), or
    on every pass when `every` is 0."""

    name: str
    run: Callable[[Ctx], Awaitable[Any]]
    every: float


class Worker(Generic[Ctx]):
    """Runs jobs until cancelled."""

    def __init__(
        self,
        ctx: Ctx,
        queue: JobQueue,
        *,
        functions: Mapping[str, JobFunctions[Ctx]],
        periodic: Sequence[Periodic[Ctx]] = (),
        concurrency: int,
        scratch_root: Path,
        name: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.queue = queue
        self.functions = dict(functions)
        self.periodic = list(periodic)
        self.concurrency = concurrency
        self.scratch_root = scratch_root
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.running: dict[asyncio.Task[None], Job] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask `run` to return. Cancellation alone is not enough: a cancel that lands inside a
        blocking Redis read can be absorbed by the client's timeout-and-retry handling."""
        self._stopping.set()

    async def run(self) -> None:
        """Claim and run jobs until `stop` (or cancellation)."""
        await self.queue.ensure_group()
        await self.queue.beat(self.name)
        await self._sweep_scratch()
        logger.info("transcode worker %s: %d at a time", self.name, self.concurrency)
        helpers = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self._janitor())]
        unreachable_since: float | None = None  # one log line when the queue goes, one back
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(self.running)
                if free <= 0:
                    await asyncio.wait(
                        list(self.running), timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                try:
                    jobs = await self.queue.claim(self.name, free, block_ms=1000)
                except REDIS_DOWN as exc:  # Redis away, or a cluster failing over
                    if unreachable_since is None:
                        unreachable_since = time.monotonic()
                        logger.warning("job queue unreachable (%r); retrying every second", exc)
                    await asyncio.sleep(1.0)
                    continue
                if unreachable_since is not None:
                    logger.info(
                        "job queue reachable again after %.1f s",
                        time.monotonic() - unreachable_since,
                    )
                    unreachable_since = None
                if self._stopping.is_set():
                    await self._hand_back(jobs)
                    break
                for job in jobs:
                    task = asyncio.create_task(self._handle(job))
                    self.running[task] = job
                    task.add_done_callback(self._forget)
        finally:
            for helper in helpers:
                helper.cancel()
            await self._release_running()
            await asyncio.gather(*helpers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.queue.leave(self.name)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self.running.pop(task, None)

    async def _release_running(self) -> None:
        if not self.running:
            return
        jobs = list(self.running.values())
        for task in list(self.running):
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
        await self._hand_back(jobs)
        logger.info("worker %s released %d unfinished job(s)", self.name, len(jobs))

    async def _hand_back(self, jobs: list[Job]) -> None:
        """Mark jobs idle for a whole lease so another worker takes them now, not later."""
        if not jobs:
            return
        with contextlib.suppress(Exception):
            await self.queue.hand_back(self.name, jobs)

    async def _handle(self, job: Job) -> None:
        functions = self.functions[job.kind]
        if job.deliveries > self.queue.max_deliveries:
            reason = (
                "Processing was interrupted too many times: the worker running it stopped "
                f"{job.deliveries - 1} times without finishing"
            )
            logger.warning("%s job %s given up: %s", job.kind, job.target, reason)
            await functions.fail(self.ctx, job.target, reason)
            await self.queue.ack(job)
            return
        if job.deliveries > 1:  # taken over from a worker that died: its scratch may be left
            await self._sweep_scratch()
        started = time.perf_counter()
        seconds = telemetry.transcode_job_seconds
        try:
            await functions.run(self.ctx, job.target)
        except PermanentFailure as exc:
            seconds.labels(job.kind, "failed").observe(time.perf_counter() - started)
            logger.info("%s job %s failed: %s", job.kind, job.target, exc)
            await functions.fail(self.ctx, job.target, str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            seconds.labels(job.kind, "retried").observe(time.perf_counter() - started)
            await self._transient(job, exc)
            return
        else:
            seconds.labels(job.kind, "done").observe(time.perf_counter() - started)
        await self.queue.ack(job)

    async def _transient(self, job: Job, exc: Exception) -> None:
        logger.warning("%s job %s attempt %d failed: %r", job.kind, job.target, job.attempt, exc)
        what = str(exc) if isinstance(exc, TransientFailure) else f"A temporary failure ({exc})"
        functions = self.functions[job.kind]
        if job.attempt >= MAX_ATTEMPTS:
            reason = f"Processing failed after {job.attempt} attempts. The last: {what}"
            await functions.fail(self.ctx, job.target, reason[:500])
            await self.queue.ack(job)
            return
        delay = retry_delay(job.attempt)
        if functions.retrying is not None:
            with contextlib.suppress(Exception):
                reason = f"{what}; retrying in {delay:.0f} s"[:500]
                await functions.retrying(self.ctx, job.target, reason)
        await self.queue.retry_later(job, delay)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.queue.lease / 3)
            with contextlib.suppress(redis.exceptions.RedisError):
                await self.queue.beat(self.name)
                await self.queue.heartbeat(self.name, list(self.running.values()))

    async def _sweep_scratch(self) -> None:
        """Remove scratch directories no live job holds (see transcode.scratch)."""
        try:
            await asyncio.to_thread(scratch.sweep, self.scratch_root)
        except Exception:
            logger.exception("sweeping scratch directories failed")

    async def _janitor(self) -> None:
        """Sweep scratch and run the periodic tasks that are due, every pass; a pass comes
        every two leases, or sooner when a periodic task asks for it."""
        every = min([self.queue.lease * 2, *(task.every for task in self.periodic if task.every)])
        last_run: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        while True:
            await self._sweep_scratch()
            for task in self.periodic:
                if task.name in last_run and loop.time() - last_run[task.name] < task.every:
                    continue
                last_run[task.name] = loop.time()
                await self._run_periodic(task)
            await asyncio.sleep(every)

    async def _run_periodic(self, task: Periodic[Ctx]) -> None:
        try:
            await task.run(self.ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("periodic task %r failed", task.name)
