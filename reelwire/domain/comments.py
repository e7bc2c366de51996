"""Comments and replies on videos (the CLUTCH API), with reactions. Each change is published on the
video's channel after its transaction commits."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from reelwire.domain import events, present, videos
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import Forbidden, NotFound, ValidationFailed
from reelwire.domain.paging import PageRequest, decode_time_cursor, next_cursor, pagination
from storage import comments as comment_rows

COMMENT_NOT_FOUND = "Comment not found"


async def create(
    ctx: Services,
    principal: Principal,
    video_id: UUID,
    content: str,
    parent_id: UUID | None = None,
) -> dict[str, Any]:
    """Post a comment, or a reply when `parent_id` is given (replies to replies join the thread
    of the top-level comment, so threads stay one level deep)."""
    await videos.visible(ctx, video_id, principal)
    async with ctx.db.acquire() as conn, conn.transaction():
        if parent_id is not None:
            parent = await comment_rows.get(conn, parent_id)
            if parent is None or parent["video_id"] != video_id:
                raise ValidationFailed(
                    "The comment you reply to is not on this video",
                    field_errors={"parent_comment_id": ["No such comment on this video."]},
                )
            parent_id = parent["parent_id"] or parent_id
        try:
            row, counts = await comment_rows.insert(
                conn, video_id, principal.user_id, parent_id, content
            )
        except asyncpg.ForeignKeyViolationError:  # the video or parent went meanwhile
            raise NotFound(COMMENT_NOT_FOUND if parent_id else videos.VIDEO_NOT_FOUND) from None
    comment = present.comment(row)
    # the comment first: a `video_update` counting it is then current to the comment's offset
    await events.new_comment(ctx, video_id, comment)
    await events.video_counts(ctx, video_id, counts)
    return comment


async def list_top_level(
    ctx: Services, video_id: UUID, viewer: Principal | None, sort: str, page: PageRequest
) -> dict[str, Any]:
    """A video's top-level comments, `newest`, `oldest` or `top` (most liked) first."""
    await videos.visible(ctx, video_id, viewer)
    if page.cursor and sort == "top":
        raise ValidationFailed(
            "sort=top pages by page number", field_errors={"cursor": ["Use page with sort=top."]}
        )
    after = decode_time_cursor(page.cursor) if page.cursor else None
    async with ctx.db.acquire() as conn:
        rows = await comment_rows.top_level(
            conn, video_id, sort=sort, limit=page.limit, offset=page.offset, after=after
        )
        total = await comment_rows.top_level_count(conn, video_id)
        shaped = await _with_interaction(conn, rows, viewer)
    cursor = next_cursor(rows, page) if sort != "top" else None
    return {
        "comments": shaped,
        "pagination": pagination(page, total, len(rows)),
        "next_cursor": cursor,
    }


async def list_replies(
    ctx: Services, comment_id: UUID, viewer: Principal | None, page: PageRequest
) -> dict[str, Any]:
    """Replies to a comment, oldest first."""
    parent, _ = await _visible_comment(ctx, comment_id, viewer)
    after = decode_time_cursor(page.cursor) if page.cursor else None
    async with ctx.db.acquire() as conn:
        rows = await comment_rows.replies(
            conn, comment_id, limit=page.limit, offset=page.offset, after=after
        )
        shaped = await _with_interaction(conn, rows, viewer)
    return {
        "replies": shaped,
        "pagination": pagination(page, parent["reply_count"], len(rows)),
        "next_cursor": next_cursor(rows, page),
    }


async def edit(
    ctx: Services, principal: Principal, comment_id: UUID, content: str
) -> dict[str, Any]:
    """Change your own comment's text; it is marked `edited`."""
    row, _ = await _visible_comment(ctx, comment_id, principal)
    if row["user_id"] != principal.user_id:
        raise Forbidden("Only the author can edit this comment")
    async with ctx.db.acquire() as conn, conn.transaction():
        await comment_rows.edit(conn, comment_id, content)
        updated = await comment_rows.get(conn, comment_id)
        kind = (await comment_rows.reactions_of(conn, principal.user_id, [comment_id])).get(
            comment_id, 0
        )
    assert updated is not None
    await events.comment_updated(ctx, row["video_id"], present.comment(updated))
    return present.comment(updated, kind)


async def delete(ctx: Services, principal: Principal, comment_id: UUID) -> dict[str, Any]:
    """Delete a comment and its replies: by its author, the video's owner, or an admin."""
    row, video = await _visible_comment(ctx, comment_id, principal)
    allowed = (
        row["user_id"] == principal.user_id
        or video["author"]["id"] == str(principal.user_id)
        or principal.is_admin
    )
    if not allowed:
        raise Forbidden("Only the author, the video's owner or an admin can delete this comment")
    async with ctx.db.acquire() as conn, conn.transaction():
        locked = await comment_rows.get_for_update(conn, comment_id)
        if locked is None:  # deleted meanwhile (perhaps with its parent)
            raise NotFound(COMMENT_NOT_FOUND)
        counts = await comment_rows.delete(conn, locked)
    await events.comment_deleted(ctx, row["video_id"], comment_id, row["parent_id"])
    await events.video_counts(ctx, row["video_id"], counts)
    return {"message": "Comment deleted"}


async def react(
    ctx: Services, principal: Principal, comment_id: UUID, action: str
) -> dict[str, Any]:
    """Like, dislike or remove your reaction to a comment."""
    row, _ = await _visible_comment(ctx, comment_id, principal)
    kind = videos.REACTIONS[action]
    async with ctx.db.acquire() as conn:
        counts = await comment_rows.set_reaction(conn, comment_id, principal.user_id, kind)
    if counts is None:
        raise NotFound(COMMENT_NOT_FOUND)
    if counts["changed"]:
        changed = {
            "id": str(comment_id),
            "parent_comment_id": str(row["parent_id"]) if row["parent_id"] else None,
            "like_count": counts["like_count"],
            "dislike_count": counts["dislike_count"],
        }
        await events.comment_updated(ctx, row["video_id"], changed)
    return {
        "user_action": present.REACTION_NAMES[kind],
        "like_count": counts["like_count"],
        "dislike_count": counts["dislike_count"],
    }


async def _visible_comment(
    ctx: Services, comment_id: UUID, viewer: Principal | None
) -> tuple[asyncpg.Record, dict[str, Any]]:
    """The comment and its video, if the viewer may see the video (a hidden video's comments do
    not exist)."""
    async with ctx.db.acquire() as conn:
        row = await comment_rows.get(conn, comment_id)
    if row is None:
        raise NotFound(COMMENT_NOT_FOUND)
    try:
        return row, await videos.visible(ctx, row["video_id"], viewer)
    except NotFound:
        raise NotFound(COMMENT_NOT_FOUND) from None


async def _with_interaction(
    conn: asyncpg.Connection, rows: list[asyncpg.Record], viewer: Principal | None
) -> list[dict[str, Any]]:
    kinds: dict[UUID, int] = {}
    if viewer is not None and rows:
        kinds = await comment_rows.reactions_of(conn, viewer.user_id, [r["id"] for r in rows])
    return [present.comment(r, kinds.get(r["id"], 0)) for r in rows]
