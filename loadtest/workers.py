"""Load processes: what one of them runs, how the parent starts several, and the merge.

The parent makes the plan once (users, videos, a start time a moment ahead, the schedule) and
hands each process its share: viewer n of the run belongs to process n mod N and connects at
n x ramp / viewers from the shared start, so N processes ramp together as one. `--workers 1`
runs the same code in the parent's own process; with more, each is `python -m loadtest PLAN`,
which prints a JSON line a second (its sample of that second) and a last one with its result.

Merging is exact: counts are summed, histograms are added bucket by bucket (so the percentiles
are those of every value), and seconds are aligned on the shared start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from loadtest import limits, scenarios
from loadtest.engage import Engager
from loadtest.histogram import Histogram, merged
from loadtest.players import Player, PlayerOptions, PlayStats
from loadtest.viewers import Backoff, Incident, Target, Totals, Watch, Watcher

Sample = dict[str, Any]
CONNECTS_IN_FLIGHT = 200  # first connects of one process at a time (a listen backlog is short)
STOP_SECONDS = 10.0
LAG_TICK = 0.05  # seconds between two looks at the event loop's lag
PLAY_COUNTS = (
    "plays", "started", "segments", "bytes", "http_errors", "stalls", "stalled_players",
    "stall_seconds", "switches_up", "switches_down",
)  # fmt: skip  # at the end, what is still running gets this long to finish


def make_plan(
    options: argparse.Namespace,
    *,
    videos: list[str],
    actors: list[dict[str, str]],
    sources: list[str],
    start_at: float,
) -> dict[str, Any]:
    """What every load process of a run shares (plus, per process, `index`)."""
    return {
        "options": {k: v for k, v in vars(options).items() if _plain(v)},
        "videos": videos,
        "actors": actors,
        "sources": sources,
        "start_at": start_at,
        "workers": max(1, options.workers),
        "index": 0,
    }


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list)


def share(total: int, index: int, workers: int) -> int:
    """Process `index`'s part of `total` (the parts add up to it)."""
    return total // workers + (1 if index < total % workers else 0)


# --- one load process -------------------------------------------------------------------------


@dataclass
class Second:
    """Counters as they were at the previous sample."""

    messages: int = 0
    reconnects: int = 0
    gaps_recovered: int = 0
    gaps_lost: int = 0
    stalls: int = 0
    segments: int = 0
    at: float = 0.0


@dataclass
class Run:
    """The state of one load process's run."""

    plan: dict[str, Any]
    options: argparse.Namespace
    totals: Totals = field(default_factory=Totals)
    play: PlayStats | None = None
    incident: Incident = field(default_factory=Incident)
    watchers: list[Watcher] = field(default_factory=list)
    timeline: list[Sample] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    start: float = 0.0  # monotonic time of the shared start
    cpu_at_start: float = 0.0  # this process's CPU time at the shared start
    burst: dict[str, Any] | None = None
    last: Second = field(default_factory=Second)  # counters at the previous sample
    lag: Histogram = field(default_factory=Histogram)  # ms the event loop was late
    live_at_end: int | None = None  # sockets open when the run ended (before closing them)

    def at(self) -> float:
        """Seconds since the shared start."""
        return time.monotonic() - self.start


async def run_worker(plan: dict[str, Any], on_sample: Callable[[Sample], None]) -> dict[str, Any]:
    """Run one load process's share of the plan; its result (see merge)."""
    options = argparse.Namespace(**plan["options"])
    index, workers = plan["index"], plan["workers"]
    mine = list(range(index, options.viewers, workers))
    player = options.viewer == "player"
    files = limits.ensure_files(limits.files_needed(len(mine), player), processes=workers)
    rng = random.Random(None if options.seed is None else options.seed * 1000 + index)
    run = Run(plan, options, play=PlayStats() if player else None)
    parts = urlsplit(options.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    base = f"{parts.scheme}://{parts.netloc}"
    plan_schedule = scenarios.schedule(options)
    low, high = options.reconnect_delay
    stop = asyncio.Event()
    watch = Watch(
        Target(host, port, "/ws"),
        run.totals,
        stop,
        Backoff(low, high),
        run.incident,
        rng,
        asyncio.Semaphore(CONNECTS_IN_FLIGHT),
    )
    videos, actors, sources = plan["videos"], plan["actors"], plan["sources"]
    via_ws = options.engage_via == "ws"
    view_on_start = options.view_on_start if options.view_on_start is not None else player
    acting = via_ws and (
        view_on_start
        or any(
            (
                options.views_per_s,
                options.likes_per_s,
                options.comments_per_s,
                options.likes_per_viewer_min,
                options.comments_per_viewer_min,
                options.scenario == "burst",
            )
        )
    )
    run.watchers = [
        Watcher(
            n,
            f"video:{videos[n % len(videos)]}",
            token=actors[n % len(actors)]["token"],
            authenticate=acting,
            source=sources[n % len(sources)] if sources else None,
        )
        for n in mine
    ]
    timeout = aiohttp.ClientTimeout(total=30, sock_connect=10)
    api = aiohttp.ClientSession(
        base,
        timeout=timeout,
        connector=aiohttp.TCPConnector(limit=256, local_addr=(sources[0], 0) if sources else None),
    )
    media: dict[str | None, aiohttp.ClientSession] = {}
    tasks: list[asyncio.Task[None]] = []
    engager = Engager(
        via=options.engage_via,
        http=api,
        actors=actors,
        videos=videos,
        watchers=run.watchers,
        totals=run.totals,
        rng=rng,
    )
    player_options = PlayerOptions(
        options.buffer_target,
        (options.bandwidth_kbps[0], options.bandwidth_kbps[1]) if options.bandwidth_kbps else None,
        options.abr,
    )

    def media_session(source: str | None) -> aiohttp.ClientSession:
        if source not in media:
            media[source] = aiohttp.ClientSession(
                timeout=timeout,
                connector=aiohttp.TCPConnector(limit=0, local_addr=(source, 0) if source else None),
            )
        return media[source]

    def started(watcher: Watcher) -> None:
        if view_on_start:
            engager.view_on_start(watcher)
        if run.play is not None:
            playback = Player(
                media_session(watcher.source), base, watcher.video, run.play, player_options, rng
            )
            tasks.append(asyncio.create_task(playback.run(stop)))

    # Everyone starts at the same moment, whatever each process's start-up took.
    run.start = time.monotonic() + (plan["start_at"] - time.time())
    await asyncio.sleep(max(0.0, run.start - time.monotonic()))
    run.cpu_at_start = time.process_time()
    sampler = asyncio.create_task(_sample_every_second(run, on_sample))
    tasks.append(asyncio.create_task(_measure_lag(run, stop)))
    rates = {
        "views": options.views_per_s / workers,
        "likes": options.likes_per_s / workers,
        "comments": options.comments_per_s / workers,
    }
    per_viewer = {
        "likes": options.likes_per_viewer_min,
        "comments": options.comments_per_viewer_min,
    }
    # Each process acts on its own beat, a 1/N of a period after the one before: N processes
    # at 1/N of the rate each would otherwise all act at the same moments.
    phase = index / workers
    tasks.append(asyncio.create_task(engager.run(stop, rates, per_viewer, phase=phase)))
    if plan_schedule.event is not None:
        tasks.append(
            asyncio.create_task(_event(run, plan_schedule.event, stop, rng, engager, index))
        )
    try:
        per_viewer_gap = plan_schedule.ramp / max(1, options.viewers)
        for watcher in run.watchers:
            wait = run.start + watcher.index * per_viewer_gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(watcher.run(watch, started)))
        await asyncio.sleep(max(0.0, run.start + plan_schedule.end - time.monotonic()))
    finally:
        run.live_at_end = run.totals.live
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), STOP_SECONDS)
        for task in tasks:
            task.cancel()
        await engager.finish()
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        _sample(run, on_sample)  # the last (partial) second
        engager.settle_ws()
        await api.close()
        for session in media.values():
            await session.close()
    return _result(run, engager, files, len(mine))


async def _event(
    run: Run,
    at: float,
    stop: asyncio.Event,
    rng: random.Random,
    engager: Engager,
    index: int,
) -> None:
    """The scenario's event, at `at` seconds from the start."""
    options = run.options
    await asyncio.sleep(max(0.0, run.start + at - time.monotonic()))
    if stop.is_set():
        return
    if options.scenario == "reconnect-storm":
        dropped = scenarios.drop_sockets(run.watchers, options.drop_percent, rng, run.incident)
        run.events.append(
            {"t": round(run.at(), 2), "what": f"drop {options.drop_percent:g}% of sockets",
             "count": dropped}
        )  # fmt: skip
    elif options.scenario == "restart":
        run.incident.at = time.monotonic()  # the parent signals the server now
    elif options.scenario == "burst":
        workers = run.plan["workers"]
        counts = {
            "likes": share(options.burst_likes, index, workers),
            "comments": share(options.burst_comments, index, workers),
        }
        video = run.plan["videos"][0]
        if index == 0:
            run.events.append(
                {
                    "t": round(run.at(), 2),
                    "what": f"burst: {options.burst_likes} likes, {options.burst_comments} "
                    f"comments on video {video} over {options.burst_seconds:g} s",
                }
            )
        began = run.at()
        await engager.burst(stop, video, counts, options.burst_seconds)
        run.burst = {"video": video, "began_s": round(began, 2)}


async def _measure_lag(run: Run, stop: asyncio.Event) -> None:
    """How late this process's event loop wakes up: a busy or starved load process delays
    every receipt it times, so its own lag says how far its figures can be trusted."""
    while not stop.is_set():
        asked = time.monotonic()
        await asyncio.sleep(LAG_TICK)
        run.lag.add(max(0.0, time.monotonic() - asked - LAG_TICK) * 1000)


async def _sample_every_second(run: Run, on_sample: Callable[[Sample], None]) -> None:
    second = 1
    while True:
        await asyncio.sleep(max(0.0, run.start + second - time.monotonic()))
        _sample(run, on_sample)
        # What lived through a second (sockets, their viewers) is out of the garbage
        # collector's way from now on: a full collection walking tens of thousands of sockets
        # stopped a load process for up to 2 s, late on every frame it then read. A run is
        # bounded, so a cycle kept this way costs only memory until the end.
        gc.freeze()
        second += 1


def _sample(run: Run, on_sample: Callable[[Sample], None]) -> None:
    """Close the current second: what happened in it, in the timeline and to `on_sample`."""
    totals, play = run.totals, run.play
    last = run.last
    now = run.at()
    t = len(run.timeline)
    latency, totals.second = totals.second, Histogram()
    ttfb = None
    stalls = segments = 0
    if play is not None:
        ttfb, play.ttfb_second = play.ttfb_second, Histogram()
        stalls, segments = play.stalls - last.stalls, play.segments - last.segments
    sample = {
        "t": t,
        "length": round(max(1e-3, now - last.at), 3),
        "live": totals.live if run.live_at_end is None else run.live_at_end,
        "connected": totals.connected,
        "failed": totals.failed,
        "messages": totals.messages - last.messages,
        "reconnects": totals.reconnects - last.reconnects,
        "gaps_recovered": totals.gaps_recovered - last.gaps_recovered,
        "gaps_lost": totals.gaps_lost - last.gaps_lost,
        "stalls": stalls,
        "segments": segments,
        "latency": latency.to_json() if latency.samples else None,
        "ttfb": ttfb.to_json() if ttfb is not None and ttfb.samples else None,
    }
    run.last = Second(
        totals.messages,
        totals.reconnects,
        totals.gaps_recovered,
        totals.gaps_lost,
        play.stalls if play else 0,
        play.segments if play else 0,
        now,
    )
    run.timeline.append(sample)
    on_sample(sample)


def _result(
    run: Run, engager: Engager, files: limits.FileLimit | None, viewers: int
) -> dict[str, Any]:
    totals, incident = run.totals, run.incident
    result: dict[str, Any] = {
        "index": run.plan["index"],
        "viewers": viewers,
        "counts": {
            "connected": totals.connected,
            "failed": totals.failed,
            "messages": totals.messages,
            "events": totals.events,
            "replayed": totals.replayed,
            "video_updates": totals.video_updates,
            "reconnects": totals.reconnects,
            "gaps_recovered": totals.gaps_recovered,
            "gaps_lost": totals.gaps_lost,
            "drops": totals.drops,
        },
        "closes": {str(k): v for k, v in totals.closes.items()},
        "latency": totals.latency.to_json(),
        "update_latency": totals.update_latency.to_json(),
        "lag": run.lag.to_json(),
        "replay_latency": totals.replay_latency.to_json(),
        "actions": engager.actions.to_json(),
        "burst": None,
        "incident": None,
        "players": None,
        "timeline": run.timeline,
        "events": run.events,
        "files": None if files is None else vars(files),
        "seconds": round(run.at(), 3),
        "cpu_s": round(time.process_time() - run.cpu_at_start, 3),
    }
    if run.burst is not None:
        book = engager.burst_actions
        took = (book.last - book.first) if book.first and book.last else None
        result["burst"] = {**run.burst, **book.to_json(), "seconds": took}
    if incident.at is not None:
        not_back = incident.affected - incident.recovered - incident.lost
        result["incident"] = {
            "at_s": round(incident.at - run.start, 3),
            "affected": incident.affected,
            "recovered": incident.recovered,
            "lost": incident.lost + not_back,
            "not_back": not_back,
            "last_recovery_s": None
            if incident.last_recovery is None
            else round(incident.last_recovery - run.start, 3),
        }
    if run.play is not None:
        play = run.play
        result["players"] = {
            "counts": {k: getattr(play, k) for k in PLAY_COUNTS},
            "rung_segments": play.rung_segments,
            "ttfb": play.ttfb.to_json(),
            "kbps": play.kbps.to_json(),
            "startup": play.startup.to_json(),
            "player_ttfb_mean": play.player_ttfb_mean.to_json(),
        }
    return result


# --- several load processes ---------------------------------------------------------------------


class WorkerFailed(Exception):
    """A load process ended without a result."""


async def spawn(
    plans: list[dict[str, Any]], on_sample: Callable[[int, Sample], None], timeout: float
) -> list[dict[str, Any]]:
    """Run each plan in a `python -m loadtest` process; their results, in order. Processes
    still running after `timeout` seconds are killed (and the run fails)."""
    with tempfile.TemporaryDirectory(prefix="reelwire-loadtest-") as scratch:
        processes = []
        for plan in plans:
            path = Path(scratch) / f"plan-{plan['index']}.json"
            path.write_bytes(orjson.dumps(plan))
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "loadtest",
                    str(path),
                    stdout=asyncio.subprocess.PIPE,
                    limit=1 << 28,
                )
            )
        try:
            async with asyncio.timeout(timeout):
                return await _gather(processes, plans, on_sample)
        except TimeoutError:
            raise WorkerFailed(f"load processes still running after {timeout:.0f} s") from None
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def _gather(
    processes: list[asyncio.subprocess.Process],
    plans: list[dict[str, Any]],
    on_sample: Callable[[int, Sample], None],
) -> list[dict[str, Any]]:
    collected = (
        _collect(p, plan["index"], on_sample) for p, plan in zip(processes, plans, strict=True)
    )
    return list(await asyncio.gather(*collected))


async def _collect(
    process: asyncio.subprocess.Process, index: int, on_sample: Callable[[int, Sample], None]
) -> dict[str, Any]:
    assert process.stdout is not None
    result = None
    async for line in process.stdout:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:  # the process died while writing
            code = await process.wait()
            raise WorkerFailed(
                f"load process {index} exited with {code} in the middle of a line of "
                f"{len(line):,} bytes"
            ) from None
        if "sample" in message:
            on_sample(index, message["sample"])
        elif "result" in message:
            result = message["result"]
    code = await process.wait()
    if result is None:
        raise WorkerFailed(f"load process {index} exited with {code} and no result")
    return dict(result)


def worker_main(argv: list[str]) -> int:
    """`python -m loadtest PLAN`: one load process of a run (started by the parent)."""
    if len(argv) != 1:
        print(
            "usage: python -m loadtest PLAN.json (started by `reelwire loadtest`)", file=sys.stderr
        )
        return 2
    plan = json.loads(Path(argv[0]).read_text())

    def emit(sample: Sample) -> None:
        sys.stdout.buffer.write(orjson.dumps({"sample": sample}) + b"\n")
        sys.stdout.flush()

    try:
        result = run_async(run_worker(plan, emit))
    except limits.LimitError as exc:
        print(f"reelwire loadtest: {exc}", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(orjson.dumps({"result": result}) + b"\n")
    sys.stdout.flush()
    return 0


def run_async(coroutine: Any) -> Any:
    """Run on uvloop when it is there (it takes in frames faster), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


# --- the merge ------------------------------------------------------------------------------------


@dataclass
class Merged:
    """Every load process's result as one."""

    viewers: int
    counts: dict[str, int]
    closes: dict[str, int]
    latency: Histogram
    update_latency: Histogram
    lag: Histogram  # of every load process
    replay_latency: Histogram
    actions: dict[str, Any]
    burst: dict[str, Any] | None
    incident: dict[str, Any] | None
    players: dict[str, Any] | None
    seconds: list[dict[str, Any]]  # per second: summed counts and merged histograms
    events: list[dict[str, Any]]
    seconds_run: float
    cpu_s: float = 0.0  # of every load process, over the run


def merge(results: list[dict[str, Any]]) -> Merged:
    """Sum the counts, add the histograms, align the seconds."""
    counts: dict[str, int] = {}
    closes: dict[str, int] = {}
    for result in results:
        _add(counts, result["counts"])
        _add(closes, result["closes"])
    sent: dict[str, int] = {}
    done: dict[str, int] = {}
    for result in results:
        _add(sent, result["actions"]["sent"])
        _add(done, result["actions"]["done"])
    actions = {"sent": sent, "done": done, "errors": sum(r["actions"]["errors"] for r in results)}
    return Merged(
        viewers=sum(r["viewers"] for r in results),
        counts=counts,
        closes=dict(sorted(closes.items())),
        latency=merged([Histogram.from_json(r["latency"]) for r in results]),
        update_latency=merged([Histogram.from_json(r["update_latency"]) for r in results]),
        lag=merged([Histogram.from_json(r.get("lag")) for r in results]),
        replay_latency=merged([Histogram.from_json(r.get("replay_latency")) for r in results]),
        actions=actions,
        burst=_merge_burst([r["burst"] for r in results if r["burst"]]),
        incident=_merge_incident([r["incident"] for r in results if r["incident"]]),
        players=_merge_players([r["players"] for r in results if r["players"]]),
        seconds=merge_seconds([r["timeline"] for r in results]),
        events=_merge_events([e for r in results for e in r["events"]]),
        seconds_run=max((r["seconds"] for r in results), default=0.0),
        cpu_s=sum(r.get("cpu_s", 0.0) for r in results),
    )


def merge_seconds(timelines: list[list[Sample]]) -> list[dict[str, Any]]:
    """One entry per second: counts summed; `live` summed over the processes (each one's last
    known value where it has no sample for that second); histograms added."""
    last = max((len(t) for t in timelines), default=0)
    out = []
    for t in range(last):
        entry: dict[str, Any] = dict.fromkeys(
            ("live", "connected", "failed", "messages", "reconnects", "gaps_recovered",
             "gaps_lost", "stalls", "segments"), 0
        )  # fmt: skip
        entry["t"] = t
        length = 0.0
        latency, ttfb = Histogram(), Histogram()
        for timeline in timelines:
            if not timeline:
                continue
            sample = timeline[min(t, len(timeline) - 1)]
            for key in ("live", "connected", "failed"):
                entry[key] += sample[key]
            if t >= len(timeline):
                continue
            for key in ("messages", "reconnects", "gaps_recovered", "gaps_lost", "stalls",
                        "segments"):  # fmt: skip
                entry[key] += sample[key]
            length = max(length, sample["length"])
            latency.merge(Histogram.from_json(sample["latency"]))
            ttfb.merge(Histogram.from_json(sample["ttfb"]))
        entry["length"] = length or 1.0
        entry["latency"] = latency
        entry["ttfb"] = ttfb
        out.append(entry)
    return out


def _add(into: dict[str, int], values: dict[str, int]) -> None:
    for key, value in values.items():
        into[key] = into.get(key, 0) + value


def _merge_burst(bursts: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not bursts:
        return None
    sent: dict[str, int] = {}
    done: dict[str, int] = {}
    for burst in bursts:
        _add(sent, burst["sent"])
        _add(done, burst["done"])
    took = [b["seconds"] for b in bursts if b["seconds"] is not None]
    return {
        "video": bursts[0]["video"],
        "began_s": min(b["began_s"] for b in bursts),
        "sent": sent,
        "done": done,
        "errors": sum(b["errors"] for b in bursts),
        "seconds": round(max(took), 2) if took else None,
    }


def _merge_incident(incidents: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not incidents:
        return None
    at = min(i["at_s"] for i in incidents)
    out = {k: sum(i[k] for i in incidents) for k in ("affected", "recovered", "lost", "not_back")}
    ends = [i["last_recovery_s"] for i in incidents if i["last_recovery_s"] is not None]
    complete = out["affected"] > 0 and out["recovered"] == out["affected"]
    return {
        "at_s": at,
        **out,
        "recovery_s": round(max(ends) - at, 3) if complete and ends else None,
    }


def _merge_players(players: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not players:
        return None
    counts: dict[str, Any] = {}
    rungs: dict[str, int] = {}
    for player in players:
        _add(counts, player["counts"])
        _add(rungs, player["rung_segments"])
    stats = PlayStats(**counts, rung_segments=rungs)
    for name in ("ttfb", "kbps", "startup", "player_ttfb_mean"):
        setattr(stats, name, merged([Histogram.from_json(p[name]) for p in players]))
    return {"stats": stats}


def _merge_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events of the same kind from several processes: the first time, counts summed."""
    by_what: dict[str, dict[str, Any]] = {}
    for event in events:
        seen = by_what.get(event["what"])
        if seen is None:
            by_what[event["what"]] = dict(event)
            continue
        seen["t"] = min(seen["t"], event["t"])
        if "count" in event:
            seen["count"] = seen.get("count", 0) + event["count"]
    return sorted(by_what.values(), key=lambda e: e["t"])


def files_check(options: argparse.Namespace) -> limits.FileLimit | None:
    """In the parent, before anything starts: can each load process open its sockets?"""
    workers = max(1, options.workers)
    per_process = math.ceil(options.viewers / workers)
    needed = limits.files_needed(per_process, options.viewer == "player")
    return limits.ensure_files(needed, processes=workers)


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
