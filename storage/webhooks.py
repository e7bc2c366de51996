"""Idempotency records of incoming webhooks."""

from __future__ import annotations

import asyncpg


async def record_event(conn: asyncpg.Connection, event_id: str, endpoint: str) -> bool:
    """True the first time an event id is seen; False for a repeat."""
    return bool(
        await conn.fetchval(
            "INSERT INTO webhook_events (event_id, endpoint) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING true",
            event_id,
            endpoint,
        )
    )
