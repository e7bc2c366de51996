"""`reelwire serve` as a real process: embedded default, one owner per data dir, crash, SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import TEST_SECRET, Backends, Proc, descendants, process_table


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A `reelwire serve` child process and where it listens.

    It runs in a process group of its own, so `stop` can take everything it started down with
    it (web children of `--processes N` included), not just the process it started.
    """

    def __init__(
        self, home: Path, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.home = home
        self.port = port or free_port()
        self.log = home.parent / f"serve-{self.port}.log"
        full_env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY")
            },
            "REELWIRE_HOME": str(home),
            "PORT": str(self.port),
            **(env or {}),
        }
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reelwire", "serve"],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited early:\n{self.output()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not listen in {timeout}s:\n{self.output()}")

    def processes(self) -> list[Proc]:
        """The live processes of this server: its own, its group's, and their descendants."""
        table = process_table()
        found = {p.pid: p for p in table.values() if p.pgid == self.proc.pid and p.alive}
        if self.proc.poll() is None:
            found[self.proc.pid] = table.get(self.proc.pid) or Proc(self.proc.pid, 0, 0, "R", "")
        for pid in list(found):
            found.update((p.pid, p) for p in descendants(pid, table))
        return sorted(found.values(), key=lambda p: p.pid)

    def stop(self, timeout: float = 15) -> None:
        """SIGKILL the server's process group and wait until all it started is gone."""
        tree = self.processes()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        # Embedded PostgreSQL/Redis run in sessions of their own and die by parent-death signal.
        commands = {p.pid: p.command for p in tree}  # a pid reused meanwhile is not ours
        deadline = time.monotonic() + timeout
        left: list[int] = []
        while time.monotonic() < deadline:
            table = process_table()
            left = [
                pid
                for pid, command in commands.items()
                if pid in table and table[pid].alive and table[pid].command == command
            ]
            if not left:
                return
            time.sleep(0.05)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def postmaster_running(home: Path) -> bool:
    pidfile = home / "postgres" / "data" / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
        os.kill(pid, 0)
        return True
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False


def wait_until(predicate: Any, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


async def test_embedded_default_serves_the_auth_and_follow_flow(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(tmp_path / "home")
    servers.append(server)
    server.wait_healthy()
    log = server.output()
    assert "embedded PostgreSQL" in log and "embedded Redis" in log
    assert f"http://127.0.0.1:{server.port}/api/" in log
    secret = (tmp_path / "home" / "jwt_secret").read_text().strip()
    assert len(secret) >= 43
    assert oct((tmp_path / "home" / "jwt_secret").stat().st_mode & 0o777) == "0o600"

    async with aiohttp.ClientSession(server.url) as http:
        users = []
        for name in ("walt", "xena"):
            resp = await http.post(
                "/api/auth/register",
                json={"username": name, "email": f"{name}@example.com", "password": "Passw0rd!"},
            )
            assert resp.status == 201
            users.append(await resp.json())
        resp = await http.post("/api/auth/login", json={"login": "walt", "password": "Passw0rd!"})
        login = await resp.json()
        headers = {"Authorization": f"Bearer {login['tokens']['access_token']}"}
        me = await (await http.get("/api/auth/me", headers=headers)).json()
        assert me["user"]["username"] == "walt"
        resp = await http.post(
            "/api/auth/refresh", json={"refresh_token": login["tokens"]["refresh_token"]}
        )
        assert resp.status == 200
        headers = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
        resp = await http.post(f"/api/users/{users[1]['user']['id']}/follow", headers=headers)
        assert await resp.json() == {"success": True, "following": True, "follower_count": 1}
        assert (await http.get("/readyz")).status == 200


def test_second_serve_on_the_same_data_dir_refuses_clearly(
    tmp_path: Path, servers: list[Server]
) -> None:
    first = Server(tmp_path / "home")
    servers.append(first)
    first.wait_healthy()
    second = Server(tmp_path / "home")
    servers.append(second)
    assert second.proc.wait(timeout=30) == 1
    message = second.output()
    assert f"data dir {tmp_path / 'home'} is in use by another reelwire process" in message
    assert f"pid {first.proc.pid}" in message
    assert first.proc.poll() is None


def test_killed_server_leaves_nothing_that_blocks_the_next_start(
    tmp_path: Path, servers: list[Server]
) -> None:
    home = tmp_path / "home"
    first = Server(home)
    servers.append(first)
    first.wait_healthy()
    assert postmaster_running(home)
    first.proc.kill()
    first.proc.wait()
    # The embedded servers die with their parent instead of lingering as orphans.
    assert wait_until(lambda: not postmaster_running(home)), "PostgreSQL outlived its owner"
    second = Server(home)
    servers.append(second)
    second.wait_healthy()


def test_sigterm_shuts_down_gracefully_and_stops_embedded_servers(
    tmp_path: Path, servers: list[Server]
) -> None:
    home = tmp_path / "home"
    server = Server(home)
    servers.append(server)
    server.wait_healthy()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0, server.output()
    assert not postmaster_running(home)
    assert not (home / "postgres" / "data" / "postmaster.pid").exists()
    assert "Traceback" not in server.output()


def test_with_both_urls_set_nothing_embedded_starts(
    tmp_path: Path, servers: list[Server], backends: Backends
) -> None:
    home = tmp_path / "home"
    server = Server(
        home,
        env={
            "DATABASE_URL": backends.database_url,
            "REDIS_URL": backends.redis_url,
            "JWT_SECRET_KEY": TEST_SECRET,
        },
    )
    servers.append(server)
    server.wait_healthy()
    log = server.output()
    assert "database:  PostgreSQL at postgresql://" in log, log
    assert "redis:     Redis at " in log and "embedded" not in log, log
    assert not (home / "postgres").exists() and not (home / "redis").exists()
    assert not (home / "reelwire.lock").exists()
