"""What the benchmark scripts share: CPU pinning, free ports, tokens, and servers started and
stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Any


def pinned(cpu: int, argv: list[str]) -> list[str]:
    """Run `argv` on one CPU when taskset exists and the machine has more than one."""
    if (os.cpu_count() or 1) > 1 and subprocess.run(
        ["which", "taskset"], capture_output=True
    ).returncode == 0:
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mint_tokens(secret: str, user_ids: list[Any]) -> list[str]:
    """An access token (role `user`, an hour) for each user id, signed as a server with this
    JWT secret issues them: seeded users need no password hashing to sign in."""
    import uuid
    from datetime import timedelta

    from reelwire.domain.tokens import ACCESS, TokenCodec

    codec = TokenCodec(
        secret,
        issuer="reelwire",
        audience="reelwire-api",
        access_ttl=timedelta(hours=1),
        refresh_ttl=timedelta(days=1),
    )
    return [
        codec.issue(ACCESS, uuid.UUID(str(user_id)), uuid.uuid4(), {"role": "user"}).token
        for user_id in user_ids
    ]


def wait_listening(
    proc: subprocess.Popen[bytes],
    port: int,
    what: str,
    *,
    timeout: float = 60.0,
    ready_path: str | None = None,
) -> None:
    """Return once `proc` accepts connections on `port` (with `ready_path`, once it answers that
    path with 200); RuntimeError when it exits first or takes longer than `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if ready_path is None:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            else:
                url = f"http://127.0.0.1:{port}{ready_path}"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
        except OSError:
            pass
        time.sleep(0.1)
    state = "get ready" if ready_path else "listen"
    raise RuntimeError(f"{what} did not {state} in {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes], *, group: bool = False, timeout: float = 30) -> None:
    """SIGTERM (its whole process group with `group`), then SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return

    def send(sig: int) -> None:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()
