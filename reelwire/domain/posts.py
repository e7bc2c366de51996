"""Posts and communities (the upload-flow API). A post may carry one of its author's videos."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from reelwire.domain import present, videos
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import Conflict, NotFound, ValidationFailed
from reelwire.domain.paging import PageRequest, decode_time_cursor, next_cursor, pagination
from storage import posts as post_rows
from storage import videos as video_rows

COMMUNITY_NOT_FOUND = "Community not found"


async def create_post(
    ctx: Services,
    principal: Principal,
    *,
    content: str,
    video_id: UUID | None,
    community_id: UUID | None,
) -> dict[str, Any]:
    """The upload-flow API's post: the video must be the caller's own and ready."""
    if not content.strip() and video_id is None:
        raise ValidationFailed(
            "A post needs content or a video", field_errors={"content": ["Must not be empty."]}
        )
    async with ctx.db.acquire() as conn, conn.transaction():
        if video_id is not None:
            video = await video_rows.get(conn, video_id)
            if video is None or video["owner_id"] != principal.user_id:
                raise NotFound(videos.VIDEO_NOT_FOUND)
            if video["status"] != "ready":
                raise ValidationFailed("Video is still processing")
            if video["visibility"] == "private":
                # a post is public: it would show a private video to everyone
                raise ValidationFailed("Make the video public or unlisted before posting it")
        if community_id is not None and not await post_rows.community_exists(conn, community_id):
            raise NotFound(COMMUNITY_NOT_FOUND)
        row = await post_rows.insert_post(
            conn,
            principal.user_id,
            content=content,
            kind="video" if video_id else "text",
            video_id=video_id,
            community_id=community_id,
        )
    return _post(row, ctx)


async def list_posts(ctx: Services, community_id: UUID | None, page: PageRequest) -> dict[str, Any]:
    """Posts newest first, everywhere or in one community."""
    after = decode_time_cursor(page.cursor) if page.cursor else None
    async with ctx.db.acquire() as conn:
        if community_id is not None and not await post_rows.community_exists(conn, community_id):
            raise NotFound(COMMUNITY_NOT_FOUND)
        rows = await post_rows.posts_page(
            conn, community_id=community_id, limit=page.limit, offset=page.offset, after=after
        )
        total = await post_rows.posts_count(conn, community_id)
    return {
        "posts": [_post(r, ctx) for r in rows],
        "pagination": pagination(page, total, len(rows)),
        "next_cursor": next_cursor(rows, page),
    }


async def create_community(
    ctx: Services, principal: Principal, name: str, description: str
) -> dict[str, Any]:
    """A new community; 409 when the name is taken."""
    async with ctx.db.acquire() as conn:
        row = await post_rows.insert_community(conn, principal.user_id, name, description)
    if row is None:
        raise Conflict("A community with this name already exists")
    return _community(row)


async def list_communities(ctx: Services, page: PageRequest) -> dict[str, Any]:
    """Communities, newest first."""
    after = decode_time_cursor(page.cursor) if page.cursor else None
    async with ctx.db.acquire() as conn:
        rows = await post_rows.communities_page(
            conn, limit=page.limit, offset=page.offset, after=after
        )
        total = await post_rows.communities_count(conn)
    return {
        "communities": [_community(r) for r in rows],
        "pagination": pagination(page, total, len(rows)),
        "next_cursor": next_cursor(rows, page),
    }


def _post(row: asyncpg.Record, ctx: Services) -> dict[str, Any]:
    media = None
    if row["video_id"] is not None and row["video_status"] is not None:
        external = row["external"] or {}
        media = {
            "type": "video",
            "videoId": str(row["video_id"]),
            "url": ctx.blobs.url(row["hls_key"])
            if row["hls_key"]
            else external.get("playback_url"),
            "thumbnail": ctx.blobs.url(row["thumbnail_key"])
            if row["thumbnail_key"]
            else external.get("thumbnail_url"),
            "duration": row["duration"],
        }
    community = None
    if row["community_id"] is not None:
        community = {"id": str(row["community_id"]), "name": row["community_name"]}
    return {
        "id": str(row["id"]),
        "content": row["content"],
        "type": row["type"],
        "author": {
            "id": str(row["user_id"]),
            "name": row["display_name"],
            "username": row["username"],
            "avatar": row["avatar_url"] or present.DEFAULT_AVATAR_URL,
            "verified": row["verified"],
        },
        "media": media,
        "community": community,
        "likes": row["likes_count"],
        "comments": row["comments_count"],
        "shares": row["shares_count"],
        "views": row["views_count"],
        "timestamp": present.iso(row["created_at"]),
        "isLiked": False,
        "isSaved": False,
    }


def _community(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "description": row["description"],
        "owner_id": str(row["owner_id"]) if row["owner_id"] else None,
        "post_count": row["post_count"],
        "created_at": present.iso(row["created_at"]),
    }
