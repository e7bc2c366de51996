"""/api/users: profiles and follows."""

from __future__ import annotations

from typing import Any

from http_api.routing import Call, RouteTable, page_of
from reelwire.domain import accounts, users, videos
from reelwire.domain.schemas.common import PageQuery
from reelwire.domain.schemas.users import (
    AccountStateOut,
    FollowersOut,
    FollowingOut,
    FollowOut,
    ProfileOut,
    UpdateMeBody,
    UpdateMeOut,
)
from reelwire.domain.schemas.videos import VideoListOut

routes = RouteTable()


@routes.get(
    "/api/users/me/following/videos",
    tag="users",
    auth="required",
    query=PageQuery,
    response=VideoListOut,
    errors=(400, 401),
)
async def following_videos(call: Call[Any]) -> dict[str, Any]:
    """Videos by the users you follow, newest first."""
    return await videos.following_feed(call.services, call.user, page_of(call.query))


@routes.patch(
    "/api/users/me",
    tag="users",
    auth="required",
    body=UpdateMeBody,
    response=UpdateMeOut,
    errors=(400, 401, 415),
)
async def update_me(call: Call[UpdateMeBody]) -> dict[str, Any]:
    """Change your display name, bio, avatar or settings."""
    return await users.update_me(call.services, call.user, call.body.changes())


@routes.get(
    "/api/users/{user_id}", tag="users", auth="optional", response=ProfileOut, errors=(404,)
)
async def profile(call: Call[Any]) -> dict[str, Any]:
    """A user's public profile, by id or by username."""
    user_id = await users.user_id_for(call.services, call.request.match_info["user_id"])
    return await users.profile(call.services, user_id, call.principal)


@routes.post(
    "/api/users/{user_id}/follow",
    tag="users",
    auth="required",
    response=FollowOut,
    errors=(400, 401, 404),
)
async def follow(call: Call[Any]) -> dict[str, Any]:
    """Follow a user (idempotent)."""
    return await users.follow(call.services, call.user, call.path_uuid("user_id", "User"))


@routes.post(
    "/api/users/{user_id}/disable",
    tag="users",
    auth="required",
    response=AccountStateOut,
    errors=(400, 401, 403, 404),
)
async def disable(call: Call[Any]) -> dict[str, Any]:
    """Admins: disable an account. Its sessions end, its tokens stop working within a second
    and it cannot log in; what it posted stays."""
    user_id = call.path_uuid("user_id", "User")
    return await accounts.set_disabled(call.services, call.user, user_id, True)


@routes.delete(
    "/api/users/{user_id}/disable",
    tag="users",
    auth="required",
    response=AccountStateOut,
    errors=(400, 401, 403, 404),
)
async def enable(call: Call[Any]) -> dict[str, Any]:
    """Admins: enable a disabled account again (its owner logs in anew)."""
    user_id = call.path_uuid("user_id", "User")
    return await accounts.set_disabled(call.services, call.user, user_id, False)


@routes.delete(
    "/api/users/{user_id}/follow",
    tag="users",
    auth="required",
    response=FollowOut,
    errors=(400, 401, 404),
)
async def unfollow(call: Call[Any]) -> dict[str, Any]:
    """Stop following a user (idempotent)."""
    return await users.unfollow(call.services, call.user, call.path_uuid("user_id", "User"))


@routes.get(
    "/api/users/{user_id}/followers",
    tag="users",
    auth="optional",
    query=PageQuery,
    response=FollowersOut,
    errors=(400, 403, 404),
)
async def followers(call: Call[Any]) -> dict[str, Any]:
    """Who follows this user, newest first."""
    return await users.follow_list(
        call.services,
        call.path_uuid("user_id", "User"),
        "followers",
        page_of(call.query),
        call.principal,
    )


@routes.get(
    "/api/users/{user_id}/following",
    tag="users",
    auth="optional",
    query=PageQuery,
    response=FollowingOut,
    errors=(400, 403, 404),
)
async def following(call: Call[Any]) -> dict[str, Any]:
    """Whom this user follows, newest first."""
    return await users.follow_list(
        call.services,
        call.path_uuid("user_id", "User"),
        "following",
        page_of(call.query),
        call.principal,
    )
