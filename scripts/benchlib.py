"""What the benchmark scripts share: CPU pinning and free ports."""

from __future__ import annotations

import os
import socket
import subprocess
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
