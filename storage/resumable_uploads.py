"""Queries on resumable uploads (tus), and the lock one upload's writer holds.

A chunk is written by whoever holds the upload's advisory lock: a session lock on a connection
of its own (not a pooled one: a chunk may take minutes), released when the chunk is recorded or
when that connection ends, so a process that dies mid-chunk frees the upload at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg

from storage import db
from storage.db import insert_row

# The first key of every upload's advisory lock (two-int form: apart from single-key locks such
# as the migrations'); the second is taken from the upload id.
LOCK_SPACE = 0x7505


def _lock_key(upload_id: UUID) -> int:
    return int.from_bytes(upload_id.bytes[:4], "big", signed=True)


@contextlib.asynccontextmanager
async def locked(dsn: str, upload_id: UUID) -> AsyncIterator[asyncpg.Connection | None]:
    """A connection holding the upload's lock, or None when someone else holds it."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await db.init_connection(conn)
        got = await conn.fetchval(
            "SELECT pg_try_advisory_lock($1, $2)", LOCK_SPACE, _lock_key(upload_id)
        )
        yield conn if got else None
    finally:
        await conn.close()  # ends the session, and with it the lock


async def insert(conn: asyncpg.Connection, upload_id: UUID, owner: UUID, **fields: Any) -> None:
    """Create an upload row (column names come from code)."""
    await insert_row(conn, "resumable_uploads", {"id": upload_id, "owner_id": owner, **fields})


async def get(conn: asyncpg.Connection, upload_id: UUID) -> asyncpg.Record | None:
    """An upload, whatever its state."""
    return await conn.fetchrow("SELECT * FROM resumable_uploads WHERE id = $1", upload_id)


async def count_unfinished(conn: asyncpg.Connection, owner: UUID) -> int:
    """Uploads of `owner` still receiving bytes, counted under a per-owner transaction lock so
    two creations at once cannot both pass a cap (call inside a transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_SPACE + 1, _lock_key(owner))
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM resumable_uploads WHERE owner_id = $1 AND state = 'receiving' "
            "AND expires_at > now()",
            owner,
        )
    )


async def update(conn: asyncpg.Connection, upload_id: UUID, **fields: Any) -> None:
    """Set columns of an upload (names come from code)."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=2))
    await conn.execute(
        f"UPDATE resumable_uploads SET {assignments}, updated_at = clock_timestamp() WHERE id = $1",
        upload_id,
        *fields.values(),
    )


async def delete(conn: asyncpg.Connection, upload_id: UUID) -> None:
    """Forget an upload."""
    await conn.execute("DELETE FROM resumable_uploads WHERE id = $1", upload_id)


async def expired(conn: asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    """Uploads past their expiry, oldest first."""
    return await db.fetch(
        conn,
        "SELECT * FROM resumable_uploads WHERE expires_at <= now() ORDER BY expires_at LIMIT $1",
        limit,
    )


async def stalled_at_the_end(
    conn: asyncpg.Connection, idle_seconds: float, limit: int = 100
) -> list[asyncpg.Record]:
    """Uploads that received every byte but were never finished (their process died while
    checking them), untouched for `idle_seconds`."""
    return await db.fetch(
        conn,
        """SELECT * FROM resumable_uploads
           WHERE state = 'receiving' AND upload_offset = upload_length AND expires_at > now()
             AND updated_at < clock_timestamp() - make_interval(secs => $1)
           ORDER BY updated_at LIMIT $2""",
        idle_seconds,
        limit,
    )


async def ids_of(conn: asyncpg.Connection, upload_ids: list[UUID]) -> set[UUID]:
    """Which of these uploads still have a row."""
    rows = await conn.fetch("SELECT id FROM resumable_uploads WHERE id = ANY($1)", upload_ids)
    return {r["id"] for r in rows}
