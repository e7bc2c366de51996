"""The handles every operation needs, built once per process by the app factory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import asyncpg
import redis.asyncio as aioredis

from cache.rate_limits import RateLimiter
from cache.reads import ClipFeedCache, ProfileCache, VideoCache
from cache.views import ViewCounter
from pubsub.bus import EventBus
from pubsub.outbox import Outbox
from reelwire.domain.passwords import Passwords
from reelwire.domain.together import Together
from reelwire.domain.tokens import TokenCodec
from reelwire.settings import Settings
from storage.blobs import BlobStore
from transcode.queue import JobQueue


@dataclass(frozen=True)
class Services:
    """Passed as the first argument (`ctx`) to every domain operation."""

    settings: Settings
    db: asyncpg.Pool
    redis: aioredis.Redis
    outbox: Outbox  # Redis writes held while it is away; reads that can do without it
    tokens: TokenCodec
    passwords: Passwords
    blobs: BlobStore
    jobs: JobQueue
    views: ViewCounter
    video_cache: VideoCache
    profile_cache: ProfileCache
    clip_feed_cache: ClipFeedCache
    limiter: RateLimiter
    bus: EventBus
    # What a crowd of sockets asks at once, asked together (reelwire.domain.together): whether
    # a session is logged out, how an account stands, and both at once.
    logged_out: Together[UUID, bool] = field(default_factory=Together)
    standings: Together[UUID, str] = field(default_factory=Together)
    sessions: Together[tuple[UUID, UUID], tuple[str | None, bool]] = field(default_factory=Together)

    @property
    def spool_dir(self) -> Path:
        """Where uploads are written while they arrive (same filesystem as local media)."""
        return Path(self.settings.home) / "tmp"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    user_id: UUID
    role: str
    family: UUID
    expires_at: float = math.inf  # when the access token that proved it expires (epoch s)

    @property
    def is_admin(self) -> bool:
        """Admins may moderate other users' content."""
        return self.role == "admin"
