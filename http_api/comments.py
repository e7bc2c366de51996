"""Comments (the CLUTCH API): list, post, replies, like, edit, delete."""

from __future__ import annotations

from typing import Any

from http_api.routing import Call, RouteTable, page_of
from reelwire.domain import comments
from reelwire.domain.schemas.comments import (
    CommentBody,
    CommentEditBody,
    CommentOut,
    CommentQuery,
    CommentsOut,
    RepliesOut,
)
from reelwire.domain.schemas.common import PageQuery, SuccessMessageOut, parse_uuid
from reelwire.domain.schemas.videos import ReactionBody, ReactionOut

routes = RouteTable()


@routes.get(
    "/api/videos/{video_id}/comments",
    tag="comments",
    auth="optional",
    query=CommentQuery,
    response=CommentsOut,
    errors=(400, 404),
)
async def list_comments(call: Call[Any]) -> dict[str, Any]:
    """Top-level comments with `reply_count`, `author` and your `user_interaction`."""
    video_id = call.path_uuid("video_id", "Video")
    return await comments.list_top_level(
        call.services, video_id, call.principal, call.query.sort, page_of(call.query)
    )


@routes.post(
    "/api/videos/{video_id}/comments",
    tag="comments",
    auth="required",
    rate="comment",
    body=CommentBody,
    response=CommentOut,
    status=201,
    errors=(400, 401, 404, 429),
)
async def post_comment(call: Call[CommentBody]) -> dict[str, Any]:
    """Comment on a video, or reply with `parent_comment_id`."""
    video_id = call.path_uuid("video_id", "Video")
    parent = call.body.parent_comment_id
    parent_id = parse_uuid(parent, comments.COMMENT_NOT_FOUND) if parent else None
    return await comments.create(call.services, call.user, video_id, call.body.content, parent_id)


@routes.get(
    "/api/comments/{comment_id}/replies",
    tag="comments",
    auth="optional",
    query=PageQuery,
    response=RepliesOut,
    errors=(400, 404),
)
async def list_replies(call: Call[Any]) -> dict[str, Any]:
    """Replies to a comment, oldest first."""
    comment_id = call.path_uuid("comment_id", "Comment")
    return await comments.list_replies(
        call.services, comment_id, call.principal, page_of(call.query)
    )


@routes.post(
    "/api/comments/{comment_id}/like",
    tag="comments",
    auth="required",
    rate="like",
    body=ReactionBody,
    response=ReactionOut,
    errors=(400, 401, 404, 429),
)
async def like_comment(call: Call[ReactionBody]) -> dict[str, Any]:
    """Like, dislike or remove your reaction to a comment."""
    comment_id = call.path_uuid("comment_id", "Comment")
    return await comments.react(call.services, call.user, comment_id, call.body.action)


@routes.put(
    "/api/comments/{comment_id}",
    tag="comments",
    auth="required",
    body=CommentEditBody,
    response=CommentOut,
    errors=(400, 401, 403, 404),
)
async def edit_comment(call: Call[CommentEditBody]) -> dict[str, Any]:
    """Change your comment's text (marks it `edited`)."""
    comment_id = call.path_uuid("comment_id", "Comment")
    return await comments.edit(call.services, call.user, comment_id, call.body.content)


@routes.delete(
    "/api/comments/{comment_id}",
    tag="comments",
    auth="required",
    response=SuccessMessageOut,
    errors=(401, 403, 404),
)
async def delete_comment(call: Call[Any]) -> dict[str, Any]:
    """Delete a comment and its replies (author, the video's owner, or an admin)."""
    comment_id = call.path_uuid("comment_id", "Comment")
    return await comments.delete(call.services, call.user, comment_id)
