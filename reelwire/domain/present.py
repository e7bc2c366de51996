"""Public shapes of domain objects (seed 001), shared by REST bodies and WebSocket messages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

DEFAULT_AVATAR_URL = "/static/avatar-default.svg"


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as every seed writes times."""
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
    return {
        "id": str(row["id"]),
        "username": row["username"],
        "display_name": row["display_name"],
        "avatar_url": row["avatar_url"] or DEFAULT_AVATAR_URL,
        "verified": row["verified"],
        "follower_count": row["follower_count"],
        "followed_at": iso(row["followed_at"]),
    }
