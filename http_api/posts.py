"""Posts and communities (the upload-flow API)."""

from __future__ import annotations

from typing import Any

from http_api.routing import Call, RouteTable, page_of
from reelwire.domain import posts, videos
from reelwire.domain.schemas.common import PageQuery, parse_uuid
from reelwire.domain.schemas.posts import (
    CommunitiesOut,
    CommunityBody,
    CommunityOut,
    PostBody,
    PostOut,
    PostsOut,
    PostsQuery,
)

routes = RouteTable()


@routes.post(
    "/api/posts",
    tag="posts",
    unauthorized="Unauthorized",
    auth="required",
    body=PostBody,
    response=PostOut,
    status=201,
    errors=(400, 401, 404),
)
async def create_post(call: Call[PostBody]) -> dict[str, Any]:
    """Post text, or one of your ready videos, optionally in a community."""
    body = call.body
    video_id = parse_uuid(body.videoId, videos.VIDEO_NOT_FOUND) if body.videoId else None
    community_id = (
        parse_uuid(body.communityId, posts.COMMUNITY_NOT_FOUND) if body.communityId else None
    )
    return await posts.create_post(
        call.services,
        call.user,
        content=body.content,
        video_id=video_id,
        community_id=community_id,
    )


@routes.get(
    "/api/posts",
    tag="posts",
    unauthorized="Unauthorized",
    auth="optional",
    query=PostsQuery,
    response=PostsOut,
    errors=(400, 404),
)
async def list_posts(call: Call[Any]) -> dict[str, Any]:
    """The feed of posts, newest first; `communityId` narrows it to one community."""
    raw = call.query.communityId
    community_id = parse_uuid(raw, posts.COMMUNITY_NOT_FOUND) if raw else None
    return await posts.list_posts(call.services, community_id, page_of(call.query))


@routes.post(
    "/api/communities",
    tag="posts",
    unauthorized="Unauthorized",
    auth="required",
    body=CommunityBody,
    response=CommunityOut,
    status=201,
    errors=(400, 401, 409),
)
async def create_community(call: Call[CommunityBody]) -> dict[str, Any]:
    """Start a community."""
    return await posts.create_community(
        call.services, call.user, call.body.name, call.body.description
    )


@routes.get(
    "/api/communities",
    tag="posts",
    unauthorized="Unauthorized",
    auth="optional",
    query=PageQuery,
    response=CommunitiesOut,
    errors=(400,),
)
async def list_communities(call: Call[Any]) -> dict[str, Any]:
    """Communities, newest first."""
    return await posts.list_communities(call.services, page_of(call.query))
