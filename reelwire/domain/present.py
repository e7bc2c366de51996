"""Public shapes of domain objects (the CLUTCH API), shared by REST bodies and WebSocket events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from storage.blobs import BlobStore

DEFAULT_AVATAR_URL = "/static/avatar-default.svg"


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as every client contract writes times."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def user_public(row: Mapping[str, Any]) -> dict[str, Any]:
    """A user as anyone may see them."""
    return {
        "id": str(row["id"]),
        "username": row["username"],
        "display_name": row["display_name"],
        "avatar_url": row["avatar_url"] or DEFAULT_AVATAR_URL,
        "bio": row["bio"],
        "verified": row["verified"],
        "role": row["role"],
        "follower_count": row["follower_count"],
        "following_count": row["following_count"],
        "created_at": iso(row["created_at"]),
    }


def user_private(row: Mapping[str, Any]) -> dict[str, Any]:
    """A user as they see themselves: adds email and settings."""
    return {
        **user_public(row),
        "email": row["email"],
        "email_verified": row["email_verified"],
        "settings": row["settings"],
        "updated_at": iso(row["updated_at"]),
    }


def follow_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """One row of a followers/following list."""
    return {**user_card(row), "followed_at": iso(row["followed_at"])}


def user_card(row: Mapping[str, Any]) -> dict[str, Any]:
    """A user in a list or an event: who they are at a glance."""
    return {
        "id": str(row["id"]),
        "username": row["username"],
        "display_name": row["display_name"],
        "avatar_url": row["avatar_url"] or DEFAULT_AVATAR_URL,
        "verified": row["verified"],
        "follower_count": row["follower_count"],
    }


_SEED_001_STATUS = {
    "pending": "uploaded",
    "uploading": "uploaded",
    "processing": "processing",
    "ready": "ready",
    "failed": "error",
}


def video(row: Mapping[str, Any], blobs: BlobStore) -> dict[str, Any]:
    """The full video object: the CLUTCH API's fields plus the Clipsy API's."""
    ready = row["status"] == "ready"
    # Playable while it transcodes: every rung has a first segment up (see transcode.progressive)
    playable = ready or row["playable_at"] is not None
    external = row["external"] or {}
    hls = blobs.url(row["hls_key"]) if row["hls_key"] else external.get("playback_url")
    thumbnail = (
        blobs.url(row["thumbnail_key"]) if row["thumbnail_key"] else external.get("thumbnail_url")
    )
    base = hls.rsplit("/", 1)[0] if hls and row["hls_key"] else None
    qualities = [
        {
            "id": position,  # the Clipsy API numbers a video's renditions (ladder order)
            **q,
            "playlist_path": f"{base}/{q['quality']}/playlist.m3u8" if base else None,
        }
        for position, q in enumerate(row["qualities"] or [], start=1)
    ]
    variants = {q["quality"]: q["playlist_path"] for q in qualities}
    variants.update(external.get("quality_variants") or {})
    views = row["view_count"]
    engagement = (row["like_count"] + row["comment_count"]) / views if views else 0.0
    stream_url = f"/api/videos/{row['id']}/stream" if row["source_key"] else None
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "description": row["description"],
        "status": row["status"],
        "processing_status": _SEED_001_STATUS[row["status"]],
        "progress": round(row["progress"], 1),
        "error": row["error"],
        "thumbnail_url": thumbnail,
        "thumbnail": thumbnail,
        "video_url": hls if ready else stream_url,
        "hls_playlist": hls if ready else None,
        "playable": bool(playable and hls),
        "playback_url": hls if playable else None,
        "preview_url": blobs.url(row["preview_key"]) if ready and row["preview_key"] else None,
        "stream_url": stream_url,
        "duration": row["duration"],
        "resolution": f"{row['width']}x{row['height']}" if row["width"] else None,
        "fps": row["fps"],
        "qualities": qualities if ready else [],
        "quality_variants": variants if ready else {},
        "storyboard": {
            "image": blobs.url(row["storyboard_key"]),
            "vtt": blobs.url(row["storyboard_vtt_key"]),
        }
        if ready and row["storyboard_key"]
        else None,
        "view_count": views,
        "views": views,
        "like_count": row["like_count"],
        "dislike_count": row["dislike_count"],
        "comment_count": row["comment_count"],
        "counts_version": row["counts_version"],
        "author": {
            "id": str(row["owner_id"]),
            "username": row["author_username"],
            "display_name": row["author_display_name"],
            "avatar_url": row["author_avatar_url"] or DEFAULT_AVATAR_URL,
            "follower_count": row["author_follower_count"],
            "verified": row["author_verified"],
        },
        "tags": list(row["tags"] or []),
        "category": row["category"],
        "visibility": row["visibility"],
        "source": row["source"],
        "metrics": {
            "watch_time_minutes": round(row["watch_time_seconds"] / 60, 1),
            "engagement_rate": round(engagement, 4),
        },
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "published_at": iso(row["published_at"]),
    }


def comment(row: Mapping[str, Any], viewer_kind: int = 0) -> dict[str, Any]:
    """The CLUTCH API's comment object; `viewer_kind` is the caller's reaction (1, -1 or 0)."""
    return {
        "id": str(row["id"]),
        "video_id": str(row["video_id"]),
        "user_id": str(row["user_id"]),
        "parent_comment_id": str(row["parent_id"]) if row["parent_id"] else None,
        "content": row["content"],
        "like_count": row["like_count"],
        "dislike_count": row["dislike_count"],
        "reply_count": row["reply_count"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "edited": row["edited"],
        "author": {
            "id": str(row["user_id"]),
            "username": row["author_username"],
            "display_name": row["author_display_name"],
            "avatar_url": row["author_avatar_url"] or DEFAULT_AVATAR_URL,
            "verified": row["author_verified"],
        },
        "user_interaction": {"liked": viewer_kind == 1, "disliked": viewer_kind == -1},
    }


REACTION_NAMES = {1: "liked", -1: "disliked", 0: "none"}


def library_video(row: Mapping[str, Any], blobs: BlobStore) -> dict[str, Any]:
    """The S3 video library API's video library object."""
    key = row["source_key"]
    thumbnail = blobs.url(row["thumbnail_key"]) if row["thumbnail_key"] else None
    return {
        "id": str(row["id"]),
        "filename": key.rsplit("/", 1)[-1] if key else None,
        "original_filename": row["original_filename"],
        "s3_key": key,
        "s3_url": blobs.url(key) if key else None,
        "content_type": row["content_type"],
        "file_size": row["file_size"],
        "duration": row["duration"],
        "thumbnail_url": thumbnail,
        "uploaded_at": iso(row["created_at"]),
        "status": row["status"],
        "metadata": {
            "resolution": f"{row['width']}x{row['height']}" if row["width"] else None,
            "fps": row["fps"],
            "codec": row["video_codec"],
        },
    }
