"""Queries on videos. Functions take the connection first; the caller owns the transaction."""

from __future__ import annotations

import random
from typing import Any
from uuid import UUID

import asyncpg

from storage import db
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
    """The caller's live video stored under `key` (the S3 video library API's by-key lookup)."""
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
    """One page of the caller's own videos (the S3 video library API) and the total count."""
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


# The public catalogue: what anyone may find in lists.
# The counters kept in a video's row, changed with `counts_version` in the same UPDATE; the one
# list of their names (the cache, the events and the sockets' video state all use it).
COUNTERS = ("like_count", "dislike_count", "comment_count")
_PUBLIC = "v.status = 'ready' AND v.visibility = 'public' AND v.deleted_at IS NULL"
# sort -> the column a list is ordered (and keyset-paged) by, descending, ties broken by id.
_LIST_SORTS = {
    "latest": "v.published_at",
    "popular": "v.view_count",
}


def _list_filters(
    category: str | None, tags: list[str], q: str | None, args: list[Any], author: UUID | None
) -> str:
    where = _PUBLIC
    if author:
        args.append(author)
        where += f" AND v.owner_id = ${len(args)}"
    if category:
        args.append(category)
        where += f" AND lower(v.category) = lower(${len(args)})"
    if tags:
        args.append(tags)
        where += f" AND v.tags @> ${len(args)}::text[]"
    if q:
        args.append(q)
        where += f" AND v.search @@ websearch_to_tsquery('simple', ${len(args)})"
    return where


async def public_page(
    conn: asyncpg.Connection,
    *,
    sort: str,
    category: str | None = None,
    tags: list[str] | None = None,
    q: str | None = None,
    author: UUID | None = None,
    limit: int,
    offset: int = 0,
    after: tuple[Any, UUID] | None = None,
) -> list[asyncpg.Record]:
    """One page of public, ready videos, by `latest` or `popular`; keyset when `after` is given."""
    column = _LIST_SORTS[sort]
    args: list[Any] = []
    where = _list_filters(category, tags or [], q, args, author)
    if after is not None:
        args += [after[0], after[1]]
        where += f" AND ({column}, v.id) < (${len(args) - 1}, ${len(args)})"
    args.append(limit)
    sql = f"{_SELECT} WHERE {where} ORDER BY {column} DESC, v.id DESC LIMIT ${len(args)}"
    if after is None and offset:
        args.append(offset)
        sql += f" OFFSET ${len(args)}"
    return await db.fetch(conn, sql, *args)


async def public_count(
    conn: asyncpg.Connection,
    *,
    category: str | None = None,
    tags: list[str] | None = None,
    q: str | None = None,
    author: UUID | None = None,
) -> int:
    """How many public, ready videos match the filters."""
    args: list[Any] = []
    where = _list_filters(category, tags or [], q, args, author)
    return int(await conn.fetchval(f"SELECT count(*) FROM videos v WHERE {where}", *args))


async def trending_ids(
    conn: asyncpg.Connection,
    *,
    category: str | None = None,
    tags: list[str] | None = None,
    q: str | None = None,
    author: UUID | None = None,
    window_days: int,
    limit: int,
) -> list[UUID]:
    """Ids of recent public videos by trending score, best first.

    score = (1 + views/10 + 2*likes - dislikes + 3*comments) / (hours since published + 2)^1.5:
    engagement decayed by age (the gravity of Hacker News' ranking), so a new video with a burst
    of engagement rises above an old one with more of it.
    """
    args: list[Any] = []
    where = _list_filters(category, tags or [], q, args, author)
    args += [window_days, limit]
    rows = await conn.fetch(
        f"""SELECT v.id FROM videos v
            WHERE {where} AND v.published_at > now() - make_interval(days => ${len(args) - 1})
            ORDER BY (1 + v.view_count / 10.0 + 2 * v.like_count - v.dislike_count
                      + 3 * v.comment_count)
                     / power(extract(epoch FROM now() - v.published_at) / 3600 + 2, 1.5) DESC,
                     v.id DESC
            LIMIT ${len(args)}""",
        *args,
    )
    return [r["id"] for r in rows]


async def by_ids(conn: asyncpg.Connection, ids: list[UUID]) -> list[asyncpg.Record]:
    """Live public videos among `ids`, in the order given."""
    rows = await conn.fetch(f"{_SELECT} WHERE v.id = ANY($1::uuid[]) AND {_PUBLIC}", ids)
    by_id = {r["id"]: r for r in rows}
    return [by_id[i] for i in ids if i in by_id]


async def followed_page(
    conn: asyncpg.Connection,
    viewer: UUID,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[Any, UUID] | None = None,
) -> list[asyncpg.Record]:
    """Public, ready videos by the users `viewer` follows, newest first."""
    args: list[Any] = [viewer, limit]
    keyset = ""
    if after is not None:
        args += [after[0], after[1]]
        keyset = "AND (v.published_at, v.id) < ($3, $4)"
    sql = f"""{_SELECT} JOIN follows f ON f.following_id = v.owner_id AND f.follower_id = $1
              WHERE {_PUBLIC} {keyset} ORDER BY v.published_at DESC, v.id DESC LIMIT $2"""
    if after is None and offset:
        args.append(offset)
        sql += " OFFSET $3"
    return await db.fetch(conn, sql, *args)


async def followed_count(conn: asyncpg.Connection, viewer: UUID) -> int:
    """How many public, ready videos the users `viewer` follows have."""
    return int(
        await conn.fetchval(
            f"""SELECT count(*) FROM videos v
                JOIN follows f ON f.following_id = v.owner_id AND f.follower_id = $1
                WHERE {_PUBLIC}""",
            viewer,
        )
    )


async def reaction_of(conn: asyncpg.Connection, video_id: UUID, user_id: UUID) -> int:
    """The user's reaction to a video: 1 like, -1 dislike, 0 none."""
    kind = await conn.fetchval(
        "SELECT kind FROM video_reactions WHERE video_id = $1 AND user_id = $2", video_id, user_id
    )
    return int(kind or 0)


async def set_reaction(
    conn: asyncpg.Connection, video_id: UUID, user_id: UUID, kind: int, *, admin: bool
) -> asyncpg.Record | None:
    """Set (1, -1) or remove (0) a reaction; new counts and version, or None when there is no
    such video the user may see."""
    return await conn.fetchrow(
        "SELECT * FROM set_video_reaction($1, $2, $3::smallint, $4)", video_id, user_id, kind, admin
    )


async def counts(conn: asyncpg.Connection, video_id: UUID) -> asyncpg.Record | None:
    """The counters kept in PostgreSQL, with their version."""
    return await conn.fetchrow(
        """SELECT view_count, like_count, dislike_count, comment_count, counts_version
           FROM videos WHERE id = $1 AND deleted_at IS NULL""",
        video_id,
    )


async def add_view(conn: asyncpg.Connection, video_id: UUID, watch_seconds: int) -> int | None:
    """Count one view straight into the row; the new count, or None when there is no video."""
    count = await conn.fetchval(
        """UPDATE videos SET view_count = view_count + 1,
                  watch_time_seconds = watch_time_seconds + $2
           WHERE id = $1 AND deleted_at IS NULL RETURNING view_count""",
        video_id,
        watch_seconds,
    )
    return None if count is None else int(count)


async def add_views_once(
    conn: asyncpg.Connection,
    batch_id: UUID,
    ids: list[UUID],
    views: list[int],
    watch_seconds: list[int],
) -> bool:
    """Add a batch of counted views and watch time unless this batch was added already."""
    fresh = await conn.fetchval(
        "INSERT INTO counter_flushes (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
        batch_id,
    )
    if not fresh:
        return False
    if random.random() < 0.01:
        await conn.execute(
            "DELETE FROM counter_flushes WHERE flushed_at < now() - interval '1 day'"
        )
    await conn.execute(
        """UPDATE videos v SET view_count = v.view_count + d.views,
                  watch_time_seconds = v.watch_time_seconds + d.watch
           FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS d(id, views, watch)
           WHERE v.id = d.id""",
        ids,
        views,
        watch_seconds,
    )
    return True


async def owner_totals(conn: asyncpg.Connection, owner: UUID) -> asyncpg.Record:
    """A creator's figures: videos, views and likes received, over live videos."""
    row: asyncpg.Record = await conn.fetchrow(
        """SELECT count(*) AS total_videos, coalesce(sum(view_count), 0) AS total_views,
                  coalesce(sum(like_count), 0) AS total_likes_received
           FROM videos WHERE owner_id = $1 AND deleted_at IS NULL AND source <> 'clip'""",
        owner,
    )
    return row


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
