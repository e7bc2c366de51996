"""A three-master Redis Cluster on 127.0.0.1 for the cluster tests, from a Redis 7+ binary
(optionally with replicas, appendonly, for the failover test).

`redis-server` and `redis-cli` come from PATH (or REDIS_SERVER / REDIS_CLI); scripts/test installs
Debian's package when it can. Without a Redis 7+ the cluster tests are skipped with a loud line;
under CI=true that is a failure.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 above it) is free and valid too."""
    while True:
        port = random.randint(20000, 50000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def _binary(env: str, name: str) -> str | None:
    return shutil.which(os.environ.get(env) or name)


def require_redis7() -> tuple[str, str]:
    """redis-server and redis-cli of Redis 7 or later, or a loud skip (a failure under CI)."""
    server, cli = _binary("REDIS_SERVER", "redis-server"), _binary("REDIS_CLI", "redis-cli")
    problem = ""
    if server is None or cli is None:
        problem = "no redis-server/redis-cli on PATH"
    else:
        version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"v=(\d+)\.", version)
        if match is None or int(match.group(1)) < 7:
            problem = f"{server} is not Redis 7+ ({version.strip()})"
    if problem:
        message = (
            f"!!! REDIS CLUSTER TESTS SKIPPED: {problem}. Install Redis 7+ (Debian 12: "
            "apt-get install redis-server) or set REDIS_SERVER/REDIS_CLI; scripts/test installs "
            "it when run as root on Debian/Ubuntu."
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    assert server is not None and cli is not None
    return server, cli


class RedisCluster:
    """Three masters (by default no replicas), all slots covered; `stop` takes them all down.

    With `replicas=1` each master gets one replica, every node runs with `appendonly yes`, and
    `node_timeout` (ms) sets how long a master may be silent before its replica is promoted.
    """

    def __init__(
        self, root: Path, masters: int = 3, replicas: int = 0, node_timeout: int = 2000
    ) -> None:
        self.server, self.cli = require_redis7()
        self.root = root
        self.replicas = replicas
        self.node_timeout = node_timeout
        self.ports = [cluster_port() for _ in range(masters * (1 + replicas))]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.by_port: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        for port in self.ports:
            home = self.root / str(port)
            home.mkdir(parents=True, exist_ok=True)
            with open(home / "redis.log", "wb") as log:
                proc = subprocess.Popen(
                    [self.server, *self._options(port, home)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            self.procs.append(proc)
            self.by_port[port] = proc
        for port in self.ports:
            self._wait(port, lambda out: out.strip() == "PONG", "PING")
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in self.ports:
            self._wait(port, lambda out: "cluster_state:ok" in out, "CLUSTER", "INFO")
        if self.replicas:  # every replica has finished its first sync
            for port in self.ports:
                self._wait(
                    port,
                    lambda out: "role:master" in out or "master_link_status:up" in out,
                    "INFO",
                    "replication",
                )

    def _options(self, port: int, home: Path) -> list[str]:
        options = {
            "port": str(port),
            "bind": "127.0.0.1",
            "dir": str(home),
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(self.node_timeout),
            "save": "",
            "appendonly": "yes" if self.replicas else "no",
        }
        return [arg for name, value in options.items() for arg in (f"--{name}", value)]

    def _wait(self, port: int, ok: object, *command: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            done = subprocess.run(
                [self.cli, "-p", str(port), *command], capture_output=True, text=True
            )
            out = done.stdout
            if callable(ok) and ok(out):
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis on {port}: {' '.join(command)} gave {out!r}")

    def cli_run(self, port: int, *command: str) -> str:
        done = subprocess.run(
            [self.cli, "-p", str(port), *command], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def move_slot(self, slot: int, source: int, target: int) -> None:
        """Move one hash slot, its keys included, from the master on `source` to `target`'s
        (what a resharding does, one slot at a time)."""
        source_id, target_id = (
            self.cli_run(source, "CLUSTER", "MYID"),
            self.cli_run(target, "CLUSTER", "MYID"),
        )
        self.cli_run(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        self.cli_run(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        while True:
            names = self.cli_run(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
            if not names:
                break
            self.cli_run(
                source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *names
            )
        for port in (target, source, *(p for p in self.ports if p not in (source, target))):
            self.cli_run(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)

    def nodes(self, port: int) -> list[dict[str, str]]:
        """CLUSTER NODES as seen from the node on `port`: id, port, role (master/slave),
        master (the id a replica follows, else "-"), flags."""
        rows = []
        for line in self.cli_run(port, "CLUSTER", "NODES").splitlines():
            node_id, address, flags, master = line.split()[:4]
            role = "master" if "master" in flags.split(",") else "slave"
            rows.append(
                {
                    "id": node_id,
                    "port": address.split("@")[0].rsplit(":", 1)[1],
                    "role": role,
                    "master": master,
                    "flags": flags,
                }
            )
        return rows

    def masters(self) -> list[int]:
        """Ports of the masters now (as the first live node sees it)."""
        port = next(p for p in self.ports if self.by_port[p].poll() is None)
        return [
            int(n["port"])
            for n in self.nodes(port)
            if n["role"] == "master" and "fail" not in n["flags"]
        ]

    def replica_of(self, master: int) -> int:
        """The port of `master`'s replica."""
        rows = self.nodes(master)
        master_id = next(n["id"] for n in rows if int(n["port"]) == master)
        return next(int(n["port"]) for n in rows if n["master"] == master_id)

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crashed host: nothing flushed, no goodbye to the cluster)."""
        proc = self.by_port[port]
        proc.kill()
        proc.wait()

    def flushall(self) -> None:
        for port in self.masters() if self.replicas else self.ports:
            subprocess.run([self.cli, "-p", str(port), "FLUSHALL"], check=True, capture_output=True)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
