"""Versioned SQL migrations, applied in order under a PostgreSQL advisory lock.

Files are ``storage/migrations/NNNN_name.sql``. Each runs in its own transaction together with
the row that records it, so a migration is either fully applied and recorded or not at all.
Processes that start at once queue on the advisory lock; the later ones find nothing to do.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# An arbitrary constant that identifies "reelwire schema migration" among advisory locks.
ADVISORY_LOCK_KEY = 0x5EE1_1A1E
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Migrations whose comments were reworded after they shipped, their SQL untouched: the checksums
# their earlier text was recorded with. A database holding one of these is brought up to date
# without the "changed after it was applied" warning.
REWORDED: dict[int, frozenset[str]] = {
    2: frozenset({"e82c9d1b1a5df480f82e4254b348fd3b5ce15d0d3e96b1042a381ba780368c66"}),
    3: frozenset({"dedea7309892541a7e30613baaf5d7c2293c9b658b712cf4aa17320ed4e408e0"}),
}


@dataclass(frozen=True)
class Migration:
    """One SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file, to notice a migration edited after it was applied."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migration files, in version order; a malformed name or duplicate version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME_RE.match(path.name)
        if not match:
            raise ValueError(f"migration file name {path.name!r} is not NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations have version {version}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is missing; return the versions this call applied."""
    migrations = load_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        done: list[int] = []
        for migration in migrations:
            if migration.version in applied:
                recorded = applied[migration.version]
                if recorded in REWORDED.get(migration.version, ()):
                    await conn.execute(
                        "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
                        migration.version,
                        migration.checksum,
                    )
                elif recorded != migration.checksum:
                    logger.warning(
                        "migration %04d_%s changed after it was applied; "
                        "write a new migration instead",
                        migration.version,
                        migration.name,
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            logger.info("applied migration %04d_%s", migration.version, migration.name)
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


async def migrate_url(dsn: str) -> list[int]:
    """Connect, migrate, disconnect."""
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def pending_url(dsn: str, migrations: list[Migration]) -> list[int]:
    """Versions not yet applied to the database at `dsn` (without applying anything)."""
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        applied = (
            {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            if exists
            else set()
        )
    finally:
        await conn.close()
    return [m.version for m in migrations if m.version not in applied]
