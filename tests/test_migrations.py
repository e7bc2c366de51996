"""Migrations: versioned files, applied once each, even by processes starting together."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from storage.migrate import REWORDED, Migration, load_migrations, migrate
from tests.conftest import TEST_SECRET, Backends, database_named


@pytest.fixture
async def fresh_db(backends: Backends) -> AsyncIterator[str]:
    name = f"mig_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(backends.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield database_named(backends.database_url, name)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


def test_files_are_numbered_and_ordered() -> None:
    migrations = load_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(versions) and versions[0] == 1
    assert len(set(versions)) == len(versions)


async def test_two_migrate_processes_at_once_apply_each_migration_once(
    fresh_db: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": fresh_db,
        "JWT_SECRET_KEY": TEST_SECRET,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "REELWIRE_HOME": str(tmp_path),
    }
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reelwire",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    expected = len(load_migrations())
    logs = "".join(err.decode() for _, err in outputs)
    assert logs.count("applied migration 0001_") == 1
    stdout = sorted(out.decode().strip().splitlines()[-1] for out, _ in outputs)
    assert stdout == [
        "applied 0 migration(s)",
        f"applied {expected} migration(s): {[m.version for m in load_migrations()]}",
    ]
    conn = await asyncpg.connect(fresh_db)
    rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == [m.version for m in load_migrations()]
    assert await conn.fetchval("SELECT to_regclass('follows') IS NOT NULL")
    await conn.close()


async def test_a_failing_migration_is_not_recorded(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        good = load_migrations()
        broken = [*good, Migration(9999, "broken", "CREATE TABLE t9999 (x int); SELECT 1/0;")]
        with pytest.raises(asyncpg.DivisionByZeroError):
            await migrate(conn, broken)
        versions = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        assert 9999 not in versions and versions == {m.version for m in good}
        assert await conn.fetchval("SELECT to_regclass('t9999') IS NULL")
        assert await migrate(conn, good) == []
    finally:
        await conn.close()


async def test_a_database_recorded_before_a_comment_was_reworded_is_brought_up_to_date(
    fresh_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        migrations = load_migrations()
        await migrate(conn, migrations)
        for version, earlier in REWORDED.items():
            (checksum,) = earlier
            await conn.execute(
                "UPDATE schema_migrations SET checksum = $2 WHERE version = $1", version, checksum
            )
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        caplog.set_level("WARNING", logger="storage.migrate")
        assert await migrate(conn, migrations) == []
        # The reworded ones are taken as they are now; a real edit is still called out.
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 1 and "0001_" in warned[0], warned
        recorded = dict(await conn.fetch("SELECT version, checksum FROM schema_migrations"))
        for migration in migrations:
            if migration.version in REWORDED:
                assert recorded[migration.version] == migration.checksum
    finally:
        await conn.close()
