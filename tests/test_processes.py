"""`reelwire serve --processes N` never leaves processes behind, and never shares its port with any.

Real processes and real signals: the supervisor is SIGKILLed (as the OOM killer would) and its
web children, the embedded PostgreSQL and Redis must all be gone within seconds, the port free.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from reelwire import supervisor
from tests.conftest import TEST_SECRET, Backends, Proc, process_table
from tests.test_serve import Server, free_port, wait_until
from tests.wsclient import Socket

GONE_WITHIN_SECONDS = 10


def port_is_free(port: int) -> bool:
    """Binding without SO_REUSEPORT succeeds only if nothing at all listens on the port."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def still_running(procs: list[Proc]) -> list[Proc]:
    table = process_table()
    return [
        p
        for p in procs
        if p.pid in table and table[p.pid].alive and table[p.pid].command == p.command
    ]


def web_children(server: Server) -> list[Proc]:
    return [
        p
        for p in process_table().values()
        if p.ppid == server.proc.pid and p.alive and "--reuse-port" in p.command
    ]


async def nodes_answering(server: Server, want: int, timeout: float = 60) -> set[str]:
    """Open sockets until `want` different web processes have greeted one (a child may still
    be starting: keep trying until the deadline)."""
    nodes: set[str] = set()
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while len(nodes) < want and time.monotonic() < deadline:
            sockets = []
            for _ in range(16):
                try:
                    sock = await Socket.open(http, f"{server.url}/ws")
                except (aiohttp.ClientError, AssertionError):
                    continue
                sockets.append(sock)
                nodes.add(sock.welcome["node"])
            for sock in sockets:
                await sock.close()
            if len(nodes) < want:
                await asyncio.sleep(0.2)
    return nodes


async def test_a_killed_supervisor_takes_its_web_children_and_embedded_servers_along(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    server = Server(home, {"WEB_CONCURRENCY": "2"})
    second: Server | None = None
    try:
        server.wait_healthy(timeout=120)
        assert wait_until(lambda: len(web_children(server)) == 2, timeout=60), server.output()
        children = web_children(server)
        nodes = await nodes_answering(server, 2)
        assert {int(node.rsplit(":", 1)[1]) for node in nodes} == {p.pid for p in children}
        tree = server.processes()
        commands = " | ".join(p.command for p in tree)
        assert "postgres -D" in commands and "redis-server" in commands, commands

        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        killed = time.monotonic()
        assert wait_until(lambda: not still_running(tree), timeout=GONE_WITHIN_SECONDS), (
            "outlived their supervisor:\n"
            + "\n".join(f"  {p.pid}: {p.command}" for p in still_running(tree))
        )
        seconds = time.monotonic() - killed
        assert wait_until(lambda: port_is_free(server.port), timeout=5), "port still held"
        print(f"everything gone {seconds:.2f}s after the supervisor's SIGKILL")

        # Nothing blocks the next `serve` on the same data dir and port.
        second = Server(home, {"WEB_CONCURRENCY": "2"}, port=server.port)
        second.wait_healthy(timeout=120)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{second.url}/readyz") as resp,
        ):
            assert resp.status == 200
        assert not {int(n.rsplit(":", 1)[1]) for n in await nodes_answering(second, 2)} & {
            p.pid for p in children
        }
    finally:
        server.stop()
        if second is not None:
            second.stop()


def test_serve_refuses_a_port_that_leftovers_still_listen_on(
    tmp_path: Path, backends: Backends
) -> None:
    port = free_port()
    # A leftover web process of an earlier `serve`: listening with SO_REUSEPORT, as they do.
    with socket.socket() as leftover:
        leftover.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        leftover.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        leftover.bind(("127.0.0.1", port))
        leftover.listen()
        server = Server(
            tmp_path / "home",
            {
                "DATABASE_URL": backends.database_url,
                "REDIS_URL": backends.redis_url,
                "JWT_SECRET_KEY": TEST_SECRET,
                "INLINE_WORKER": "false",
                "WEB_CONCURRENCY": "2",
            },
            port=port,
        )
        try:
            assert server.proc.wait(timeout=60) == 1, server.output()
            assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in (
                server.output()
            )
            assert not server.processes()
        finally:
            server.stop()


def test_a_child_forked_by_a_parent_that_is_already_gone_exits_before_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The check right after the prctl: a child whose parent is not the one that meant to fork
    it (the supervisor died in between, so no death signal will ever come) exits at once."""
    monkeypatch.setattr(os, "getpid", lambda: 1)  # the "supervisor" the child will not find
    preexec = supervisor.die_with_parent()
    monkeypatch.undo()
    marker = tmp_path / "ran"
    child = subprocess.Popen(["touch", str(marker)], preexec_fn=preexec)
    assert child.wait(timeout=10) == 70
    assert not marker.exists()
    # With the real parent the same preexec lets the program run.
    child = subprocess.Popen(["touch", str(marker)], preexec_fn=supervisor.die_with_parent())
    assert child.wait(timeout=10) == 0 and marker.exists()
