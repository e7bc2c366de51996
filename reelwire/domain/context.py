"""The handles every operation needs, built once per process by the app factory."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis

from reelwire.domain.passwords import Passwords
from reelwire.domain.tokens import TokenCodec
from reelwire.settings import Settings


@dataclass(frozen=True)
class Services:
    """Passed as the first argument (`ctx`) to every domain operation."""

    settings: Settings
    db: asyncpg.Pool
    redis: aioredis.Redis
    tokens: TokenCodec
    passwords: Passwords


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: UUID
    role: str
    family: UUID

    @property
    def is_admin(self) -> bool:
        """Admins may moderate other users' content."""
        return self.role == "admin"
