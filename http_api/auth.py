"""/api/auth: register, login, refresh, logout, me."""

from __future__ import annotations

from typing import Any

from http_api.routing import Call, RouteTable
from reelwire.domain import accounts
from reelwire.domain.schemas.auth import (
    AuthOut,
    CurrentUserOut,
    LoginBody,
    LogoutBody,
    LogoutOut,
    RefreshBody,
    RefreshOut,
    RegisterBody,
)

routes = RouteTable()


@routes.post(
    "/api/auth/register",
    rate="auth",
    tag="auth",
    body=RegisterBody,
    response=AuthOut,
    status=201,
    errors=(400, 409, 415),
)
async def register(call: Call[RegisterBody]) -> dict[str, Any]:
    """Create an account and start a session."""
    body = call.body
    return await accounts.register(
        call.services,
        username=body.username,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
    )


@routes.post(
    "/api/auth/login",
    rate="auth",
    tag="auth",
    body=LoginBody,
    response=AuthOut,
    errors=(400, 401),
)
async def login(call: Call[LoginBody]) -> dict[str, Any]:
    """Log in by username or email."""
    return await accounts.login(
        call.services, login=call.body.identifier, password=call.body.password
    )


@routes.post(
    "/api/auth/refresh",
    rate="auth",
    tag="auth",
    body=RefreshBody,
    response=RefreshOut,
    errors=(400, 401),
)
async def refresh(call: Call[RefreshBody]) -> dict[str, Any]:
    """Trade a refresh token for a new pair (the old refresh token stops working)."""
    return await accounts.refresh(call.services, call.body.token)


@routes.post(
    "/api/auth/logout",
    tag="auth",
    auth="required",
    body=LogoutBody,
    body_required=False,
    response=LogoutOut,
    errors=(401,),
)
async def logout(call: Call[LogoutBody]) -> dict[str, Any]:
    """End the session: its refresh and access tokens stop working."""
    return await accounts.logout(
        call.services, call.user, call.body.refresh_token or call.body.refresh
    )


@routes.get("/api/auth/me", tag="auth", auth="required", response=CurrentUserOut, errors=(401,))
async def me(call: Call[Any]) -> dict[str, Any]:
    """The caller's own account and creator figures."""
    return await accounts.me(call.services, call.user)
