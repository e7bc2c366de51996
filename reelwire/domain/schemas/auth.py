"""Sign-in: register, login, refresh, logout, the current user, and WebSocket tickets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reelwire.domain.schemas.common import Strict, input_schema
from reelwire.domain.schemas.users import DisplayName, Email, MeOut, Password, Username


def _one_of_required(*names: str) -> Callable[[dict[str, Any], type[BaseModel]], None]:
    """A schema hook: the Input rule plus `anyOf` at least one of these fields, non-empty."""

    def extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
        input_schema(schema, model)
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


class TicketOut(BaseModel):
    """A single-use ticket for `GET /ws?ticket=...`."""

    success: bool
    ticket: str
    expires_in: int
