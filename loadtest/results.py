"""The run as the JSON summary, the `--json` file and the report see it.

    run = {scenario, started_at, machine {cores, load_before, load_after}, options,
           summary {...}, slo {thresholds, verdict}, timeline [...], latency_histogram
           {bounds_ms, counts}, events [{t, what}]}

`summary` is flat figures (latency in ms as p50/p95/p99/max/mean/count); `timeline` has one
entry per second of the run (t = seconds since the viewers started connecting), with the
server's CPU, memory, sockets and queue depth scraped from its /metrics at that second.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from loadtest import scenarios, scrape
from loadtest.histogram import Histogram
from loadtest.workers import Merged

LAG_WARNING_MS = 50.0


def summary(
    options: argparse.Namespace,
    merged: Merged,
    *,
    videos: list[str],
    server: list[dict[str, Any] | None],
    server_problem: str | None,
) -> dict[str, Any]:
    """The flat summary of a run."""
    counts = merged.counts
    elapsed = max(merged.seconds_run, 1e-9)
    incident = merged.incident
    players = merged.players["stats"] if merged.players else None
    out: dict[str, Any] = {
        "scenario": options.scenario,
        "viewer": options.viewer,
        "viewers": options.viewers,
        "videos": len(videos),
        "video_ids": videos[:20],
        "workers": max(1, options.workers),
        "connected": counts.get("connected", 0),
        # the most open at once (a ramp the load processes could not keep up with ends with
        # its last viewers connecting as the run stops: counted above, never watched together)
        "live_peak": max((second["live"] for second in merged.seconds), default=0),
        "failed": counts.get("failed", 0),
        "messages": counts.get("messages", 0),
        "events": counts.get("events", 0),
        "video_updates": counts.get("video_updates", 0),
        "messages_per_second": round(counts.get("messages", 0) / elapsed),
        "latency_ms": merged.latency.summary(),
        "replayed": counts.get("replayed", 0),
        "replay_latency_ms": merged.replay_latency.summary(),
        "video_update_latency_ms": merged.update_latency.summary(),
        "reconnects": counts.get("reconnects", 0),
        "gaps_recovered": counts.get("gaps_recovered", 0),
        "gaps_lost": counts.get("gaps_lost", 0),
        "lost": counts.get("gaps_lost", 0) + (incident["not_back"] if incident else 0),
        "server_closes": merged.closes,
        "dropped": counts.get("drops", 0),
        "actions": _actions(options, merged.actions),
        "segment_ttfb_ms": players.ttfb.summary() if players else None,
        "stalls": players.stalls if players else None,
        "players": players.summary() if players else None,
        "incident": incident,
        "burst": merged.burst,
        "server": scrape.summarise(server),
        "loader_lag_ms": merged.lag.summary(),
        "loader_cpu": _loader_cpu(merged, counts.get("messages", 0)),
        "seconds": round(merged.seconds_run, 1),
    }
    if server_problem and out["server"] is None:
        out["server_metrics"] = server_problem
    plan = scenarios.schedule(options)
    if options.scenario == "ramp":
        out["ramp_quarters"] = ramp_quarters(merged.seconds, options.viewers, plan.ramp)
    if plan.event is not None:
        # when it happened (a starved load process acts late), else when it was due
        event, length = plan.event, 0.0
        if merged.burst is not None:
            event = merged.burst["began_s"]
            length = (merged.burst.get("seconds") or options.burst_seconds) + 2
        elif incident is not None:
            event = incident["at_s"]
            length = incident["recovery_s"] + 1 if incident["recovery_s"] is not None else 0
        length = length or plan.end - event
        out["before_event"] = _window(merged.seconds, plan.ramp, math.floor(event))
        out["during_event"] = _window(merged.seconds, math.floor(event), event + length)
    return out


def _loader_cpu(merged: Any, messages: int) -> dict[str, Any]:
    """What the load processes themselves used: beside the server's CPU it says how much of
    the machine was left to the server, and what receiving one message costs a client here."""
    seconds = max(merged.seconds_run, 1e-9)
    return {
        "cpu_s": round(merged.cpu_s, 1),
        "cpu_percent_mean": round(100 * merged.cpu_s / seconds, 1),
        "us_per_message": round(1e6 * merged.cpu_s / messages, 1) if messages else None,
    }


def ramp_warning(summary: dict[str, Any]) -> str | None:
    """A line when fewer viewers were ever connected at once than connected in all."""
    peak, connected = summary.get("live_peak", 0), summary["connected"]
    if peak < connected:
        return (
            f"at most {peak:,} viewers were connected at once, though {connected:,} connected: "
            "the load processes opened sockets slower than the ramp asked (they lacked CPU), "
            "and the last ones connected as the run ended; use a longer --ramp"
        )
    return None


def lag_warning(summary: dict[str, Any]) -> str | None:
    """A line when the load processes were too starved for their latencies to be trusted."""
    lag = summary["loader_lag_ms"]
    if lag["count"] and lag["p99"] > LAG_WARNING_MS:
        return (
            f"the load process was late by {lag['p99']:.0f} ms at p99 (max {lag['max']:.0f} ms): "
            "it lacked CPU, and its latencies include that delay; give it a core of its own "
            "(taskset) or spread it with --workers"
        )
    return None


def _actions(options: argparse.Namespace, actions: dict[str, Any]) -> dict[str, Any]:
    sent = sum(actions["sent"].values())
    done = actions["done"]
    return {
        "via": options.engage_via,
        "sent": sent,
        "views": done.get("views", 0),
        "likes": done.get("likes", 0),
        "comments": done.get("comments", 0),
        "errors": actions["errors"],
        "unanswered": max(0, sent - sum(done.values()) - actions["errors"]),
    }


def _window(seconds: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Event latency and deliveries over whole seconds from `start` to `end`."""
    first, last = math.floor(start), math.ceil(end)
    chosen = [s for s in seconds if first <= s["t"] < last]
    latency = Histogram()
    for second in chosen:
        latency.merge(second["latency"])
    length = sum(s["length"] for s in chosen) or 1.0
    return {
        "from_s": first,
        "to_s": last,
        "latency_ms": latency.summary(),
        "deliveries_per_s": round(sum(s["messages"] for s in chosen) / length, 1),
    }


def ramp_quarters(seconds: list[dict[str, Any]], viewers: int, ramp: float) -> list[dict[str, Any]]:
    """Latency while the first quarter of the viewers was connected, the second, ..."""
    out = []
    for quarter in range(1, 5):
        low, high = (quarter - 1) * viewers / 4, quarter * viewers / 4
        chosen = [s for s in seconds if low < s["live"] <= high and (s["t"] < ramp or quarter == 4)]
        latency = Histogram()
        for second in chosen:
            latency.merge(second["latency"])
        length = sum(s["length"] for s in chosen) or 1.0
        out.append(
            {
                "viewers_up_to": math.ceil(high),
                "seconds": len(chosen),
                "latency_ms": latency.summary(),
                "deliveries_per_s": round(sum(s["messages"] for s in chosen) / length, 1),
            }
        )
    return out


def timeline(
    merged: Merged, server: list[dict[str, Any] | None], player: bool
) -> list[dict[str, Any]]:
    """One entry a second, in the report's shape."""
    out = []
    for second in merged.seconds:
        t = second["t"]
        latency: Histogram = second["latency"]
        ttfb: Histogram = second["ttfb"]
        out.append(
            {
                "t": t,
                "connected": second["live"],
                "deliveries_per_s": round(second["messages"] / second["length"], 1),
                "latency_ms": latency.brief("p50", "p95", "p99", "max"),
                "reconnects": second["reconnects"],
                "gaps_recovered": second["gaps_recovered"],
                "gaps_lost": second["gaps_lost"],
                "segment_ttfb_ms": ttfb.brief("p50", "p95") if player else None,
                "stalls": second["stalls"],
                "server": server[t] if t < len(server) else None,
            }
        )
    return out


def options_of(options: argparse.Namespace) -> dict[str, Any]:
    """The CLI options as given (nothing secret: tokens are left out)."""
    hidden = {"command", "metrics_token"}
    return {k: v for k, v in sorted(vars(options).items()) if k not in hidden}
