"""Queries on videos. Functions take the connection first; the caller owns the transaction."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.db import insert_row

# A video with its author, as every read renders it.
_SELECT = """
    SELECT v.*, u.username AS author_username, u.display_name AS author_display_name,
           u.avatar_url AS author_avatar_url, u.follower_count AS author_follower_count,
           u.verified AS author_verified
    FROM videos v JOIN users u ON u.id = v.owner_id
"""
_LIBRARY_SORTS = {
    "created_at": "v.created_at",
    "filename": "v.original_filename",
    "file_size": "v.file_size",
    "duration": "v.duration",
}


async def insert(conn: asyncpg.Connection, video_id: UUID, owner: UUID, **fields: Any) -> None:
    """Create a video row with the given columns (names come from code, never from input)."""
    await insert_row(conn, "videos", {"id": video_id, "owner_id": owner, **fields})


async def get(conn: asyncpg.Connection, video_id: UUID) -> asyncpg.Record | None:
    """A live (not deleted) video with its author."""
    return await conn.fetchrow(f"{_SELECT} WHERE v.id = $1 AND v.deleted_at IS NULL", video_id)


async def get_for_update(conn: asyncpg.Connection, video_id: UUID) -> asyncpg.Record | None:
    """A live video row, locked."""
    return await conn.fetchrow(
        "SELECT * FROM videos WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", video_id
    )


async def update(conn: asyncpg.Connection, video_id: UUID, **fields: Any) -> bool:
    """Set columns on a live video; False when it is gone."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=2))
    result = await conn.execute(
        f"UPDATE videos SET {assignments}, updated_at = clock_timestamp() "
        "WHERE id = $1 AND deleted_at IS NULL",
        video_id,
        *fields.values(),
    )
    return bool(result != "UPDATE 0")


async def soft_delete(conn: asyncpg.Connection, video_id: UUID) -> asyncpg.Record | None:
    """Mark deleted; returns the row (for its media keys) or None if already gone."""
    return await conn.fetchrow(
        """UPDATE videos SET deleted_at = now(), status = CASE WHEN status = 'ready'
               THEN status ELSE 'failed' END
           WHERE id = $1 AND deleted_at IS NULL RETURNING *""",
        video_id,
    )


async def by_source_key(conn: asyncpg.Connection, owner: UUID, key: str) -> asyncpg.Record | None:
    """The caller's live video stored under `key` (seed 002's by-key lookup)."""
    return await conn.fetchrow(
        f"{_SELECT} WHERE v.owner_id = $1 AND v.source_key = $2 AND v.deleted_at IS NULL",
        owner,
        key,
    )


async def library_page(
    conn: asyncpg.Connection,
    owner: UUID,
    *,
    search: str | None,
    sort_by: str,
    descending: bool,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """One page of the caller's own videos (seed 002) and the total count."""
    order = _LIBRARY_SORTS[sort_by]
    direction = "DESC" if descending else "ASC"
    where = "v.owner_id = $1 AND v.deleted_at IS NULL"
    args: list[Any] = [owner]
    if search:
        args.append(f"%{_escape_like(search)}%")
        where += f" AND (v.original_filename ILIKE ${len(args)} OR v.title ILIKE ${len(args)})"
    total = await conn.fetchval(f"SELECT count(*) FROM videos v WHERE {where}", *args)
    rows = await conn.fetch(
        f"{_SELECT} WHERE {where} ORDER BY {order} {direction} NULLS LAST, v.id {direction} "
        f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args,
        limit,
        offset,
    )
    return rows, int(total)


async def stale_unfinished(conn: asyncpg.Connection, older_than_seconds: float) -> list[UUID]:
    """Videos queued or processing that nobody has touched for a long time."""
    rows = await conn.fetch(
        """SELECT id FROM videos WHERE status IN ('pending', 'processing')
           AND provider = 'reelwire' AND deleted_at IS NULL AND source_key IS NOT NULL
           AND updated_at < now() - make_interval(secs => $1) LIMIT 100""",
        older_than_seconds,
    )
    return [r["id"] for r in rows]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
