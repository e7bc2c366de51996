"""Viewer capacity: the most viewers one video can have on this machine with events still
reaching them within a latency bound, found the way the websocket-shootout benchmarks find it.

One `reelwire serve --processes P` (embedded PostgreSQL and Redis, a home of its own), then
`reelwire loadtest` against it again and again, each run a fresh crowd on the same video:
viewers ramp in over `--ramp` seconds, hold for `--duration`, one real comment a second
(through REST: stored in PostgreSQL, its event and the count it changed fanned out to every
socket). A run passes when its `--slo` holds (default: p99 <= 250 ms, nothing lost, fewer than
0.1% failed to connect). The count doubles from `--start` until a run fails, then is bisected
to within `--precision`. Every run is printed with the machine's load average before it, the
server's and the load processes' CPU, and its p99 against the first run's (the baseline: the
same server and video with `--start` viewers, in the same run). Done for socket viewers and for
players (socket + HLS at playback pace) unless `--only` says one.

The load processes share the machine's cores with the server, PostgreSQL and Redis: the figure
is what one 2-core machine does when it both serves and simulates the crowd.

    scripts/bench_viewers                  # both kinds, about 20 minutes
    scripts/bench_viewers --only socket --start 5000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.benchlib import free_port, stop, wait_listening  # noqa: E402

REELWIRE = str(Path(sys.executable).with_name("reelwire"))


def start_server(home: Path, port: int, processes: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REELWIRE_HOME": str(home),
        "PORT": str(port),
        # every viewer comes from this machine: no per-address cap, no rate limits; a run
        # acts as its users for longer than the default access token lasts
        "WS_MAX_SOCKETS_PER_ADDRESS": "0",
        "RATE_LIMITS_ENABLED": "false",
        "ACCESS_TOKEN_EXPIRE_MINUTES": "120",
    }
    log = (home / "serve.log").open("ab")
    proc = subprocess.Popen(
        [REELWIRE, "serve", "--processes", str(processes)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_listening(proc, port, "reelwire serve", timeout=120, ready_path="/readyz")
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: see {log.name}") from None
    return proc


def one_run(
    args: argparse.Namespace, url: str, kind: str, viewers: int, video: str | None, scratch: Path
) -> dict[str, Any]:
    """One load test; its summary, plus the machine's load and the verdict."""
    workers = args.workers or (2 if viewers <= 20_000 else 3)
    sources = max(1, -(-viewers // 20_000))  # 20,000 sockets per loopback address at most
    out = scratch / f"{kind}-{viewers}.json"
    argv = [
        REELWIRE, "loadtest", "--url", url, "--viewer", kind, "--viewers", str(viewers),
        "--workers", str(workers), "--ramp", str(args.ramp), "--duration", str(args.duration),
        "--comments-per-s", "1", "--slo", args.slo, "--json", str(out),
        "--source-addresses", f"127.0.0.2-127.0.0.{1 + sources}",
    ]  # fmt: skip
    if video:
        argv += ["--video", video]
    load = os.getloadavg()[0]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=args.ramp + args.duration + 600
    )
    if done.returncode not in (0, 1) or not out.exists():
        raise RuntimeError(f"loadtest exited with {done.returncode}: {done.stderr[-2000:]}")
    run = json.loads(out.read_text())
    summary = run["summary"]
    return {
        "viewer": kind,
        "viewers": viewers,
        "workers": workers,
        "passed": run["slo"]["verdict"] == "pass",
        "connected": summary["connected"],
        "failed": summary["failed"],
        "lost": summary["lost"],
        "p50_ms": summary["latency_ms"]["p50"],
        "p99_ms": summary["latency_ms"]["p99"],
        "messages_per_second": summary["messages_per_second"],
        "server_cpu_percent": (summary.get("server") or {}).get("cpu_percent_mean"),
        "loader_cpu_percent": summary["loader_cpu"]["cpu_percent_mean"],
        "loader_lag_p99_ms": summary["loader_lag_ms"]["p99"],
        "ttfb_p95_ms": (summary.get("segment_ttfb_ms") or {}).get("p95"),
        "stalls": summary.get("stalls"),
        "load_before": load,
        "video": summary["video_ids"][0],
    }


def search(args: argparse.Namespace, url: str, kind: str, scratch: Path) -> dict[str, Any]:
    """Double from --start until a run fails, then bisect; every run, and the largest pass."""
    runs: list[dict[str, Any]] = []
    video = args.video

    def measure(n: int) -> bool:
        nonlocal video
        result = one_run(args, url, kind, n, video, scratch)
        video = video or result["video"]
        baseline = runs[0]["p99_ms"] if runs else result["p99_ms"]
        result["p99_vs_baseline"] = round(result["p99_ms"] / max(baseline, 1e-9), 2)
        runs.append(result)
        print(line(result), flush=True)
        time.sleep(5)  # the sockets of the last run closed, the server settled
        return bool(result["passed"])

    low, high = 0, None
    n = args.start
    while high is None and n <= args.max:
        if measure(n):
            low, n = n, n * 2
        else:
            high = n
    if high is not None and low == 0:  # even the first count failed: halve down
        while high > args.precision and not measure(high // 2):
            high //= 2
        low = high // 2 if runs[-1]["passed"] else 0
    while high is not None and low and high - low > max(args.precision, low // 10):
        middle = (low + high) // 2 // 100 * 100 or (low + high) // 2
        if measure(middle):
            low = middle
        else:
            high = middle
    return {"viewer": kind, "largest_passing": low or None, "first_failing": high, "runs": runs}


def line(r: dict[str, Any]) -> str:
    verdict = "pass" if r["passed"] else "FAIL"
    server = "?" if r["server_cpu_percent"] is None else f"{r['server_cpu_percent']:.0f}%"
    extra = ""
    if r["viewer"] == "player":
        extra = f" ttfb p95 {r['ttfb_p95_ms']} ms, stalls {r['stalls']},"
    return (
        f"  {r['viewer']:<6} {r['viewers']:>6} viewers: {verdict}  p50 {r['p50_ms']} p99 "
        f"{r['p99_ms']} ms ({r['p99_vs_baseline']}x the first run's),{extra} connected "
        f"{r['connected']}, failed {r['failed']}, lost {r['lost']}, {r['messages_per_second']:,} "
        f"msg/s; server CPU {server}, load processes {r['loader_cpu_percent']:.0f}% "
        f"(late {r['loader_lag_p99_ms']} ms at p99); load average {r['load_before']:.2f} before"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["socket", "player"])
    parser.add_argument("--processes", type=int, default=3, help="web processes (3)")
    parser.add_argument(
        "--start", type=int, default=0, help="first count (socket 2500, player 250)"
    )
    parser.add_argument("--max", type=int, default=60_000)
    parser.add_argument("--precision", type=int, default=0, help="stop bisecting within this")
    parser.add_argument("--ramp", type=float, default=20)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--workers", type=int, default=0, help="load processes (2, 3 past 20,000)")
    parser.add_argument("--slo", default="p99<250ms,lost=0,failed<0.1%")
    parser.add_argument("--video", help="watch this video instead of making one")
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["socket", "player"]
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "slo": args.slo}
    with tempfile.TemporaryDirectory(prefix="reelwire-bench-viewers-") as tmp:
        scratch = Path(tmp)
        home = scratch / "home"
        home.mkdir()
        port = free_port()
        server = start_server(home, port, args.processes)
        try:
            url = f"http://127.0.0.1:{port}"
            for kind in kinds:
                start = args.start or (2500 if kind == "socket" else 250)
                precision = args.precision or (1000 if kind == "socket" else 100)
                print(
                    f"{kind} viewers on one video, `serve --processes {args.processes}`, one "
                    f"comment a second, ramp {args.ramp:.0f} s + {args.duration:.0f} s, SLO "
                    f"{args.slo}:",
                    flush=True,
                )
                step = argparse.Namespace(**{**vars(args), "start": start, "precision": precision})
                found = search(step, url, kind, scratch)
                results[kind] = found
                print(
                    f"  largest {kind} count that passed: {found['largest_passing']} "
                    f"(first failing: {found['first_failing']})",
                    flush=True,
                )
        finally:
            stop(server, group=True, timeout=60)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
