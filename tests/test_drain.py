"""SIGTERM during uploads, on a real server: the upload that can finish within
UPLOAD_DRAIN_SECONDS is stored (201), the one that cannot is answered 503 with Retry-After
(a response, not a reset), and the server then exits cleanly."""

from __future__ import annotations

import json
import select
import signal
import socket
import time
import urllib.request
from pathlib import Path

from tests.conftest import TEST_SECRET, Backends
from tests.media import Media
from tests.test_serve import Server

BOUNDARY = "reelwire-drain-test"


def _token(base: str) -> str:
    body = json.dumps(
        {"username": "drainer", "email": "drainer@example.com", "password": "Passw0rd!"}
    ).encode()
    request = urllib.request.Request(
        f"{base}/api/auth/register", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return str(json.loads(resp.read())["tokens"]["access_token"])


def _upload_parts(port: int, token: str, payload: bytes) -> tuple[socket.socket, bytes]:
    """A connection with the request head and the multipart preamble sent; returns the socket
    and the rest of the body still to send."""
    preamble = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\ndrain\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="video_file"; '
        'filename="v.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
    ).encode()
    closing = f"\r\n--{BOUNDARY}--\r\n".encode()
    body = preamble + payload + closing
    head = (
        f"POST /api/videos HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head + body[:32_768])
    return sock, body[32_768:]


def _answer(sock: socket.socket, rest: bytes, pace: float, limit: float) -> tuple[bytes, float]:
    """Send `rest` in 16 KB pieces every `pace` s until the server answers; its answer."""
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < limit:
        readable, _, _ = select.select([sock], [], [], pace)
        if readable:
            break
        if sent < len(rest):
            try:
                sock.sendall(rest[sent : sent + 16_384])
            except OSError:
                break
            sent += 16_384
    answer = b""
    sock.settimeout(5)
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except OSError:
        pass
    return answer, time.monotonic() - started


def test_sigterm_lets_uploads_finish_or_answers_them(
    tmp_path: Path, backends: Backends, media: Media, reset: None
) -> None:
    server = Server(
        tmp_path / "home",
        {
            "DATABASE_URL": backends.database_url,
            "REDIS_URL": backends.redis_url,
            "JWT_SECRET_KEY": TEST_SECRET,
            "INLINE_WORKER": "false",
            "RATE_LIMITS_ENABLED": "false",
            "UPLOAD_DRAIN_SECONDS": "2",
        },
    )
    try:
        server.wait_healthy()
        token = _token(server.url)
        video = media.video_480.read_bytes()
        quick, quick_rest = _upload_parts(server.port, token, video)
        slow, slow_rest = _upload_parts(server.port, token, b"\x00" * 4_000_000)
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.2)
        quick_answer, _ = _answer(quick, quick_rest, 0.001, 10)
        slow_answer, _ = _answer(slow, slow_rest, 0.1, 20)
        slow_took = time.monotonic() - signalled
        assert quick_answer.startswith(b"HTTP/1.1 201"), (quick_answer[:300], server.output())
        assert slow_answer.startswith(b"HTTP/1.1 503"), slow_answer[:300]
        assert b"Retry-After: 5" in slow_answer and b"SERVICE_UNAVAILABLE" in slow_answer
        assert slow_took < 2 + 8, slow_took  # the drain, then its next chunk (~1.6 s here)
        assert server.proc.wait(timeout=30) == 0, server.output()
        assert "Traceback" not in server.output()
    finally:
        server.stop()
