"""The `reelwire` console script as a person meets it: its help, and what `serve` runs on."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TEST_SECRET, Backends
from tests.test_serve import free_port

REELWIRE = str(Path(sys.executable).parent / "reelwire")
COMMANDS = {"serve", "migrate", "loadtest", "worker"}


def run(*args: str) -> str:
    done = subprocess.run([REELWIRE, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def described(help_text: str, section: str) -> dict[str, str]:
    """The entries of an argparse help section (`commands:`, `options:`) and their descriptions."""
    lines = help_text.split(section + ":\n", 1)[1].splitlines()
    entries: dict[str, str] = {}
    name = None
    for line in lines:
        if line and not line.startswith(" "):
            break  # the next section
        entry = re.match(r"^ {2,4}(\S+(?:, \S+)*(?: [A-Z_]+)?)(?: {2,}(.*))?$", line)
        if entry and not line.startswith(" " * 6):
            name = entry.group(1)
            entries[name] = entry.group(2) or ""
        elif name is not None and line.strip():
            entries[name] = (entries[name] + " " + line.strip()).strip()
    return entries


def test_help_lists_every_command_with_a_description() -> None:
    commands = described(run("--help"), "commands")
    commands.pop("<command>", None)
    assert set(commands) == COMMANDS
    for name, text in commands.items():
        assert len(text) > 10, f"`reelwire {name}` has no description"
    for name in COMMANDS:
        assert "usage: reelwire " + name in run(name, "--help")


def test_every_loadtest_flag_has_help() -> None:
    options = described(run("loadtest", "--help"), "options")
    flags = {name.split()[0] for name in options}
    assert {"--viewers", "--videos", "--ramp", "--duration", "--json"} <= flags
    assert {"--views-per-s", "--likes-per-s", "--comments-per-s", "--actors"} <= flags
    for name, text in options.items():
        assert len(text.split("(default:")[0].strip()) > 5, f"{name} has no help text"


def test_serve_says_what_it_runs_on(backends: Backends, tmp_path: Path) -> None:
    """S3 media, external PostgreSQL and Redis (no passwords), and where to open the app."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("S3_", "AWS_", "CDN_"))},
        "REELWIRE_HOME": str(tmp_path / "home"),
        "PORT": str(port),
        "DATABASE_URL": backends.database_url,
        "REDIS_URL": backends.redis_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "S3_BUCKET": "reelwire-banner",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "banner",
        "AWS_SECRET_ACCESS_KEY": "banner-secret",
        "INLINE_WORKER": "false",
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([REELWIRE, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "API docs:" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        # The banner goes out before the app starts; the S3 endpoint need not answer for it.
        text = log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "media:     S3 bucket 'reelwire-banner' at http://127.0.0.1:" in text, text
    assert "local disk" not in text
    assert "database:  PostgreSQL at postgresql://" in text
    assert "redis:     Redis at " in text
    assert f"web app:   http://127.0.0.1:{port}/" in text
    assert f"API docs:  http://127.0.0.1:{port}/api/docs" in text
    for url in (backends.database_url, backends.redis_url):
        password = re.match(r"^[a-z]+://[^:/@]*:([^@/]+)@", url)
        if password:
            assert password.group(1) not in text


def test_unreachable_backends_are_one_line_each_not_a_traceback(
    tmp_path: Path, backends: Backends
) -> None:
    closed = free_port()  # nothing listens there
    env = {
        **os.environ,
        "REELWIRE_HOME": str(tmp_path / "home"),
        "PORT": str(free_port()),
        "DATABASE_URL": f"postgresql://reelwire@127.0.0.1:{closed}/reelwire",
        "REDIS_URL": backends.redis_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "STARTUP_TIMEOUT_SECONDS": "3",
    }
    # The three at once: each waits its STARTUP_TIMEOUT_SECONDS out on its own.
    started = time.monotonic()
    running = {
        command: subprocess.Popen(
            [REELWIRE, command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in ("serve", "worker", "migrate")
    }
    for command, proc in running.items():
        stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - started
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert 2 <= took <= 15, (command, took)
        assert "Traceback" not in done.stderr, done.stderr
        ours = [line for line in done.stderr.splitlines() if line.startswith("reelwire:")]
        assert f"PostgreSQL at postgresql://reelwire@127.0.0.1:{closed}/reelwire" in ours[0]
        assert ours[-1].startswith("reelwire: gave up after 3 s"), ours
        assert len(ours) == 2, ours  # waiting..., gave up
