"""Queries on the follow graph and the counters it keeps on users."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from storage import db


async def insert(conn: asyncpg.Connection, follower: UUID, followed: UUID) -> bool:
    """Add the edge; False when it already existed (a concurrent duplicate waits, then no-ops)."""
    return bool(
        await conn.fetchval(
            """INSERT INTO follows (follower_id, following_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""",
            follower,
            followed,
        )
    )


async def delete(conn: asyncpg.Connection, follower: UUID, followed: UUID) -> bool:
    """Remove the edge; False when there was none."""
    return bool(
        await conn.fetchval(
            "DELETE FROM follows WHERE follower_id = $1 AND following_id = $2 RETURNING true",
            follower,
            followed,
        )
    )


async def adjust_counts(
    conn: asyncpg.Connection, follower: UUID, followed: UUID, delta: int
) -> int:
    """Move both counters by `delta` and return the followed user's new follower_count.

    Rows are locked in id order so that A-follows-B and B-follows-A at once cannot deadlock.
    """
    await conn.execute(
        "SELECT 1 FROM users WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE",
        [follower, followed],
    )
    await conn.execute(
        "UPDATE users SET following_count = following_count + $2 WHERE id = $1",
        follower,
        delta,
    )
    count: int = await conn.fetchval(
        "UPDATE users SET follower_count = follower_count + $2 WHERE id = $1 "
        "RETURNING follower_count",
        followed,
        delta,
    )
    return count


async def follower_count(conn: asyncpg.Connection, user_id: UUID) -> int | None:
    """The user's follower_count, or None when there is no such user."""
    result: int | None = await conn.fetchval(
        "SELECT follower_count FROM users WHERE id = $1", user_id
    )
    return result


async def is_following(conn: asyncpg.Connection, follower: UUID, followed: UUID) -> bool:
    """Whether `follower` follows `followed`."""
    return bool(
        await conn.fetchval(
            "SELECT true FROM follows WHERE follower_id = $1 AND following_id = $2",
            follower,
            followed,
        )
    )


# The two listings differ only in which side of the edge is "mine" and which is shown.
_LIST_SQL = {
    "followers": ("following_id", "follower_id"),
    "following": ("follower_id", "following_id"),
}


async def list_page(
    conn: asyncpg.Connection,
    user_id: UUID,
    direction: str,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, UUID] | None = None,
) -> list[asyncpg.Record]:
    """One page of followers or followings, newest first; keyset when `after` is given."""
    mine, shown = _LIST_SQL[direction]
    keyset = f"AND (f.created_at, f.{shown}) < ($3, $4)" if after else ""
    args: list[object] = [user_id, limit]
    if after:
        args += [after[0], after[1]]
    else:
        args.append(offset)
    offset_sql = "" if after else "OFFSET $3"
    return await db.fetch(
        conn,
        f"""SELECT u.id, u.username, u.display_name, u.avatar_url, u.verified,
                   u.follower_count, f.created_at AS followed_at
            FROM follows f JOIN users u ON u.id = f.{shown}
            WHERE f.{mine} = $1 {keyset}
            ORDER BY f.created_at DESC, f.{shown} DESC
            LIMIT $2 {offset_sql}""",
        *args,
    )


async def follower_ids(conn: asyncpg.Connection, user_id: UUID) -> list[UUID]:
    """Everyone who follows `user_id`."""
    rows = await conn.fetch("SELECT follower_id FROM follows WHERE following_id = $1", user_id)
    return [r["follower_id"] for r in rows]


async def followed_ids(conn: asyncpg.Connection, user_id: UUID, limit: int) -> list[UUID]:
    """Whom `user_id` follows (at most `limit`, most recently followed first)."""
    rows = await conn.fetch(
        """SELECT following_id FROM follows WHERE follower_id = $1
           ORDER BY created_at DESC LIMIT $2""",
        user_id,
        limit,
    )
    return [r["following_id"] for r in rows]
