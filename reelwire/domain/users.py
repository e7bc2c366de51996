"""Profiles and the follow graph."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from reelwire.domain import events, present
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import Forbidden, NotFound, ValidationFailed
from reelwire.domain.paging import PageRequest, decode_time_cursor, next_cursor, pagination
from storage import follows as follow_rows
from storage import users as user_rows

MAX_LIVE_FOLLOWS = 5000  # clip channels one socket's feed:clips joins
USER_NOT_FOUND = "User not found"


async def user_id_for(ctx: Services, ref: str) -> UUID:
    """The user a path names: by id, or by username (profiles are shared as @name)."""
    try:
        return UUID(ref)
    except ValueError:
        pass
    name = ref.removeprefix("@")
    found = None
    if 0 < len(name) <= 50:
        async with ctx.db.acquire() as conn:
            found = await user_rows.id_by_username(conn, name)
    if found is None:
        raise NotFound(USER_NOT_FOUND)
    return found


async def profile(ctx: Services, user_id: UUID, viewer: Principal | None) -> dict[str, Any]:
    """A user's public profile, with whether the viewer follows them."""
    user = await ctx.profile_cache.get(user_id)
    if user is None:
        async with ctx.db.acquire() as conn:
            row = await user_rows.get_public(conn, user_id)
        if row is None:
            raise NotFound(USER_NOT_FOUND)
        user = present.user_public(row)
        await ctx.profile_cache.put(user_id, user)
    following = False
    if viewer is not None and viewer.user_id != user_id:
        async with ctx.db.acquire() as conn:
            following = await follow_rows.is_following(conn, viewer.user_id, user_id)
    return {"user": {**user, "is_following": following}}


async def update_me(ctx: Services, principal: Principal, changes: dict[str, Any]) -> dict[str, Any]:
    """Change the caller's own profile; `settings` merges into what is stored."""
    async with ctx.db.acquire() as conn, conn.transaction():
        stored = await user_rows.lock_settings(conn, principal.user_id)
        if stored is None:
            raise NotFound(USER_NOT_FOUND)
        if "settings" in changes:
            changes = {**changes, "settings": _merge(stored, changes["settings"])}
        row = await user_rows.update_profile(conn, principal.user_id, changes)
    assert row is not None
    await ctx.profile_cache.invalidate(principal.user_id)
    return {"user": present.user_private(row)}


async def follow(ctx: Services, principal: Principal, target: UUID) -> dict[str, Any]:
    """Follow `target` (idempotent); counts move only when the edge is new."""
    if target == principal.user_id:
        raise ValidationFailed("You cannot follow yourself")
    async with ctx.db.acquire() as conn, conn.transaction():
        if not await user_rows.exists(conn, target):
            raise NotFound(USER_NOT_FOUND)
        new = await follow_rows.insert(conn, principal.user_id, target)
        if new:
            count = await follow_rows.adjust_counts(conn, principal.user_id, target, +1)
            follower = await user_rows.get_public(conn, principal.user_id)
        else:
            count = await follow_rows.follower_count(conn, target) or 0
    if new:
        await ctx.profile_cache.invalidate(principal.user_id, target)
        await ctx.clip_feed_cache.invalidate([principal.user_id])
        assert follower is not None
        await events.new_follower(ctx, target, present.user_card(follower), count)
        await events.following_changed(ctx, principal.user_id, target, "added")
    return {"following": True, "follower_count": count}


async def unfollow(ctx: Services, principal: Principal, target: UUID) -> dict[str, Any]:
    """Stop following `target` (idempotent)."""
    if target == principal.user_id:
        raise ValidationFailed("You cannot unfollow yourself")
    async with ctx.db.acquire() as conn, conn.transaction():
        removed = await follow_rows.delete(conn, principal.user_id, target)
        if removed:
            count = await follow_rows.adjust_counts(conn, principal.user_id, target, -1)
        else:
            found = await follow_rows.follower_count(conn, target)
            if found is None:
                raise NotFound(USER_NOT_FOUND)
            count = found
    if removed:
        await ctx.profile_cache.invalidate(principal.user_id, target)
        await ctx.clip_feed_cache.invalidate([principal.user_id])
        await events.following_changed(ctx, principal.user_id, target, "removed")
    return {"following": False, "follower_count": count}


async def followed_ids(ctx: Services, user_id: UUID) -> list[UUID]:
    """Whom a user follows: the clip channels behind their live feed:clips."""
    async with ctx.db.acquire() as conn:
        return await follow_rows.followed_ids(conn, user_id, MAX_LIVE_FOLLOWS)


async def follow_list(
    ctx: Services,
    user_id: UUID,
    direction: str,
    page: PageRequest,
    viewer: Principal | None,
) -> dict[str, Any]:
    """`followers` or `following` of a user, newest first, by page or by cursor."""
    async with ctx.db.acquire() as conn:
        owner = await user_rows.get_public(conn, user_id)
        if owner is None:
            raise NotFound(USER_NOT_FOUND)
        privacy = (owner["settings"] or {}).get("privacy", {})
        if privacy.get(f"show_{direction}", True) is False and (
            viewer is None or viewer.user_id != user_id
        ):
            raise Forbidden(f"This user's {direction} list is private")
        after = decode_time_cursor(page.cursor) if page.cursor else None
        rows = await follow_rows.list_page(
            conn,
            user_id,
            direction,
            limit=page.limit,
            offset=page.offset,
            after=after,
        )
    total = owner["follower_count" if direction == "followers" else "following_count"]
    return {
        direction: [present.follow_entry(r) for r in rows],
        "pagination": pagination(page, total, len(rows)),
        "next_cursor": next_cursor(rows, page, "followed_at"),
    }


def _merge(stored: dict[str, Any] | None, update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(stored or {})
    for section, values in update.items():
        merged[section] = {**merged.get(section, {}), **values}
    return merged
