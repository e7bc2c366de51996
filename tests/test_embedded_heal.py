"""The embedded default heals: a PostgreSQL or Redis that dies under `reelwire serve` (a real
server process, killed for real) is restarted, and the app serves again by itself."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import record_figures
from tests.test_serve import Server


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None


def _register(base: str, name: str) -> int:
    body = json.dumps(
        {"username": name, "email": f"{name}@example.com", "password": "Passw0rd!"}
    ).encode()
    request = urllib.request.Request(
        f"{base}/api/auth/register", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "home", {"INLINE_WORKER": "false", "RATE_LIMITS_ENABLED": "false"})
    try:
        server.wait_healthy(timeout=120)
        yield server
    finally:
        server.stop()


def _pid_of(server: Server, needle: str) -> int:
    found = [p.pid for p in server.processes() if needle in p.command]
    assert found, [p.command for p in server.processes()]
    return min(found)  # the postmaster is the oldest of the postgres processes


def _until(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s")


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("backend", "needle"), [("redis", "redis-server"), ("postgres", "-D")])
def test_a_killed_embedded_backend_is_restarted(
    embedded: Server, backend: str, needle: str
) -> None:
    base = embedded.url
    assert _register(base, "before") == 201
    victim = _pid_of(embedded, needle)
    os.kill(victim, signal.SIGKILL)
    degraded = _until(lambda: _get(f"{base}/healthz")[1] != {"status": "ok"}, 10, "degraded")
    status, body = _get(f"{base}/healthz")
    assert status in (200, 0), (status, body)
    healed = _until(lambda: _get(f"{base}/readyz")[0] == 200, 60, f"{backend} back")
    assert _pid_of(embedded, needle) != victim
    # Writes work again, with no help: the pools reconnect by themselves.
    _until(lambda: _register(base, f"after{backend}") == 201, 20, "a write")
    assert _get(f"{base}/healthz") == (200, {"status": "ok"})
    log = embedded.output()
    assert "exited (status" in log and "is back" in log, log[-2000:]
    record_figures(
        f"embedded {backend} SIGKILLed: degraded seen after {degraded:.1f} s, "
        f"ready again {healed:.1f} s later"
    )
