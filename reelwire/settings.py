"""Settings: read once from the environment into one frozen object that is passed down."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?$|^\*$")


class SettingsError(ValueError):
    """A setting has a value Reelwire cannot use; the message names the variable."""


@dataclass(frozen=True)
class PasswordHashing:
    """argon2id cost parameters (RFC 9106 low-memory profile by default)."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


@dataclass(frozen=True)
class Settings:
    """Everything Reelwire reads from its environment, validated."""

    host: str = "127.0.0.1"
    port: int = 8080
    home: Path = Path(".reelwire")
    database_url: str | None = None
    redis_url: str | None = None
    jwt_secret_key: str | None = None
    jwt_audience: str = "reelwire-api"
    jwt_issuer: str = "reelwire"
    access_token_minutes: int = 15
    refresh_token_days: int = 7
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    max_json_bytes: int = 1024 * 1024
    db_pool_size: int = 10
    password_hashing: PasswordHashing = field(default_factory=PasswordHashing)

    @property
    def embedded_postgres(self) -> bool:
        """True when no DATABASE_URL is set and PostgreSQL runs from the data dir."""
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        """True when no REDIS_URL is set and Redis runs from the data dir."""
        return self.redis_url is None

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (used once the embedded services are up)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment; raise SettingsError naming the bad variable."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        settings = cls(
            host=reader.text("HOST", "127.0.0.1"),
            port=reader.integer("PORT", 8080, 1, 65535),
            home=Path(reader.text("REELWIRE_HOME", ".reelwire")).expanduser().absolute(),
            database_url=reader.url("DATABASE_URL", ("postgres", "postgresql")),
            redis_url=reader.url("REDIS_URL", ("redis", "rediss", "unix")),
            jwt_secret_key=reader.secret("JWT_SECRET_KEY"),
            jwt_audience=reader.text("JWT_AUDIENCE", "reelwire-api"),
            access_token_minutes=reader.integer("ACCESS_TOKEN_EXPIRE_MINUTES", 15, 1, 24 * 60),
            refresh_token_days=reader.integer("REFRESH_TOKEN_EXPIRE_DAYS", 7, 1, 365),
            cors_origins=reader.origins("CORS_ORIGINS"),
            log_level=reader.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
            max_json_bytes=reader.integer("MAX_JSON_BODY_BYTES", 1024 * 1024, 1024, 64 << 20),
            db_pool_size=reader.integer("DB_POOL_SIZE", 10, 1, 500),
        )
        if settings.database_url is not None and settings.jwt_secret_key is None:
            raise SettingsError(
                "JWT_SECRET_KEY: must be set when DATABASE_URL is set "
                "(every process behind one database must sign with the same key)"
            )
        return settings


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def _get(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self._get(name) or default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self._get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}: expected a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = (self._get(name) or default).upper()
        if raw not in choices:
            raise SettingsError(f"{name}: must be one of {', '.join(choices)}, got {raw!r}")
        return raw

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        raw = self._get(name)
        if raw is None:
            return None
        scheme = raw.split("://", 1)[0].lower() if "://" in raw else ""
        if scheme not in schemes:
            wanted = " or ".join(f"{s}://" for s in schemes)
            raise SettingsError(f"{name}: expected a URL starting with {wanted}, got {raw!r}")
        return raw

    def secret(self, name: str) -> str | None:
        raw = self._get(name)
        if raw is not None and len(raw.encode()) < 32:
            raise SettingsError(f"{name}: must be at least 32 bytes long (got {len(raw)})")
        return raw

    def origins(self, name: str) -> tuple[str, ...]:
        raw = self._get(name)
        if raw is None:
            return ()
        origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
        for origin in origins:
            if not _ORIGIN_RE.match(origin):
                raise SettingsError(
                    f"{name}: {origin!r} is not an origin like https://app.example.com or *"
                )
        return origins
