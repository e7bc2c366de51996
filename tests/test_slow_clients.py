"""Slow clients cannot hold a real server's connections: headers that trickle in, or an idle
keep-alive connection, are dropped after HTTP_IDLE_TIMEOUT_SECONDS."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET, Backends
from tests.test_serve import Server


@pytest.fixture
def server(tmp_path: Path, backends: Backends, reset: None) -> Iterator[Server]:
    env = {
        "DATABASE_URL": backends.database_url,
        "REDIS_URL": backends.redis_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "INLINE_WORKER": "false",
        "HTTP_IDLE_TIMEOUT_SECONDS": "2",
    }
    started = Server(tmp_path / "home", env)
    try:
        started.wait_healthy()
        yield started
    finally:
        started.stop()


def _seconds_until_closed(sock: socket.socket, limit: float = 20) -> float:
    started = time.monotonic()
    sock.settimeout(limit)
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
    return time.monotonic() - started


def test_trickling_headers_are_dropped(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        held = _seconds_until_closed(sock)
    assert 1 <= held <= 6, held


def test_an_idle_keep_alive_connection_is_dropped(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200 OK" in sock.recv(65536)
        held = _seconds_until_closed(sock)
    assert 1 <= held <= 6, held
