"""The PostgreSQL pool and the transaction helper every query module is called through."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

logger = logging.getLogger(__name__)

Pool = asyncpg.Pool
Connection = asyncpg.Connection


async def init_connection(conn: asyncpg.Connection) -> None:
    """What every connection of ours is set up with: JSON columns as Python values."""
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(
            kind,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


class TimedPool(asyncpg.Pool):  # type: ignore[misc]
    """An asyncpg pool that tells `observe` how long each acquire waited for a connection (s).

    It times asyncpg's `_acquire`, the step behind `Pool.acquire()` (asyncpg is pinned by the
    lock; `tests/test_metrics.py` fails if the timing stops arriving)."""

    def __init__(self, *args: Any, observe: Callable[[float], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._observe = observe

    async def _acquire(self, timeout: float | None) -> Any:
        started = time.perf_counter()
        try:
            return await super()._acquire(timeout)
        finally:
            self._observe(time.perf_counter() - started)


async def create_pool(
    dsn: str,
    *,
    size: int = 10,
    attempts: int = 20,
    observe_wait: Callable[[float], None] | None = None,
) -> asyncpg.Pool:
    """Open a pool, retrying briefly so a database that is still starting is waited for;
    `observe_wait` hears how long each acquire waited for a connection."""
    delay = 0.1
    options: dict[str, Any] = {
        "min_size": min(2, size),
        "max_size": size,
        "init": init_connection,
        "command_timeout": 30,
        "max_inactive_connection_lifetime": 300,
    }
    for attempt in range(1, attempts + 1):
        try:
            if observe_wait is None:
                pool: asyncpg.Pool = await asyncpg.create_pool(dsn, **options)
            else:
                pool = await TimedPool(
                    dsn,
                    observe=observe_wait,
                    connection_class=asyncpg.Connection,
                    record_class=asyncpg.Record,
                    max_queries=50_000,
                    loop=None,
                    **options,
                )
            return pool
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            if attempt == attempts:
                raise
            logger.warning("PostgreSQL not reachable yet (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


async def ping_fresh(database_url: str) -> None:
    """Raise unless a NEW connection answers SELECT 1: during a smart shutdown pooled
    connections still work while new ones are refused, and readiness must say so."""
    conn = await asyncpg.connect(database_url, timeout=2)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


async def insert_row(conn: asyncpg.Connection, table: str, values: dict[str, Any]) -> None:
    """INSERT one row; table and column names come from code, values are parameters."""
    columns = ", ".join(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", *values.values())


async def fetch(conn: asyncpg.Connection, sql: str, *args: object) -> list[asyncpg.Record]:
    """`conn.fetch`, typed: the rows of a query."""
    rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
    return rows
