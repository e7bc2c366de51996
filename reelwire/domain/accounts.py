"""Accounts: register, log in, refresh, log out, and who-is-calling."""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from pubsub import keys
from reelwire.domain import present
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import Conflict, Forbidden, NotFound, Unauthorized
from reelwire.domain.tokens import ACCESS, REFRESH, Claims
from storage import tokens as token_rows
from storage import users as user_rows
from storage import videos as video_rows

logger = logging.getLogger(__name__)

BAD_CREDENTIALS = "No active account found with the given credentials"


async def register(
    ctx: Services,
    *,
    username: str,
    email: str,
    password: str,
    display_name: str | None,
) -> dict[str, Any]:
    """Create the account and a first session; 409 naming the field when a name is taken."""
    password_hash = await ctx.passwords.hash(password)
    async with ctx.db.acquire() as conn, conn.transaction():
        try:
            row = await user_rows.insert(
                conn,
                username=username,
                email=email,
                password_hash=password_hash,
                display_name=display_name or username,
            )
        except asyncpg.UniqueViolationError as exc:
            field = "email" if "email" in (exc.constraint_name or "") else "username"
            message = f"{'Email' if field == 'email' else 'Username'} is already taken"
            raise Conflict(message, field_errors={field: [message]}) from None
        pair = await _start_session(ctx, conn, row)
    return _auth_body("Account created successfully", row, pair)


async def login(ctx: Services, *, login: str, password: str) -> dict[str, Any]:
    """Check the password (same cost whether or not the login exists) and start a session."""
    async with ctx.db.acquire() as conn:
        creds = await user_rows.get_credentials(conn, login)
    ok, new_hash = await ctx.passwords.verify(creds["password_hash"] if creds else None, password)
    if not ok or creds is None:
        raise Unauthorized(BAD_CREDENTIALS)
    if creds["disabled_at"] is not None:
        raise Unauthorized(ACCOUNT_DISABLED)
    async with ctx.db.acquire() as conn, conn.transaction():
        await user_rows.record_login(conn, creds["id"], new_hash)
        row = await user_rows.get_private(conn, creds["id"])
        if row is None:
            raise Unauthorized(BAD_CREDENTIALS)
        pair = await _start_session(ctx, conn, row)
    return _auth_body("Login successful", row, pair)


async def refresh(ctx: Services, refresh_token: str) -> dict[str, Any]:
    """Rotate: the presented token must be its family's current one, else the family dies."""
    claims = ctx.tokens.verify(refresh_token, REFRESH)
    reused = False
    async with ctx.db.acquire() as conn, conn.transaction():
        family = await token_rows.lock_family(conn, claims.family)
        if family is None or family["revoked_at"] is not None:
            raise Unauthorized("Refresh token has been revoked")
        if family["current_jti"] != claims.jti:
            # An already-rotated token came back: someone else holds a copy. Revoke the
            # family (committed below) so neither holder can continue the session.
            await token_rows.revoke(conn, claims.family, "refresh token reused")
            reused = True
        else:
            row = await user_rows.get_private(conn, claims.user_id)
            if row is None:
                raise Unauthorized(ACCOUNT_GONE)
            if await user_rows.standing(conn, claims.user_id) == "disabled":
                raise Unauthorized(ACCOUNT_DISABLED)
            pair = _issue_pair(ctx, row, claims.family)
            await token_rows.rotate(conn, claims.family, pair.refresh_jti, pair.refresh_expires)
    if reused:
        await _deny_access_tokens(ctx, claims.family)
        logger.warning(
            "refresh token reuse for user %s; session %s revoked", claims.user_id, claims.family
        )
        raise Unauthorized("Refresh token has already been used; please log in again")
    return pair.body()


async def logout(ctx: Services, principal: Principal, refresh_token: str | None) -> dict[str, Any]:
    """Revoke the caller's session, and the session of `refresh_token` when it is theirs."""
    families = {principal.family}
    if refresh_token:
        try:
            claims = ctx.tokens.verify(refresh_token, REFRESH)
        except Unauthorized:
            claims = None
        if claims is not None and claims.user_id == principal.user_id:
            families.add(claims.family)
    async with ctx.db.acquire() as conn:
        for family in families:
            await token_rows.revoke(conn, family, "logout")
    for family in families:
        await _deny_access_tokens(ctx, family)
    return {"detail": "Successfully logged out"}


ACCOUNT_GONE = "Account no longer exists"
ACCOUNT_DISABLED = "Account is disabled"


async def authenticate(ctx: Services, access_token: str) -> Principal:
    """The caller of a verified, unrevoked access token whose account still exists."""
    claims: Claims = ctx.tokens.verify(access_token, ACCESS)
    await _check_session(ctx, claims.user_id, claims.family)
    return Principal(
        user_id=claims.user_id,
        role=claims.role,
        family=claims.family,
        expires_at=claims.expires_at.timestamp(),
    )


LOGGED_OUT = "Session has been logged out"


async def _check_session(
    ctx: Services, user_id: UUID, family: UUID, *, fresh: bool = False
) -> None:
    """401 unless the session is not logged out and its account exists and is enabled.

    While the account was seen lately (ACCOUNT_CHECK_SECONDS), the session is checked against
    its Redis deny entry, as every request of a busy client is. Otherwise one PostgreSQL query
    answers both (the session's row is revoked there before its deny entry is written), asked
    together with every socket connecting at this moment: a crowd of sockets makes one query
    instead of a Redis round trip and a query each."""
    if not fresh and ctx.tokens.account_recently_seen(user_id):
        if await _logged_out(ctx, family):
            raise Unauthorized(LOGGED_OUT)
        return
    found = await ctx.sessions.get((user_id, family), lambda pairs: _sessions(ctx, pairs))
    standing, revoked = found if found is not None else (None, False)
    ctx.tokens.account_seen(user_id, standing == "active")
    if revoked:
        raise Unauthorized(LOGGED_OUT)
    if standing is None:
        raise Unauthorized(ACCOUNT_GONE)
    if standing == "disabled":
        raise Unauthorized(ACCOUNT_DISABLED)


async def _sessions(
    ctx: Services, pairs: list[tuple[UUID, UUID]]
) -> dict[tuple[UUID, UUID], tuple[str | None, bool]]:
    async with ctx.db.acquire() as conn:
        return await token_rows.sessions(conn, pairs)


async def require_account(ctx: Services, user_id: UUID, *, fresh: bool = False) -> None:
    """401 unless the account exists and is not disabled. A signed token outlives a deleted or
    disabled account, so the row is looked up (by primary key); a live answer is believed for
    ACCOUNT_CHECK_SECONDS per process, which keeps the lookup off the hot path of a client
    sending many requests."""
    if not fresh and ctx.tokens.account_recently_seen(user_id):
        return
    # Asked together with whoever else asks at this moment (a crowd of sockets connecting).
    standing = await ctx.standings.get(user_id, lambda ids: _standings(ctx, ids))
    ctx.tokens.account_seen(user_id, standing == "active")
    if standing is None:
        raise Unauthorized(ACCOUNT_GONE)
    if standing == "disabled":
        raise Unauthorized(ACCOUNT_DISABLED)


async def set_disabled(
    ctx: Services, principal: Principal, user_id: UUID, disabled: bool
) -> dict[str, Any]:
    """An admin disables an account (every session ends, its tokens stop working within
    ACCOUNT_CHECK_SECONDS, it cannot log in; what it posted stays) or enables it again."""
    if not principal.is_admin:
        raise Forbidden("Only an admin can disable or enable accounts")
    if user_id == principal.user_id and disabled:
        raise Forbidden("You cannot disable your own account")
    async with ctx.db.acquire() as conn, conn.transaction():
        if not await user_rows.set_disabled(conn, user_id, disabled):
            raise NotFound("User not found")
        families = await token_rows.revoke_all(conn, user_id, "disabled") if disabled else []
    for family in families:
        await _deny_access_tokens(ctx, family)
    return {"user_id": str(user_id), "disabled": disabled}


async def missing_reference(ctx: Services, principal: Principal | None) -> Unauthorized | NotFound:
    """What a foreign-key violation means to the caller: their own account was deleted while
    they were still believed to exist (401), or a row they named is gone (404)."""
    if principal is not None:
        try:
            await require_account(ctx, principal.user_id, fresh=True)
        except Unauthorized as exc:
            return exc
    return NotFound("Something this request refers to no longer exists")


async def me(ctx: Services, principal: Principal) -> dict[str, Any]:
    """The caller's own user object and creator figures."""
    async with ctx.db.acquire() as conn:
        row = await user_rows.get_private(conn, principal.user_id)
        if row is None:
            raise NotFound("User not found")
        totals = await video_rows.owner_totals(conn, principal.user_id)
    # Views of the last flush interval are not in PostgreSQL yet; the creator totals may trail
    # the live count on each video by that much.
    profile = {name: int(value) for name, value in totals.items()}
    return {"user": present.user_private(row), "profile": profile}


@dataclass(frozen=True)
class _Pair:
    access: str
    refresh: str
    refresh_jti: UUID
    refresh_expires: datetime
    expires_in: int

    def body(self) -> dict[str, Any]:
        # The CLUTCH API names (access_token/refresh_token) plus the Clipsy API's (access/refresh).
        return {
            "access_token": self.access,
            "refresh_token": self.refresh,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "access": self.access,
            "refresh": self.refresh,
        }


def _issue_pair(ctx: Services, row: asyncpg.Record, family: UUID) -> _Pair:
    extra = {
        "username": row["username"],
        "email": row["email"],
        "display_name": row["display_name"],
        "avatar_url": row["avatar_url"] or present.DEFAULT_AVATAR_URL,
        "role": row["role"],
    }
    access = ctx.tokens.issue(ACCESS, row["id"], family, extra)
    refresh_token = ctx.tokens.issue(REFRESH, row["id"], family)
    return _Pair(
        access.token,
        refresh_token.token,
        refresh_token.jti,
        refresh_token.expires_at,
        int(ctx.tokens.access_ttl.total_seconds()),
    )


async def _start_session(ctx: Services, conn: asyncpg.Connection, row: asyncpg.Record) -> _Pair:
    family = uuid.uuid4()
    pair = _issue_pair(ctx, row, family)
    await token_rows.create_family(conn, family, row["id"], pair.refresh_jti, pair.refresh_expires)
    return pair


async def _deny_access_tokens(ctx: Services, family: UUID) -> None:
    # Access tokens are checked against Redis, not PostgreSQL: the deny entry only has to
    # outlive the longest access token of the session.
    # While Redis is away the entry waits in the outbox (PostgreSQL answers meanwhile).
    ttl = int(ctx.tokens.access_ttl.total_seconds()) + 60
    await ctx.outbox.run(lambda: ctx.redis.set(keys.revoked_session(family), 1, ex=ttl))


async def _standings(ctx: Services, user_ids: list[UUID]) -> dict[UUID, str]:
    async with ctx.db.acquire() as conn:
        return await user_rows.standings(conn, user_ids)


async def _logged_out(ctx: Services, family: UUID) -> bool:
    """Whether the session was revoked: Redis' deny entry (asked together with whoever else
    asks at this moment), or PostgreSQL while Redis is away."""

    async def from_redis() -> bool:
        return bool(await ctx.logged_out.get(family, lambda families: _denied(ctx, families)))

    async def from_postgres() -> bool:
        async with ctx.db.acquire() as conn:
            return await token_rows.is_revoked(conn, family)

    return await ctx.outbox.read(from_redis, from_postgres)


async def _denied(ctx: Services, families: list[UUID]) -> dict[UUID, bool]:
    """Which of these sessions have a deny entry, in one round trip."""
    async with ctx.redis.pipeline(transaction=False) as pipe:
        for family in families:
            pipe.exists(keys.revoked_session(family))
        found = await pipe.execute()
    return {family: bool(n) for family, n in zip(families, found, strict=True)}


def _auth_body(message: str, row: asyncpg.Record, pair: _Pair) -> dict[str, Any]:
    tokens = pair.body()
    return {
        "message": message,
        "user": present.user_private(row),
        "tokens": {
            k: tokens[k] for k in ("access_token", "refresh_token", "token_type", "expires_in")
        },
        "access": pair.access,
        "refresh": pair.refresh,
    }


SOCKET_TICKET_SECONDS = 30


async def issue_socket_ticket(ctx: Services, principal: Principal) -> dict[str, Any]:
    """A single-use ticket for `/ws?ticket=`: browsers cannot send headers on the upgrade, and
    the long-lived access token must not end up in URLs and access logs."""
    ticket = secrets.token_urlsafe(24)
    grant = {
        "user_id": str(principal.user_id),
        "role": principal.role,
        "family": str(principal.family),
        "expires_at": principal.expires_at,
    }
    await ctx.redis.set(keys.socket_ticket(ticket), orjson.dumps(grant), ex=SOCKET_TICKET_SECONDS)
    return {"ticket": ticket, "expires_in": SOCKET_TICKET_SECONDS}


async def redeem_socket_ticket(ctx: Services, ticket: str) -> Principal:
    """The caller a ticket was issued to; the ticket is gone afterwards."""
    raw = await ctx.redis.getdel(keys.socket_ticket(ticket[:64]))
    if raw is None:
        raise Unauthorized("Ticket is invalid, used or expired")
    grant = orjson.loads(raw)
    principal = Principal(
        user_id=UUID(grant["user_id"]),
        role=grant["role"],
        family=UUID(grant["family"]),
        expires_at=grant["expires_at"],
    )
    await _check_session(ctx, principal.user_id, principal.family, fresh=True)
    return principal
