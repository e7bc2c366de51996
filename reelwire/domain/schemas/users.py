"""Users: profiles, the caller's own account and settings, follows, and the fields an account
is made of (username, email, password, display name, avatar URL).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field

from reelwire.domain.schemas.common import Pagination, Strict

USERNAME_RE = re.compile(r"^[a-zA-Z0-9_]{3,30}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _username(value: str) -> str:
    if not USERNAME_RE.match(value):
        raise ValueError("Username must be 3-30 characters: letters, digits and underscores.")
    return value


def _email(value: str) -> str:
    value = value.strip()
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise ValueError("Enter a valid email address.")
    return value


def _password(value: str) -> str:
    problems = []
    if len(value) < 8:
        problems.append("at least 8 characters")
    if not re.search(r"[A-Z]", value):
        problems.append("an uppercase letter")
    if not re.search(r"\d", value):
        problems.append("a number")
    if problems:
        raise ValueError("Password must contain " + ", ".join(problems) + ".")
    return value


def _display_name(value: str) -> str:
    value = value.strip()
    if not 1 <= len(value) <= 50:
        raise ValueError("Display name must be 1-50 characters.")
    return value


def _http_url(value: str) -> str:
    problem = "Must be an http(s) URL of at most 1000 characters."
    if not re.match(r"^https?://[^\s]+$", value) or len(value) > 1000:
        raise ValueError(problem)
    try:  # one every URL parser can read back: a host, a valid port, no stray brackets
        parts = urlsplit(value)
        if not parts.hostname:
            raise ValueError(problem)
        _ = parts.port
    except ValueError:
        raise ValueError(problem) from None
    return value


# Each validator's rule is also stated as a `pattern` in the document, so a client reading it
# (or a fuzzer generating from it) produces what the server accepts.
Username = Annotated[
    str,
    Field(max_length=64, json_schema_extra={"pattern": "^[a-zA-Z0-9_]{3,30}$"}),
    AfterValidator(_username),
]
Email = Annotated[
    str,
    Field(
        max_length=320,
        json_schema_extra={
            "pattern": r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$",
            "maxLength": 254,
        },
    ),
    AfterValidator(_email),
]
Password = Annotated[
    str,
    Field(
        max_length=128,
        json_schema_extra={
            "pattern": r"^(?=[^\x00]*[A-Z])(?=[^\x00]*[0-9])[^\x00]{8,}$",
            "description": "At least 8 characters, an uppercase letter and a number",
        },
    ),
    AfterValidator(_password),
]
DisplayName = Annotated[
    str,
    Field(
        max_length=200,
        json_schema_extra={"pattern": r"^\s*[^\s\x00](?:[^\x00]{0,48}[^\s\x00])?\s*$"},
    ),
    AfterValidator(_display_name),
]
HttpUrl = Annotated[
    str,
    Field(max_length=1000, json_schema_extra={"pattern": r"^https?://[^\s\x00]+$"}),
    AfterValidator(_http_url),
]


class NotificationSettings(Strict):
    """The CLUTCH API's `settings.notifications`."""

    email: bool | None = None
    push: bool | None = None
    comments: bool | None = None
    followers: bool | None = None


class PrivacySettings(Strict):
    """The CLUTCH API's `settings.privacy`."""

    profile_visibility: Literal["public", "followers", "private"] | None = None
    show_following: bool | None = None
    show_followers: bool | None = None


class UserSettings(Strict):
    """The CLUTCH API's user settings; sections given are merged into what is stored."""

    notifications: NotificationSettings | None = None
    privacy: PrivacySettings | None = None


class UpdateMeBody(Strict):
    """PATCH /api/users/me."""

    display_name: DisplayName | None = None
    bio: str | None = Field(None, max_length=500)
    avatar_url: HttpUrl | None = None
    settings: UserSettings | None = None

    def changes(self) -> dict[str, Any]:
        """Only the fields the caller sent, settings without unset keys."""
        return self.model_dump(exclude_unset=True, exclude_none=True)


class UserOut(BaseModel):
    """A user as anyone may see them."""

    id: str
    username: str
    display_name: str
    avatar_url: str
    bio: str
    verified: bool
    role: Literal["user", "creator", "admin"]
    follower_count: int
    following_count: int
    created_at: str


class MeOut(UserOut):
    """A user as they see themselves."""

    email: str
    email_verified: bool
    settings: dict[str, Any]
    updated_at: str | None


class ProfileUser(UserOut):
    """A profile, with whether the viewer follows them."""

    is_following: bool


class ProfileOut(BaseModel):
    """GET /api/users/{user_id}."""

    success: bool
    user: ProfileUser


class UpdateMeOut(BaseModel):
    """PATCH /api/users/me."""

    success: bool
    user: MeOut


class FollowOut(BaseModel):
    """Follow and unfollow (the CLUTCH API)."""

    success: bool
    following: bool
    follower_count: int


class AccountStateOut(BaseModel):
    """An admin disabled or enabled an account."""

    success: bool
    user_id: str
    disabled: bool


class FollowerCard(BaseModel):
    """A user at a glance: who followed, who viewed a clip."""

    id: str
    username: str
    display_name: str
    avatar_url: str
    verified: bool
    follower_count: int


class FollowEntry(FollowerCard):
    """One row of a followers/following list."""

    followed_at: str


class FollowersOut(BaseModel):
    """GET /api/users/{user_id}/followers."""

    success: bool
    followers: list[FollowEntry]
    pagination: Pagination
    next_cursor: str | None


class FollowingOut(BaseModel):
    """GET /api/users/{user_id}/following."""

    success: bool
    following: list[FollowEntry]
    pagination: Pagination
    next_cursor: str | None
