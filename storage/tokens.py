"""Queries on refresh-token families (one per login session)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg


async def create_family(
    conn: asyncpg.Connection, family: UUID, user_id: UUID, jti: UUID, expires_at: datetime
) -> None:
    """Start a session whose first redeemable refresh token is `jti`."""
    await conn.execute(
        """INSERT INTO refresh_token_families (id, user_id, current_jti, expires_at)
           VALUES ($1, $2, $3, $4)""",
        family,
        user_id,
        jti,
        expires_at,
    )


async def lock_family(conn: asyncpg.Connection, family: UUID) -> asyncpg.Record | None:
    """The family row, locked until the transaction ends (serialises concurrent refreshes)."""
    return await conn.fetchrow(
        """SELECT id, user_id, current_jti, revoked_at, expires_at
           FROM refresh_token_families WHERE id = $1 FOR UPDATE""",
        family,
    )


async def sessions(
    conn: asyncpg.Connection, pairs: list[tuple[UUID, UUID]]
) -> dict[tuple[UUID, UUID], tuple[str | None, bool]]:
    """For each (user, session): how the account stands ('active', 'disabled', or None when
    there is no such account) and whether the session was revoked, in one query."""
    rows = await conn.fetch(
        """SELECT k.user_id, k.family,
                  (SELECT disabled_at IS NOT NULL FROM users WHERE id = k.user_id) AS disabled,
                  EXISTS (SELECT 1 FROM refresh_token_families
                          WHERE id = k.family AND revoked_at IS NOT NULL) AS revoked
           FROM unnest($1::uuid[], $2::uuid[]) AS k(user_id, family)""",
        [user for user, _ in pairs],
        [family for _, family in pairs],
    )
    return {
        (row["user_id"], row["family"]): (
            None if row["disabled"] is None else "disabled" if row["disabled"] else "active",
            bool(row["revoked"]),
        )
        for row in rows
    }


async def is_revoked(conn: asyncpg.Connection, family: UUID) -> bool:
    """Whether the session was logged out (or revoked for reuse)."""
    return bool(
        await conn.fetchval(
            "SELECT revoked_at IS NOT NULL FROM refresh_token_families WHERE id = $1", family
        )
    )


async def revoke_all(conn: asyncpg.Connection, user_id: UUID, reason: str) -> list[UUID]:
    """Revoke every live session of a user; the families revoked."""
    rows = await conn.fetch(
        """UPDATE refresh_token_families SET revoked_at = now(), revoked_reason = $2
           WHERE user_id = $1 AND revoked_at IS NULL RETURNING id""",
        user_id,
        reason,
    )
    return [row["id"] for row in rows]


async def rotate(
    conn: asyncpg.Connection, family: UUID, new_jti: UUID, expires_at: datetime
) -> None:
    """Make `new_jti` the only redeemable token of the family."""
    await conn.execute(
        """UPDATE refresh_token_families
           SET current_jti = $2, rotated_at = now(), expires_at = $3 WHERE id = $1""",
        family,
        new_jti,
        expires_at,
    )


async def revoke(conn: asyncpg.Connection, family: UUID, reason: str) -> bool:
    """Revoke the family; False when it was already revoked or does not exist."""
    return bool(
        await conn.fetchval(
            """UPDATE refresh_token_families SET revoked_at = now(), revoked_reason = $2
           WHERE id = $1 AND revoked_at IS NULL RETURNING true""",
            family,
            reason,
        )
    )
