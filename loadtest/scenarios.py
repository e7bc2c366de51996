"""The scenarios: when things happen in a run, and the things that happen.

Every run connects its viewers over `--ramp` seconds and keeps them `--duration` seconds more;
the scenario adds one event `--event-at` seconds after the ramp (a third of the duration by
default):

- `steady`: nothing: the steady state under the asked actions.
- `ramp`: nothing either, but the summary splits the ramp into quarters of the viewers, to show
  how latency grows with them.
- `burst`: a spike of likes and comments on the first video (`--burst-likes`,
  `--burst-comments` over `--burst-seconds`) through the real operations.
- `reconnect-storm`: `--drop-percent` of the sockets are cut at once, as phones losing their
  network would (no close frame); they reconnect with `since` after a jittered backoff.
- `restart`: one web process of the server gets SIGTERM (`--restart-pid`; under
  `reelwire serve --processes N` its supervisor starts another) or `--restart-cmd` runs; its
  sockets are closed with 1012 and reconnect with `since`.

After a storm or a restart, every socket that closed is followed: recovered (the server filled
its gap), lost (it could not, or the socket was not back by the end) and the time until the
last one recovered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import signal
import time
from dataclasses import dataclass

from loadtest.viewers import Incident, Watcher

SCENARIOS = ("steady", "ramp", "burst", "reconnect-storm", "restart")
WITH_EVENT = ("burst", "reconnect-storm", "restart")
WITH_INCIDENT = ("reconnect-storm", "restart")
COMMAND_SECONDS = 60  # a --restart-cmd taking longer is killed


@dataclass(frozen=True)
class Schedule:
    """Seconds from the start of a run."""

    ramp: float
    end: float
    event: float | None


def schedule(options: argparse.Namespace) -> Schedule:
    """When the ramp ends, when the event happens and when the run ends."""
    ramp, duration = max(0.0, options.ramp), max(0.0, options.duration)
    event = None
    if options.scenario in WITH_EVENT:
        after = options.event_at if options.event_at is not None else duration / 3
        event = ramp + after
    return Schedule(ramp, ramp + duration, event)


def problems(options: argparse.Namespace) -> list[str]:
    """What is wrong with the scenario's options (empty when nothing)."""
    found = []
    plan = schedule(options)
    if plan.event is not None and plan.event >= plan.end:
        found.append("--event-at must fall within --duration")
    if options.scenario == "restart":
        if (options.restart_pid is None) == (options.restart_cmd is None):
            found.append("the restart scenario needs --restart-pid PID or --restart-cmd CMD")
        elif options.restart_pid is not None:
            problem = check_server_pid(options.restart_pid)
            if problem:
                found.append(problem)
    elif options.restart_pid is not None or options.restart_cmd is not None:
        found.append("--restart-pid and --restart-cmd belong to --scenario restart")
    if not 0 < options.drop_percent <= 100:
        found.append("--drop-percent is a share of the sockets: more than 0, at most 100")
    if options.scenario == "burst" and options.burst_likes + options.burst_comments <= 0:
        found.append("the burst scenario needs --burst-likes or --burst-comments")
    return found


def check_server_pid(pid: int) -> str | None:
    """Refuse to signal anything but a `reelwire serve` process of this machine."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return f"--restart-pid {pid}: no such process"
        return None  # no /proc to read: trust the caller
    if "reelwire" not in command or "serve" not in command:
        return f"--restart-pid {pid} is not a `reelwire serve` process ({command[:80]!r})"
    return None


def drop_sockets(
    watchers: list[Watcher], percent: float, rng: random.Random, incident: Incident
) -> int:
    """Cut `percent` of the live sockets at once; returns how many."""
    live = [w for w in watchers if w.viewer is not None and w.viewer.live]
    chosen = rng.sample(live, round(len(live) * percent / 100))
    incident.at = time.monotonic()
    return sum(1 for watcher in chosen if watcher.drop())


async def restart_server(options: argparse.Namespace) -> str:
    """SIGTERM the server process, or run the restart command; what was done, as an event."""
    if options.restart_pid is not None:
        try:
            os.kill(options.restart_pid, signal.SIGTERM)
        except OSError as exc:
            return f"SIGTERM pid {options.restart_pid} failed: {exc.strerror}"
        return f"SIGTERM pid {options.restart_pid}"
    command = shlex.split(options.restart_cmd)
    started = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(*command)
    except OSError as exc:
        return f"restart command failed to start: {exc}"
    try:
        code = await asyncio.wait_for(process.wait(), COMMAND_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        return f"restart command killed after {COMMAND_SECONDS} s: {options.restart_cmd}"
    return f"ran {options.restart_cmd} (exit {code}, {time.monotonic() - started:.1f} s)"
