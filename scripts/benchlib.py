"""What the benchmark scripts share: CPU pinning and free ports."""

from __future__ import annotations

import os
import socket
import subprocess


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
