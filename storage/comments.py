"""Queries on comments and their reactions. The caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from storage import db

_SELECT = """
    SELECT c.*, u.username AS author_username, u.display_name AS author_display_name,
           u.avatar_url AS author_avatar_url, u.verified AS author_verified
    FROM comments c JOIN users u ON u.id = c.user_id
"""
# sort -> ORDER BY of top-level comments; newest and oldest also page by keyset.
_TOP_LEVEL_ORDER = {
    "newest": "c.created_at DESC, c.id DESC",
    "oldest": "c.created_at ASC, c.id ASC",
    "top": "c.like_count DESC, c.created_at DESC, c.id DESC",
}
_KEYSET = {"newest": "<", "oldest": ">"}

_VIDEO_COUNTS = """
    UPDATE videos SET comment_count = comment_count + $2, counts_version = counts_version + 1
    WHERE id = $1
    RETURNING like_count, dislike_count, comment_count, counts_version
"""


async def get(conn: asyncpg.Connection, comment_id: UUID) -> asyncpg.Record | None:
    """A comment with its author."""
    return await conn.fetchrow(f"{_SELECT} WHERE c.id = $1", comment_id)


async def get_for_update(conn: asyncpg.Connection, comment_id: UUID) -> asyncpg.Record | None:
    """A comment, locked until the transaction ends."""
    return await conn.fetchrow("SELECT * FROM comments WHERE id = $1 FOR UPDATE", comment_id)


async def insert(
    conn: asyncpg.Connection, video_id: UUID, user_id: UUID, parent: UUID | None, content: str
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Add a comment and move the counters; (the comment, the video's new counts)."""
    comment_id = await conn.fetchval(
        """INSERT INTO comments (video_id, user_id, parent_id, content)
           VALUES ($1, $2, $3, $4) RETURNING id""",
        video_id,
        user_id,
        parent,
        content,
    )
    if parent is not None:
        await conn.execute(
            "UPDATE comments SET reply_count = reply_count + 1 WHERE id = $1", parent
        )
    counts = await conn.fetchrow(_VIDEO_COUNTS, video_id, 1)
    row = await get(conn, comment_id)
    assert row is not None
    return row, counts


async def edit(conn: asyncpg.Connection, comment_id: UUID, content: str) -> None:
    """Replace the text and mark the comment edited."""
    await conn.execute(
        """UPDATE comments SET content = $2, edited = true, updated_at = clock_timestamp()
           WHERE id = $1""",
        comment_id,
        content,
    )


async def delete(conn: asyncpg.Connection, comment: asyncpg.Record) -> asyncpg.Record:
    """Delete a comment and its replies; the video's new counts."""
    removed = await conn.fetchval(
        "DELETE FROM comments WHERE id = $1 RETURNING 1 + reply_count", comment["id"]
    )
    if comment["parent_id"] is not None:
        await conn.execute(
            "UPDATE comments SET reply_count = reply_count - 1 WHERE id = $1",
            comment["parent_id"],
        )
    counts: asyncpg.Record = await conn.fetchrow(_VIDEO_COUNTS, comment["video_id"], -removed)
    return counts


async def top_level(
    conn: asyncpg.Connection,
    video_id: UUID,
    *,
    sort: str,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, UUID] | None = None,
) -> list[asyncpg.Record]:
    """One page of a video's top-level comments."""
    args: list[Any] = [video_id, limit]
    where = "c.video_id = $1 AND c.parent_id IS NULL"
    if after is not None:
        args += [after[0], after[1]]
        where += f" AND (c.created_at, c.id) {_KEYSET[sort]} ($3, $4)"
    sql = f"{_SELECT} WHERE {where} ORDER BY {_TOP_LEVEL_ORDER[sort]} LIMIT $2"
    if after is None and offset:
        args.append(offset)
        sql += " OFFSET $3"
    return await db.fetch(conn, sql, *args)


async def top_level_count(conn: asyncpg.Connection, video_id: UUID) -> int:
    """How many top-level comments a video has."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM comments WHERE video_id = $1 AND parent_id IS NULL", video_id
        )
    )


async def replies(
    conn: asyncpg.Connection,
    parent: UUID,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, UUID] | None = None,
) -> list[asyncpg.Record]:
    """One page of replies to a comment, oldest first (a thread reads top-down)."""
    args: list[Any] = [parent, limit]
    keyset = ""
    if after is not None:
        args += [after[0], after[1]]
        keyset = "AND (c.created_at, c.id) > ($3, $4)"
    sql = f"{_SELECT} WHERE c.parent_id = $1 {keyset} ORDER BY c.created_at, c.id LIMIT $2"
    if after is None and offset:
        args.append(offset)
        sql += " OFFSET $3"
    return await db.fetch(conn, sql, *args)


async def reactions_of(
    conn: asyncpg.Connection, user_id: UUID, comment_ids: list[UUID]
) -> dict[UUID, int]:
    """The user's reactions to these comments (1 like, -1 dislike)."""
    rows = await conn.fetch(
        "SELECT comment_id, kind FROM comment_reactions "
        "WHERE user_id = $1 AND comment_id = ANY($2::uuid[])",
        user_id,
        comment_ids,
    )
    return {r["comment_id"]: r["kind"] for r in rows}


async def set_reaction(
    conn: asyncpg.Connection, comment_id: UUID, user_id: UUID, kind: int
) -> asyncpg.Record | None:
    """Set (1, -1) or remove (0) a reaction; the new counts, or None if no such comment."""
    return await conn.fetchrow(
        "SELECT * FROM set_comment_reaction($1, $2, $3::smallint)", comment_id, user_id, kind
    )
