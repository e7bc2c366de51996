"""Queries on clips (24-hour stories). Every read filters on expires_at: an expired clip is gone
from every route the moment it expires, whatever the sweep has done. The lists leave out a clip
whose video is still being uploaded (a resumable upload): it is posted when its bytes are in."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from storage import db
from storage.db import insert_row

_SELECT = """
    SELECT c.*, u.username AS uploaded_by, v.status AS video_status, v.hls_key,
           v.thumbnail_key AS video_thumbnail_key, v.preview_key AS video_preview_key,
           v.duration
    FROM clips c JOIN users u ON u.id = c.user_id LEFT JOIN videos v ON v.id = c.video_id
"""
_POSTED = "v.status IS DISTINCT FROM 'uploading'"


async def insert(conn: asyncpg.Connection, clip_id: UUID, user_id: UUID, **fields: Any) -> None:
    """Create a clip row (column names come from code)."""
    await insert_row(conn, "clips", {"id": clip_id, "user_id": user_id, **fields})


async def get_active(conn: asyncpg.Connection, clip_id: UUID) -> asyncpg.Record | None:
    """A clip that has not expired."""
    return await conn.fetchrow(f"{_SELECT} WHERE c.id = $1 AND c.expires_at > now()", clip_id)


async def active_by_video(conn: asyncpg.Connection, video_id: UUID) -> list[asyncpg.Record]:
    """The unexpired clips that show this video."""
    return await db.fetch(
        conn, f"{_SELECT} WHERE c.video_id = $1 AND c.expires_at > now()", video_id
    )


async def get_any(conn: asyncpg.Connection, clip_id: UUID) -> asyncpg.Record | None:
    """A clip whether or not it expired (for jobs finishing its media)."""
    return await conn.fetchrow(f"{_SELECT} WHERE c.id = $1", clip_id)


async def user_clips(conn: asyncpg.Connection, user_id: UUID) -> list[asyncpg.Record]:
    """A user's live clips, newest first."""
    return await db.fetch(
        conn,
        f"""{_SELECT} WHERE c.user_id = $1 AND c.expires_at > now() AND {_POSTED}
            ORDER BY c.created_at DESC""",
        user_id,
    )


async def followed_clips(
    conn: asyncpg.Connection, viewer: UUID, limit: int = 500
) -> list[asyncpg.Record]:
    """Live clips of everyone `viewer` follows, newest first."""
    return await db.fetch(
        conn,
        f"""{_SELECT} JOIN follows f ON f.following_id = c.user_id AND f.follower_id = $1
            WHERE c.expires_at > now() AND {_POSTED} ORDER BY c.created_at DESC LIMIT $2""",
        viewer,
        limit,
    )


async def record_view(
    conn: asyncpg.Connection, clip_id: UUID, viewer: UUID
) -> tuple[datetime | None, int]:
    """Count `viewer` once on a live clip; (when they viewed, if this view was new, else None;
    the clip's count)."""
    viewed_at = await conn.fetchval(
        """INSERT INTO clip_views (clip_id, viewer_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING viewed_at""",
        clip_id,
        viewer,
    )
    if viewed_at is not None:
        count = await conn.fetchval(
            "UPDATE clips SET view_count = view_count + 1 WHERE id = $1 RETURNING view_count",
            clip_id,
        )
    else:
        count = await conn.fetchval("SELECT view_count FROM clips WHERE id = $1", clip_id)
    return viewed_at, int(count)


async def viewers(
    conn: asyncpg.Connection,
    clip_id: UUID,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[datetime, UUID] | None = None,
) -> list[asyncpg.Record]:
    """One page of who viewed a clip, latest first; keyset (viewed_at, viewer) when `after` is
    given, so views arriving meanwhile (all newer) neither repeat nor shift a row."""
    keyset = "AND (cv.viewed_at, cv.viewer_id) < ($3, $4)" if after else ""
    args: list[object] = [clip_id, limit]
    if after:
        args += [after[0], after[1]]
    else:
        args.append(offset)
    offset_sql = "" if after else "OFFSET $3"
    return await db.fetch(
        conn,
        f"""SELECT u.id, u.username, u.display_name, u.avatar_url, u.verified,
                   u.follower_count, cv.viewed_at
            FROM clip_views cv JOIN users u ON u.id = cv.viewer_id
            WHERE cv.clip_id = $1 {keyset}
            ORDER BY cv.viewed_at DESC, cv.viewer_id DESC
            LIMIT $2 {offset_sql}""",
        *args,
    )


async def add_reaction(conn: asyncpg.Connection, clip_id: UUID, user_id: UUID, emoji: str) -> bool:
    """Add an emoji reaction (each user may send each emoji once per clip); False if a repeat."""
    return bool(
        await conn.fetchval(
            """INSERT INTO clip_reactions (clip_id, user_id, emoji) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            clip_id,
            user_id,
            emoji,
        )
    )


async def reaction_counts(conn: asyncpg.Connection, clip_id: UUID) -> dict[str, int]:
    """Reactions to a clip, counted per emoji."""
    rows = await conn.fetch(
        "SELECT emoji, count(*) AS n FROM clip_reactions WHERE clip_id = $1 "
        "GROUP BY emoji ORDER BY n DESC, emoji",
        clip_id,
    )
    return {r["emoji"]: r["n"] for r in rows}


async def update(conn: asyncpg.Connection, clip_id: UUID, **fields: Any) -> None:
    """Set columns of a clip (names come from code)."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=2))
    await conn.execute(f"UPDATE clips SET {assignments} WHERE id = $1", clip_id, *fields.values())


async def delete(conn: asyncpg.Connection, clip_id: UUID) -> None:
    """Delete a clip row (its media is the caller's business)."""
    await conn.execute("DELETE FROM clips WHERE id = $1", clip_id)


async def mark_ready(conn: asyncpg.Connection, clip_id: UUID, **fields: Any) -> None:
    """Processing finished."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields, start=2))
    await conn.execute(
        f"UPDATE clips SET status = 'ready', error = NULL, {assignments} WHERE id = $1",
        clip_id,
        *fields.values(),
    )


async def mark_failed(conn: asyncpg.Connection, clip_id: UUID, reason: str) -> None:
    """Processing failed for good."""
    await conn.execute(
        "UPDATE clips SET status = 'failed', error = $2 WHERE id = $1", clip_id, reason
    )


async def delete_own(
    conn: asyncpg.Connection, clip_id: UUID, user_id: UUID
) -> asyncpg.Record | None:
    """Delete the caller's live clip; the row (for its media) or None."""
    return await conn.fetchrow(
        "DELETE FROM clips WHERE id = $1 AND user_id = $2 AND expires_at > now() RETURNING *",
        clip_id,
        user_id,
    )


async def delete_expired(
    conn: asyncpg.Connection, now: datetime | None = None
) -> list[asyncpg.Record]:
    """Delete expired clips (at most 1000 per call); their rows, for media cleanup."""
    return await db.fetch(
        conn,
        """DELETE FROM clips WHERE id IN (
               SELECT id FROM clips WHERE expires_at <= coalesce($1, now()) LIMIT 1000)
           RETURNING *""",
        now,
    )
