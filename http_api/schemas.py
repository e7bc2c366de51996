"""Request and response schemas. They validate input and generate the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

USERNAME_RE = re.compile(r"^[a-zA-Z0-9_]{3,30}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# --- text PostgreSQL can store -----------------------------------------------------------------
#
# PostgreSQL `text` cannot hold NUL, and UTF-8 cannot hold an unpaired surrogate. Every request
# model derives from `Input`, whose one validator refuses both in any string of any field (nested
# lists and objects included) before a field's own rules run, so REST bodies, query strings,
# multipart text fields and WebSocket commands all answer 400 naming the field. The OpenAPI
# document states the same rule as a `pattern` on every free-text string.

UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
STORABLE_PATTERN = "^[^\\x00]*$"  # surrogates cannot arrive in UTF-8 JSON, queries or forms
UNSTORABLE_MESSAGE = "Must not contain NUL characters or unpaired surrogates."


def is_storable(value: Any) -> bool:
    """Whether every string in `value` (a string, or lists and dicts of them) can be stored."""
    if isinstance(value, str):
        return UNSTORABLE.search(value) is None
    if isinstance(value, list | tuple):
        return all(is_storable(item) for item in value)
    if isinstance(value, dict):
        return all(is_storable(k) and is_storable(v) for k, v in value.items())
    return True


def unstorable_fields(data: dict[str, Any]) -> dict[str, list[str]]:
    """`field_errors` for the top-level fields of `data` holding text that cannot be stored."""
    return {str(k): [UNSTORABLE_MESSAGE] for k, v in data.items() if not is_storable(v)}


def _storable_schema(node: Any) -> None:
    """Add STORABLE_PATTERN to every free-text string schema under `node`."""
    if isinstance(node, list):
        for item in node:
            _storable_schema(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and not {"pattern", "enum", "const", "format"} & node.keys():
        node["pattern"] = STORABLE_PATTERN
    for key in ("properties", "items", "anyOf", "oneOf", "allOf", "additionalProperties"):
        child = node.get(key)
        if isinstance(child, dict) and key == "properties":
            for value in child.values():
                _storable_schema(value)
        elif child is not None:
            _storable_schema(child)


def _input_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    for field_schema in schema.get("properties", {}).values():
        _storable_schema(field_schema)


class Input(BaseModel):
    """Every request model (body, query, form, WebSocket command) derives from this: no field
    accepts text PostgreSQL cannot store."""

    model_config = ConfigDict(json_schema_extra=_input_schema)

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if not is_storable(value):
            raise ValueError(UNSTORABLE_MESSAGE)
        return value


class Strict(Input):
    """Unknown fields are an error: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _form_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    _input_schema(schema, model)
    file_field = getattr(model, "file_field", None)
    if file_field:
        schema.setdefault("properties", {})[file_field] = {
            "type": "string",
            "format": "binary",
            "description": "The file",
        }


class Form(Strict):
    """A multipart form's text fields; the document also names its file part, `file_field`,
    so a client (or a fuzzer) reading the schema can build a form the server accepts."""

    model_config = ConfigDict(json_schema_extra=_form_schema)
    file_field: ClassVar[str] = ""


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
NOT_BLANK_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"


def _one_of_required(*names: str) -> Callable[[dict[str, Any], type[BaseModel]], None]:
    """A schema hook: the Input rule plus `anyOf` at least one of these fields, non-empty."""

    def extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
        _input_schema(schema, model)
        schema["anyOf"] = [
            {"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}
            for name in names
        ]

    return extra


class RegisterBody(Strict):
    """POST /api/auth/register (the CLUTCH API)."""

    username: Username
    email: Email
    password: Password
    display_name: DisplayName | None = None


class LoginBody(Strict):
    """POST /api/auth/login: `login` (the CLUTCH API) or `username` (the Clipsy API) or `email`."""

    model_config = ConfigDict(json_schema_extra=_one_of_required("login", "username", "email"))

    login: str | None = Field(None, max_length=320)
    username: str | None = Field(None, max_length=320)
    email: str | None = Field(None, max_length=320)
    password: str = Field(max_length=128)

    @model_validator(mode="after")
    def _one_identifier(self) -> LoginBody:
        if not (self.login or self.username or self.email):
            raise ValueError("Provide login (username or email) and password.")
        return self

    @property
    def identifier(self) -> str:
        """The username or email the caller gave, whichever field they used."""
        return (self.login or self.username or self.email or "").strip()


class RefreshBody(Strict):
    """POST /api/auth/refresh: `refresh_token` (the CLUTCH API) or `refresh` (the Clipsy API)."""

    model_config = ConfigDict(json_schema_extra=_one_of_required("refresh_token", "refresh"))

    refresh_token: str | None = Field(None, max_length=4096)
    refresh: str | None = Field(None, max_length=4096)

    @model_validator(mode="after")
    def _one_token(self) -> RefreshBody:
        if not (self.refresh_token or self.refresh):
            raise ValueError("Provide refresh_token.")
        return self

    @property
    def token(self) -> str:
        """Whichever of the two fields was given."""
        return self.refresh_token or self.refresh or ""


class LogoutBody(Strict):
    """POST /api/auth/logout: optionally also revoke this refresh token's session."""

    refresh_token: str | None = Field(None, max_length=4096)
    refresh: str | None = Field(None, max_length=4096)


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


class PageQuery(Input):
    """The CLUTCH API page pagination, or `cursor` from a previous page's `next_cursor`."""

    page: int = Field(1, ge=1, le=100_000)
    limit: int = Field(20, ge=1, le=50)
    cursor: str | None = Field(None, max_length=512)


# --- responses (documented; handlers build the same shapes in reelwire.domain.present) ---


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


class TokensOut(BaseModel):
    """The token pair."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int


class AuthOut(BaseModel):
    """Register and login (the CLUTCH API body plus the Clipsy API's `access`/`refresh`)."""

    success: bool
    message: str
    user: MeOut
    tokens: TokensOut
    access: str
    refresh: str


class RefreshOut(TokensOut):
    """A rotated token pair."""

    success: bool
    access: str
    refresh: str


class LogoutOut(BaseModel):
    """Logout (the Clipsy API's `detail`)."""

    success: bool
    detail: str


class ProfileFigures(BaseModel):
    """Creator figures on /api/auth/me."""

    total_views: int
    total_videos: int
    total_likes_received: int


class CurrentUserOut(BaseModel):
    """GET /api/auth/me."""

    success: bool
    user: MeOut
    profile: ProfileFigures


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


class Pagination(BaseModel):
    """The CLUTCH API's pagination object; `current_page` is null in cursor mode."""

    current_page: int | None
    total_pages: int
    total_items: int
    has_next: bool
    has_prev: bool


class FollowEntry(BaseModel):
    """One row of a followers/following list."""

    id: str
    username: str
    display_name: str
    avatar_url: str
    verified: bool
    follower_count: int
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


class ErrorBody(BaseModel):
    """The error object inside the envelope."""

    code: str
    message: str
    details: dict[str, Any] | None = None
    field_errors: dict[str, list[str]] | None = None


class ErrorOut(BaseModel):
    """Every error (the CLUTCH API)."""

    success: Literal[False]
    error: ErrorBody


# --- media ---------------------------------------------------------------------------------


class VideoUploadForm(Form):
    """POST /api/videos (the Clipsy API): multipart with `video_file`."""

    file_field: ClassVar[str] = "video_file"

    title: str = Field("", max_length=100)
    description: str = Field("", max_length=5000)
    visibility: Literal["public", "unlisted", "private"] = "public"


class LibraryUploadForm(Form):
    """POST /api/v1/upload/video (the S3 video library API): multipart with `file`."""

    file_field: ClassVar[str] = "file"

    title: str = Field("", max_length=100)


def _caption(value: str) -> str:
    if re.search(r"<\s*/?\s*[a-zA-Z!][^>]*>", value) or re.search(r"javascript:", value, re.I):
        raise ValueError("Caption cannot contain HTML or scripts.")
    return value


class ClipUploadForm(Form):
    """POST /api/clips/upload (the Stories API): multipart `clip`, or `video_id` of your own."""

    file_field: ClassVar[str] = "clip"

    caption: Annotated[str, AfterValidator(_caption)] = Field(
        "", max_length=500, description="At most 500 characters, no HTML"
    )
    video_id: str | None = Field(None, description="Reuse one of your videos instead of a file")


class VideoUploadOut(BaseModel):
    """201 of POST /api/videos (the Clipsy API)."""

    id: str
    title: str
    description: str
    status: str
    created_at: str
    message: str


class VideoStatusOut(BaseModel):
    """The upload-flow API's status object."""

    videoId: str
    status: str
    playbackUrl: str | None
    thumbnailUrl: str | None
    duration: float | None
    provider: str
    progress: float
    error: str | None


class QualityOut(BaseModel):
    """One rung of the ladder (the Clipsy API's `qualities`)."""

    quality: str
    resolution: str
    bitrate: int
    file_size: int
    playlist_path: str | None


class AuthorOut(BaseModel):
    """A video's author."""

    id: str
    username: str
    display_name: str
    avatar_url: str
    follower_count: int
    verified: bool


class VideoOut(BaseModel):
    """The full video object (the CLUTCH API plus the Clipsy API's fields)."""

    success: bool | None = None
    id: str
    title: str
    description: str
    status: Literal["pending", "uploading", "processing", "ready", "failed"]
    processing_status: Literal["uploaded", "processing", "ready", "error"]
    progress: float
    error: str | None
    thumbnail_url: str | None
    thumbnail: str | None
    video_url: str | None
    hls_playlist: str | None
    stream_url: str | None
    duration: float | None
    resolution: str | None
    fps: float | None
    qualities: list[QualityOut]
    quality_variants: dict[str, str | None]
    storyboard: dict[str, str] | None
    view_count: int
    views: int
    like_count: int
    dislike_count: int
    comment_count: int
    author: AuthorOut
    tags: list[str]
    category: str | None
    visibility: Literal["public", "unlisted", "private"]
    metrics: dict[str, float]
    created_at: str
    updated_at: str
    published_at: str | None


class ClipOut(BaseModel):
    """A clip (the Stories API's fields plus media fields)."""

    id: str
    clip_id: str
    user_id: str
    kind: Literal["video", "image"]
    status: Literal["processing", "ready", "failed"]
    file_url: str | None
    thumbnail_url: str | None
    video_id: str | None
    duration: float | None
    caption: str
    created_at: str
    expires_at: str
    view_count: int = 0
    uploaded_by: str | None = None


class ClipUploadOut(BaseModel):
    """201 of POST /api/clips/upload."""

    message: str
    clip: ClipOut


class MessageOut(BaseModel):
    """A plain confirmation."""

    success: bool | None = None
    message: str
