"""`reelwire serve --processes N`: N full web processes on one port, kept running.

Each child is an ordinary `reelwire serve` bound with SO_REUSEPORT, so the kernel spreads new
connections over them; they share nothing but PostgreSQL and Redis (which fan events out between
them), exactly as processes on different machines would. The parent starts the embedded
services (if any) once, hands the children their URLs, forwards SIGTERM/SIGINT, and restarts a
child that dies unexpectedly.

Children die with the supervisor however it dies (SIGKILL and the OOM killer included): each asks
the kernel for a parent-death signal before it execs, and checks that its parent is still the
supervisor that forked it. Since SO_REUSEPORT would let a new `serve` share its port with
leftovers of an old one, the supervisor first binds the port without it and refuses to start
when that fails.

Metrics: the children share a PROMETHEUS_MULTIPROC_DIR (PROMETHEUS_MULTIPROC_DIR if set, else a
temporary directory; emptied at start, one per `serve`), so whichever child answers `/metrics`
reports the sum over all of them. A child that exits is marked dead there: its live gauges drop
out, its counters stay counted (they never go backwards when a child is replaced).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType

from reelwire.settings import Settings

logger = logging.getLogger("reelwire.supervisor")

STOP_GRACE_SECONDS = 20
RESTART_DELAY_SECONDS = 1.0
MAX_QUICK_DEATHS = 5  # in a row, each within QUICK_SECONDS of starting: give up
QUICK_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


class PortInUse(RuntimeError):
    """Something already listens on the port the web processes would share."""


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A preexec_fn: the kernel sends `sig` to the child when this process dies.

    Checked right after the prctl: if we died between fork and prctl, the child is already an
    orphan (its parent is no longer us) and the signal would never come, so it exits at once.
    """
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            os._exit(70)
        if os.getppid() != parent:
            os._exit(70)

    return preexec


def check_port_free(host: str, port: int) -> None:
    """Bind the port without SO_REUSEPORT: fails while anything (a leftover web process of an
    earlier `serve` included, SO_REUSEPORT or not) listens on it."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return  # the children report a bad host themselves
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the children do
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    continue
                holders = listening_pids(port)
                held = f" by pid {', '.join(map(str, holders))}" if holders else ""
                raise PortInUse(
                    f"port {port} on {host} is already in use{held} (a server still running, or "
                    "web processes left over from an earlier `reelwire serve`); stop it first "
                    "or choose another PORT"
                ) from None


def listening_pids(port: int) -> list[int]:
    """Best effort (Linux, processes we may inspect): who listens on a TCP port."""
    sockets: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    # local address "IP:PORT" in hex, state 0A = LISTEN, inode
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        sockets.add(f"socket:[{fields[9]}]")
        except (OSError, ValueError, IndexError):
            continue
    if not sockets:
        return []
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in sockets:
                    found.append(int(entry))
                    break
            except OSError:
                continue
    return sorted(found)


def metrics_directory() -> tuple[str, bool]:
    """The children's shared metrics directory, emptied; and whether we made it (and so remove
    it when done)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        _remove_orphaned_metrics(tempfile.gettempdir())
        return tempfile.mkdtemp(prefix=f"{_METRICS_PREFIX}{os.getpid()}-"), True
    os.makedirs(given, exist_ok=True)
    for name in os.listdir(given):  # values of an earlier `serve` would be summed in
        if name.endswith(".db"):
            os.unlink(os.path.join(given, name))
    return given, False


_METRICS_PREFIX = "reelwire-metrics-"


def _remove_orphaned_metrics(root: str) -> None:
    """Temporary metrics directories of supervisors that died without cleaning up (SIGKILL)."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if not name.startswith(_METRICS_PREFIX):
            continue
        pid = name[len(_METRICS_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except OSError:
            continue  # alive (not ours to signal): in use


def child_environment(
    settings: Settings, index: int, metrics_dir: str | None = None
) -> dict[str, str]:
    """A child's environment: the resolved backends, and the inline worker in child 0 only."""
    assert settings.database_url and settings.redis_url and settings.jwt_secret_key
    extra = {"PROMETHEUS_MULTIPROC_DIR": metrics_dir} if metrics_dir else {}
    return {
        **os.environ,
        **extra,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "JWT_SECRET_KEY": settings.jwt_secret_key,
        "INLINE_WORKER": "true" if settings.runs_inline_worker and index == 0 else "false",
        "WEB_CONCURRENCY": "1",
    }


def serve_many(settings: Settings, processes: int) -> int:
    """Run `processes` children until SIGTERM/SIGINT; the exit status of the supervisor."""
    command = [
        sys.executable,
        "-m",
        "reelwire",
        "serve",
        "--processes",
        "1",
        "--reuse-port",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
    ]
    try:
        check_port_free(settings.host, settings.port)
    except PortInUse as exc:
        print(f"reelwire: {exc}", file=sys.stderr)
        return 1
    metrics_dir, made = metrics_directory()
    try:
        return _supervise(settings, processes, command, metrics_dir)
    finally:
        if made:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(settings: Settings, processes: int, command: list[str], metrics_dir: str) -> int:
    from prometheus_client.multiprocess import mark_process_dead

    children: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    quick_deaths = 0
    stopping = False

    def start(index: int) -> None:
        children[index] = subprocess.Popen(
            command,
            env=child_environment(settings, index, metrics_dir),
            preexec_fn=die_with_parent(),
        )
        started[index] = time.monotonic()

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(processes):
        start(index)
    logger.info("%d web processes on port %d (SO_REUSEPORT)", processes, settings.port)

    while not stopping:
        time.sleep(0.2)
        for index, child in list(children.items()):
            code = child.poll()
            if code is None or stopping:
                continue
            mark_process_dead(child.pid, metrics_dir)  # type: ignore[no-untyped-call]
            lived = time.monotonic() - started[index]
            quick_deaths = quick_deaths + 1 if lived < QUICK_SECONDS else 0
            if quick_deaths >= MAX_QUICK_DEATHS:
                logger.error("web processes keep dying at start (exit %s); stopping", code)
                stop(signal.SIGTERM, None)
                break
            logger.warning("web process %d exited with %s; restarting it", child.pid, code)
            time.sleep(RESTART_DELAY_SECONDS)
            start(index)

    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 1 if quick_deaths >= MAX_QUICK_DEATHS else 0
