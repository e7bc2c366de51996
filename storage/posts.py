"""Queries on posts and communities (the upload-flow API). The caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from storage import db

_SELECT_POST = """
    SELECT p.*, u.username, u.display_name, u.avatar_url, u.verified,
           c.name AS community_name,
           v.hls_key, v.thumbnail_key, v.duration, v.external, v.status AS video_status
    FROM posts p JOIN users u ON u.id = p.user_id
    LEFT JOIN communities c ON c.id = p.community_id
    LEFT JOIN videos v ON v.id = p.video_id AND v.deleted_at IS NULL
"""


async def insert_post(
    conn: asyncpg.Connection,
    user_id: UUID,
    *,
    content: str,
    kind: str,
    video_id: UUID | None,
    community_id: UUID | None,
) -> asyncpg.Record:
    """Create a post (and count it in its community); the post as lists show it."""
    post_id = await conn.fetchval(
        """INSERT INTO posts (user_id, content, type, video_id, community_id)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        user_id,
        content,
        kind,
        video_id,
        community_id,
    )
    if community_id is not None:
        await conn.execute(
            "UPDATE communities SET post_count = post_count + 1 WHERE id = $1", community_id
        )
    row = await conn.fetchrow(f"{_SELECT_POST} WHERE p.id = $1", post_id)
    assert row is not None
    return row


async def posts_page(
    conn: asyncpg.Connection,
    *,
    community_id: UUID | None,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, UUID] | None = None,
) -> list[asyncpg.Record]:
    """Posts newest first, in one community or everywhere."""
    args: list[Any] = [limit]
    where = "true"
    if community_id is not None:
        args.append(community_id)
        where = f"p.community_id = ${len(args)}"
    if after is not None:
        args += [after[0], after[1]]
        where += f" AND (p.created_at, p.id) < (${len(args) - 1}, ${len(args)})"
    sql = f"{_SELECT_POST} WHERE {where} ORDER BY p.created_at DESC, p.id DESC LIMIT $1"
    if after is None and offset:
        args.append(offset)
        sql += f" OFFSET ${len(args)}"
    return await db.fetch(conn, sql, *args)


async def posts_count(conn: asyncpg.Connection, community_id: UUID | None) -> int:
    """How many posts, in one community or everywhere."""
    if community_id is None:
        return int(await conn.fetchval("SELECT count(*) FROM posts"))
    return int(
        await conn.fetchval("SELECT count(*) FROM posts WHERE community_id = $1", community_id)
    )


async def insert_community(
    conn: asyncpg.Connection, owner: UUID, name: str, description: str
) -> asyncpg.Record | None:
    """Create a community; None when the name is taken (names are unique ignoring case)."""
    return await conn.fetchrow(
        """INSERT INTO communities (owner_id, name, description) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING *""",
        owner,
        name,
        description,
    )


async def community_exists(conn: asyncpg.Connection, community_id: UUID) -> bool:
    """Whether a community exists."""
    return bool(await conn.fetchval("SELECT true FROM communities WHERE id = $1", community_id))


async def communities_page(
    conn: asyncpg.Connection,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, UUID] | None = None,
) -> list[asyncpg.Record]:
    """Communities, newest first."""
    if after is not None:
        return await db.fetch(
            conn,
            """SELECT * FROM communities WHERE (created_at, id) < ($2, $3)
               ORDER BY created_at DESC, id DESC LIMIT $1""",
            limit,
            *after,
        )
    return await db.fetch(
        conn,
        "SELECT * FROM communities ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2",
        limit,
        offset,
    )


async def communities_count(conn: asyncpg.Connection) -> int:
    """How many communities exist."""
    return int(await conn.fetchval("SELECT count(*) FROM communities"))
