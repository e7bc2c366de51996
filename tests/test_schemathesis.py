"""Schemathesis against a live `reelwire serve`: every operation of `/api/openapi.json`, with a
real token, all checks, for a bounded time. No input may give a server error, and no response
may break the documented schema.

The run's budget is `SCHEMATHESIS_SECONDS` (default 20). Findings of the other checks (status
codes, headers, acceptance of edge cases) are printed for whoever reads the log; a server error
or a response-schema violation fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_SECRET, Backends, record_figures
from tests.test_serve import Server

BUDGET = int(os.environ.get("SCHEMATHESIS_SECONDS", "20"))
# Findings that fail this test: server errors (ST101, ST102) and responses that break the
# documented schema (ST104, ST108-ST111). See `schemathesis explain ST101`.
FATAL_CODES = {"ST101", "ST102", "ST104", "ST108", "ST109", "ST110", "ST111"}
# `POST /api/auth/logout` revokes the session of the token the run authenticates with; every
# later case would then be a 401 and test nothing.
EXCLUDED_PATHS = ["/api/auth/logout"]
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")  # media types it cannot send itself


@pytest.fixture
def server(backends: Backends, tmp_path: Path, reset: None) -> Any:
    env = {
        "DATABASE_URL": backends.database_url,
        "REDIS_URL": backends.redis_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "INLINE_WORKER": "false",
        "RATE_LIMITS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }
    started = Server(tmp_path / "home", env)
    try:
        started.wait_healthy()
        yield started
    finally:
        started.stop()


def _token(url: str) -> str:
    body = {"username": "fuzzer", "email": "fuzzer@example.com", "password": "Passw0rd1"}
    request = urllib.request.Request(
        f"{url}/api/auth/register",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status == 201
        return str(json.loads(resp.read())["tokens"]["access_token"])


@pytest.mark.timeout(BUDGET + 180)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    server: Server, tmp_path: Path
) -> None:
    token = _token(server.url)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.url}/api/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-time",
        str(BUDGET),
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--no-color",
        "--output-truncate",
        "true",
    ]
    for path in EXCLUDED_PATHS:
        command += ["--exclude-path", path]
    started = time.monotonic()
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=BUDGET + 120,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    print(output[-20_000:])
    print(f"schemathesis took {elapsed:.0f}s")
    assert "Test cases:" in output, output[-5000:]
    cases = _case_count(output)
    codes = _failure_codes(output)
    # (spaces normalised: a phase's line reads "🚫  Coverage (in 6.62s)")
    errors = [
        " ".join(line.split()) for line in output.splitlines() if line.strip().startswith("🚫")
    ]
    # A "Runtime Error" is schemathesis' or hypothesis' own failure, not the server's.
    errors = [
        e
        for e in errors
        if not e.startswith(("🚫 Fuzzing", "🚫 Coverage", "🚫 Stateful", "🚫 Runtime Error"))
    ]
    record_figures(
        f"schemathesis: {cases} cases in {elapsed:.0f}s; findings by code: {dict(codes)}"
    )
    assert cases > 1000, output[-5000:]
    assert not FATAL_CODES & set(codes), output[-20_000:]
    assert not errors, f"{errors}\n{output[-20_000:]}"
    log = server.output()
    assert "unhandled error" not in log, log[-10_000:]


def _case_count(output: str) -> int:
    """From the summary line `6976 generated, 28 found 29 unique failures, 18 skipped` (the
    last such line: a finding's own text may say "could not be generated")."""
    counts = re.findall(r"(?m)^\W*(\d+) generated\b", output)
    return int(counts[-1]) if counts else 0


def _failure_codes(output: str) -> Counter[str]:
    codes: Counter[str] = Counter()
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("- ST"):
            codes[line.split()[1]] += 1
    return codes
