"""`reelwire loadtest`: its options, and a run from start to verdict.

The parent process checks the options and what the machine allows, makes the users and videos,
starts the load processes (itself when `--workers 1`), scrapes the server's /metrics once a
second, does the scenario's server-side event (a restart), merges the results and prints the
summary with the SLO verdict. Exit status: 0 when the run passed (no viewer failed to connect,
or every --slo threshold held), 1 when not, 2 when it could not run as asked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from loadtest import limits, prepare, results, scenarios, slo, workers
from loadtest.progress import Progress
from loadtest.scrape import Scraper

LOCAL_HOSTS = ("localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`reelwire loadtest` options."""
    add = parser.add_argument
    add(
        "--url",
        default="http://127.0.0.1:8080",
        help="the server to load; this machine only (127.x.x.x, ::1 or localhost)",
    )
    add(
        "--scenario",
        default="steady",
        choices=scenarios.SCENARIOS,
        metavar="NAME",
        help="steady, ramp, burst (likes and comments on one video), reconnect-storm (drop "
        "--drop-percent of the sockets at once) or restart (SIGTERM a server process)",
    )
    add("--viewers", type=int, default=1000, help="WebSocket viewers to connect in all")
    add(
        "--viewer",
        default="socket",
        choices=("socket", "player"),
        metavar="KIND",
        help="socket: a subscribed socket only; player: also plays the video's HLS at "
        "playback pace (segment TTFB, throughput, stalls)",
    )
    add(
        "--videos",
        type=int,
        default=1,
        help="videos to spread the viewers over (a generated clip is uploaded for each)",
    )
    add(
        "--video",
        action="append",
        default=[],
        metavar="ID",
        help="watch this existing video instead of uploading; repeat for several",
    )
    add("--clip-seconds", type=float, default=60.0, help="length of the generated test video")
    add(
        "--clip-height",
        type=int,
        default=480,
        help="height of the generated test video (480: a 360p and a 480p rung)",
    )
    add("--ramp", type=float, default=10.0, help="seconds over which the viewers connect")
    add("--duration", type=float, default=30.0, help="seconds to keep everyone after the ramp")
    add(
        "--event-at",
        type=float,
        metavar="SECONDS",
        help="when the burst, storm or restart happens, in seconds after the ramp; "
        "a third of --duration when not given",
    )
    add(
        "--drop-percent",
        type=float,
        default=20.0,
        help="reconnect-storm: share of the live sockets cut at once",
    )
    add(
        "--reconnect-delay",
        default="1-5",
        metavar="SECONDS",
        help="LOW-HIGH: a dropped viewer reconnects after a random delay in this range "
        "(doubled after each failed attempt)",
    )
    add(
        "--restart-pid",
        type=int,
        metavar="PID",
        help="restart: the `reelwire serve` web process to SIGTERM (a child of "
        "`serve --processes N`, which its supervisor replaces)",
    )
    add(
        "--restart-cmd",
        metavar="CMD",
        help="restart: a command that restarts the server (run at the event, at most 60 s)",
    )
    add("--burst-likes", type=int, default=500, help="burst: likes (and removals) sent")
    add("--burst-comments", type=int, default=200, help="burst: comments posted")
    add("--burst-seconds", type=float, default=5.0, help="burst: seconds the burst is spread over")
    add("--views-per-s", type=float, default=0.0, help="views sent per second, in all")
    add("--likes-per-s", type=float, default=0.0, help="likes sent per second, in all")
    add("--comments-per-s", type=float, default=0.0, help="comments posted per second, in all")
    add(
        "--likes-per-viewer-min",
        type=float,
        default=0.0,
        metavar="RATE",
        help="likes each connected viewer sends per minute",
    )
    add(
        "--comments-per-viewer-min",
        type=float,
        default=0.0,
        metavar="RATE",
        help="comments each connected viewer posts per minute",
    )
    add(
        "--view-on-start",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="each viewer counts a view of its video when it starts; player viewers do "
        "unless told not to",
    )
    add(
        "--engage-via",
        default="rest",
        choices=("rest", "ws"),
        metavar="HOW",
        help="rest: views, likes and comments over REST; ws: as commands on each viewer's own "
        "(then authenticated) socket",
    )
    add(
        "--actors",
        type=int,
        default=20,
        help="registered users the viewers and their actions are spread over",
    )
    add(
        "--buffer-target",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="player: media kept buffered ahead of the playhead (hls.js: 30)",
    )
    add(
        "--bandwidth-kbps",
        metavar="KBPS",
        help="player: simulated bandwidth (LOW-HIGH: each player draws one), which picks "
        "the rung; without it players start on the lowest",
    )
    add(
        "--abr",
        action="store_true",
        help="player: switch rungs by measured throughput (capped by --bandwidth-kbps)",
    )
    add(
        "--workers",
        type=int,
        default=1,
        help="load processes sharing the viewers (each one core's worth of sockets)",
    )
    add(
        "--source-addresses",
        metavar="RANGE",
        help="spread client sockets over loopback source addresses: 127.0.0.2-127.0.0.9, "
        "a list, or a count (8: 127.0.0.1-127.0.0.8); one address has ~28k ports",
    )
    add(
        "--slo",
        metavar="THRESHOLDS",
        help="e.g. 'p99<250ms,lost=0,failed<0.1%%': exit 1 when one is breached (metrics: "
        f"{', '.join(slo.METRICS)})",
    )
    add("--metrics-token", metavar="TOKEN", help="METRICS_TOKEN of the server, for /metrics")
    add("--seed", type=int, help="seed of the random choices (which sockets drop, ...)")
    add("--json", metavar="PATH", help="write the whole run (summary, timeline, ...) as JSON")
    add("--report", metavar="PATH", help="write an HTML report of the run")


class UsageError(Exception):
    """Options that cannot run; the message says why."""


def check(args: argparse.Namespace) -> list[str]:
    """Validate and normalise the options in place; the source addresses to use."""
    parts = urlsplit(args.url)
    host = parts.hostname or ""
    if not (host.startswith("127.") or host in LOCAL_HOSTS):
        raise UsageError("only this machine may be loaded: 127.x.x.x, ::1 or localhost")
    if args.viewers < 1 or args.workers < 1 or args.workers > args.viewers:
        raise UsageError("--viewers and --workers are at least 1, and workers <= viewers")
    args.reconnect_delay = _range(args.reconnect_delay, "--reconnect-delay")
    args.bandwidth_kbps = (
        _range(args.bandwidth_kbps, "--bandwidth-kbps") if args.bandwidth_kbps else None
    )
    problems = scenarios.problems(args)
    if args.slo:
        try:
            wanted = slo.needs(slo.parse(args.slo))
        except ValueError as exc:
            raise UsageError(f"--slo: {exc}") from None
        if "player" in wanted and args.viewer != "player":
            problems.append("--slo names player figures (ttfb, stalls, ...): use --viewer player")
        if "incident" in wanted and args.scenario not in scenarios.WITH_INCIDENT:
            problems.append("--slo recovery_s needs --scenario reconnect-storm or restart")
    if (args.abr or args.bandwidth_kbps) and args.viewer != "player":
        problems.append("--abr and --bandwidth-kbps are for --viewer player")
    if problems:
        raise UsageError("; ".join(problems))
    sources = limits.source_addresses(args.source_addresses, host)
    player = args.viewer == "player"
    limits.check_ports(args.viewers * (2 if player else 1), len(sources))
    limit = workers.files_check(args)
    if limit is not None and limit.raised_from is not None:
        prepare.say(f"raised the open-files limit from {limit.raised_from} to {limit.soft}")
    return sources


def _range(text: str, name: str) -> list[float]:
    try:
        low, _, high = str(text).partition("-")
        pair = [float(low), float(high or low)]
    except ValueError:
        raise UsageError(f"{name}: write LOW-HIGH (or one number)") from None
    if pair[0] < 0 or pair[1] < pair[0]:
        raise UsageError(f"{name}: LOW-HIGH with 0 <= LOW <= HIGH")
    return pair


def run(args: argparse.Namespace) -> int:
    """Entry point of `reelwire loadtest`."""
    try:
        sources = check(args)
        thresholds = slo.parse(args.slo) if args.slo else []
    except (UsageError, limits.LimitError) as exc:
        print(f"reelwire loadtest: {exc}", file=sys.stderr)
        return 2
    try:
        record = workers.run_async(_load(args, sources))
    except (prepare.PrepareError, workers.WorkerFailed, limits.LimitError) as exc:
        print(f"\nreelwire loadtest: {exc}", file=sys.stderr)
        return 2
    except aiohttp.ClientConnectionError as exc:  # before any viewer: nothing to report
        print(f"\nreelwire loadtest: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    record["slo"] = slo.evaluate(thresholds, record["summary"])
    for warning in (
        results.ramp_warning(record["summary"]),
        results.lag_warning(record["summary"]),
    ):
        if warning:
            print(f"reelwire loadtest: warning: {warning}", file=sys.stderr)
    print(json.dumps({**record["summary"], "slo": record["slo"]}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    if args.report:
        _report(Path(args.report), record)
    verdict = record["slo"]["verdict"]
    if verdict != "none":
        print(f"SLO: {verdict}", file=sys.stderr)
        for line in slo.verdict_lines(record["slo"]):
            print(line, file=sys.stderr)
        return 0 if verdict == "pass" else 1
    return 0 if record["summary"]["failed"] == 0 else 1


def _report(path: Path, record: dict[str, Any]) -> None:
    try:
        from loadtest import report  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        print("reelwire loadtest: no report writer (loadtest/report.py) yet; skipped --report",
              file=sys.stderr)  # fmt: skip
        return
    try:
        report.write_report(path, record)
    except Exception as exc:  # the run's figures and exit status stand without it
        print(f"reelwire loadtest: the report failed: {exc!r}", file=sys.stderr)
        return
    print(f"reelwire loadtest: report written to {path}", file=sys.stderr)


async def _load(args: argparse.Namespace, sources: list[str]) -> dict[str, Any]:
    parts = urlsplit(args.url)
    base = f"{parts.scheme}://{parts.netloc}"
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        base, timeout=timeout, connector=aiohttp.TCPConnector(limit=16)
    ) as http:
        actors = await prepare.register_actors(http, args.actors)
        videos = list(args.video) or await prepare.upload_videos(
            http, actors[0], args.videos, seconds=args.clip_seconds, height=args.clip_height
        )
        prepare.say(
            f"{args.viewers} {args.viewer} viewer(s) over {len(videos)} video(s), "
            f"{args.workers} load process(es), scenario {args.scenario}"
        )
        count = max(1, args.workers)
        start_at = time.time() + (0.3 if count == 1 else 1.5 + 0.3 * count)
        plan = workers.make_plan(
            args, videos=videos, actors=actors, sources=sources, start_at=start_at
        )
        plan["options"].pop("metrics_token", None)
        plans = [{**plan, "index": i} for i in range(count)]
        schedule = scenarios.schedule(args)
        load_before = _load_average()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        progress = Progress(args.viewers, schedule.ramp, args.viewer == "player", args.scenario)
        scraper = Scraper(http, base, args.metrics_token or os.environ.get("METRICS_TOKEN"))
        server: list[dict[str, Any] | None] = []
        events: list[dict[str, Any]] = []
        start = time.monotonic() + (start_at - time.time())
        stop = asyncio.Event()
        side = [
            asyncio.create_task(_watch_server(scraper, server, progress, start, stop)),
        ]
        if args.scenario == "restart" and schedule.event is not None:
            side.append(asyncio.create_task(_restart(args, start, schedule.event, events)))
        try:
            if count == 1:
                found = [await workers.run_worker(plans[0], lambda s: progress.add(0, s))]
            else:
                limit = start_at - time.time() + schedule.end + workers.STOP_SECONDS + 60
                found = await workers.spawn(plans, progress.add, limit)
        finally:
            stop.set()
            for task in side[1:]:
                task.cancel()  # a restart not done yet: the run ended first
            for task in side:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            progress.done()
    merged = workers.merge(found)
    merged.events = sorted(
        [*merged.events, *events, {"t": round(schedule.ramp, 2), "what": "ramp done"}],
        key=lambda e: e["t"],
    )
    summary = results.summary(
        args, merged, videos=videos, server=server, server_problem=scraper.problem
    )
    return {
        "scenario": args.scenario,
        "started_at": started_at,
        "machine": {
            "cores": workers.cores(),
            "load_before": load_before,
            "load_after": _load_average(),
        },
        "options": results.options_of(args),
        "summary": summary,
        "slo": {"thresholds": [], "verdict": "none"},
        "timeline": results.timeline(merged, server, args.viewer == "player"),
        "latency_histogram": merged.latency.report_buckets(),
        "events": merged.events,
    }


async def _watch_server(
    scraper: Scraper,
    server: list[dict[str, Any] | None],
    progress: Progress,
    start: float,
    stop: asyncio.Event,
) -> None:
    """Scrape /metrics at the start and then at the end of every second of the run; the
    progress line is drawn on the same beat."""
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    await scraper.sample()  # the baseline the first second's CPU is measured from
    second = 1
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, start + second - time.monotonic()))
        if stop.is_set():
            break
        sample = await scraper.sample()
        # A slow scrape fills the seconds it took with nothing, and the next one is on time.
        now = int(time.monotonic() - start)
        while len(server) < now - 1:
            server.append(None)
        server.append(sample)
        progress.server = sample
        progress.show(time.monotonic() - start)
        second = max(second + 1, len(server) + 1)


async def _restart(
    args: argparse.Namespace, start: float, at: float, events: list[dict[str, Any]]
) -> None:
    await asyncio.sleep(max(0.0, start + at - time.monotonic()))
    what = await scenarios.restart_server(args)
    events.append({"t": round(at, 2), "what": what})
    prepare.say(what)


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
