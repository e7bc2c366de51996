"""Queries on users. Functions take the connection first; the caller owns the transaction."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

_PUBLIC = """id, username, display_name, avatar_url, bio, verified, role,
             follower_count, following_count, created_at, settings"""
_PRIVATE = _PUBLIC + ", email, email_verified, updated_at, last_login_at"


async def insert(
    conn: asyncpg.Connection,
    *,
    username: str,
    email: str,
    password_hash: str,
    display_name: str,
) -> asyncpg.Record:
    """Create a user; raises asyncpg.UniqueViolationError naming the index on a taken name."""
    return await conn.fetchrow(
        f"""INSERT INTO users (username, email, password_hash, display_name)
            VALUES ($1, $2, $3, $4) RETURNING {_PRIVATE}""",
        username,
        email,
        password_hash,
        display_name,
    )


async def get_private(conn: asyncpg.Connection, user_id: UUID) -> asyncpg.Record | None:
    """The user as they see themselves."""
    return await conn.fetchrow(f"SELECT {_PRIVATE} FROM users WHERE id = $1", user_id)


async def get_public(conn: asyncpg.Connection, user_id: UUID) -> asyncpg.Record | None:
    """The user as others see them."""
    return await conn.fetchrow(f"SELECT {_PUBLIC} FROM users WHERE id = $1", user_id)


async def id_by_username(conn: asyncpg.Connection, username: str) -> UUID | None:
    """The id of the user with this username, case-insensitively."""
    found: UUID | None = await conn.fetchval(
        "SELECT id FROM users WHERE lower(username) = lower($1)", username
    )
    return found


async def get_credentials(conn: asyncpg.Connection, login: str) -> asyncpg.Record | None:
    """id, password hash and whether disabled, by username or email, case-insensitively."""
    column = "lower(email)" if "@" in login else "lower(username)"
    return await conn.fetchrow(
        f"SELECT id, password_hash, disabled_at FROM users WHERE {column} = lower($1)", login
    )


async def record_login(conn: asyncpg.Connection, user_id: UUID, new_hash: str | None) -> None:
    """Stamp the login, and store a re-hashed password when the cost parameters changed."""
    await conn.execute(
        """UPDATE users SET last_login_at = now(),
                  password_hash = coalesce($2, password_hash) WHERE id = $1""",
        user_id,
        new_hash,
    )


async def update_profile(
    conn: asyncpg.Connection, user_id: UUID, changes: dict[str, Any]
) -> asyncpg.Record | None:
    """Set the given columns (names come from the schema, never from input)."""
    allowed = {"display_name", "bio", "avatar_url", "settings"}
    assert set(changes) <= allowed, changes
    if not changes:
        return await get_private(conn, user_id)
    columns = list(changes)
    assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=2))
    return await conn.fetchrow(
        f"UPDATE users SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {_PRIVATE}",
        user_id,
        *(changes[c] for c in columns),
    )


async def exists(conn: asyncpg.Connection, user_id: UUID) -> bool:
    """Whether the user exists."""
    return bool(await conn.fetchval("SELECT true FROM users WHERE id = $1", user_id))


async def standing(conn: asyncpg.Connection, user_id: UUID) -> str | None:
    """'active' or 'disabled', or None when there is no such account."""
    disabled = await conn.fetchval(
        "SELECT disabled_at IS NOT NULL FROM users WHERE id = $1", user_id
    )
    return None if disabled is None else "disabled" if disabled else "active"


async def standings(conn: asyncpg.Connection, user_ids: list[UUID]) -> dict[UUID, str]:
    """`standing` of many users in one query; accounts that do not exist are left out."""
    rows = await conn.fetch(
        "SELECT id, disabled_at IS NOT NULL AS disabled FROM users WHERE id = ANY($1::uuid[])",
        user_ids,
    )
    return {row["id"]: "disabled" if row["disabled"] else "active" for row in rows}


async def set_disabled(conn: asyncpg.Connection, user_id: UUID, disabled: bool) -> bool:
    """Disable or enable an account; False when there is no such account."""
    return bool(
        await conn.fetchval(
            """UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END
               WHERE id = $1 RETURNING true""",
            user_id,
            disabled,
        )
    )


async def lock_settings(conn: asyncpg.Connection, user_id: UUID) -> dict[str, Any] | None:
    """The user's settings, with the row locked for a read-modify-write."""
    row = await conn.fetchrow("SELECT settings FROM users WHERE id = $1 FOR UPDATE", user_id)
    return None if row is None else dict(row["settings"] or {})
