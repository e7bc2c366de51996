"""Settings: read once from the environment into one frozen object that is passed down."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cache.rate_limits import Limit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("TEXT", "JSON")
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?$|^\*$")


class SettingsError(ValueError):
    """A setting has a value Reelwire cannot use; the message names the variable."""


# The CLUTCH API: auth 10/min per address, uploads 5/h, comments 30/h, likes 100/min, rest 1000/h
DEFAULT_RATE_LIMITS = MappingProxyType(
    {
        "auth": Limit(10, 60),
        "upload": Limit(5, 3600),
        "comment": Limit(30, 3600),
        "like": Limit(100, 60),
        "general": Limit(1000, 3600),
        # Watching is not calling the API: HLS asks for a segment (and its audio) every 4 s,
        # so one address gets room for ~15 viewers at the top rung for hours, seeking included.
        "media": Limit(30000, 3600),
    }
)
_PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "day": 86400,
}


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
    public_base_url: str | None = None
    http_idle_timeout: int = 15
    startup_timeout: int = 60
    upload_drain_seconds: int = 30
    log_level: str = "INFO"
    log_format: str = "TEXT"  # or JSON: one object a line (reelwire.logs)
    max_json_bytes: int = 1024 * 1024
    db_pool_size: int = 10
    password_hashing: PasswordHashing = field(default_factory=PasswordHashing)
    # media
    max_video_bytes: int = 2 * 1024**3
    max_clip_bytes: int = 100 * 1024**2
    max_image_bytes: int = 10 * 1024**2
    max_video_seconds: int = 3600
    max_video_dimension: int = 4096
    max_image_pixels: int = 40_000_000  # width x height of an image clip or thumbnail
    transcode_concurrency: int = max(1, (os.cpu_count() or 2) // 2)
    transcode_timeout: int = 3600
    job_lease_seconds: int = 60
    keep_originals: bool = True
    inline_worker: bool | None = None
    upload_url_ttl: int = 3600
    media_url_ttl: int = 4 * 3600
    clip_sweep_seconds: int = 3600
    tus_expire_hours: int = 24
    tus_max_unfinished: int = 10
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    cdn_base_url: str | None = None
    webhook_secret: str | None = None
    cleanup_api_key: str | None = None
    metrics_token: str | None = None
    # social
    rate_limits_enabled: bool = True
    rate_limits: Mapping[str, Limit] = field(default_factory=lambda: DEFAULT_RATE_LIMITS)
    view_flush_ms: int = 1000
    trending_window_days: int = 7
    # realtime
    web_concurrency: int = 1
    coalesce_ms: int = 100
    history_size: int = 1000
    history_ttl: int = 600
    presence_ttl: int = 15
    ws_heartbeat_seconds: int = 25
    ws_auth_timeout: int = 10
    ws_max_message_bytes: int = 64 * 1024
    ws_max_subscriptions: int = 100
    ws_messages_per_second: int = 20
    ws_queue_bytes: int = 1024 * 1024
    ws_queue_messages: int = 2000
    ws_send_buffer_bytes: int = 128 * 1024
    ws_write_delay_ms: int = 5
    ws_max_sockets: int = 0  # 0: derived from the open-files limit (see max_sockets)
    ws_max_sockets_per_address: int = 1000

    @functools.cached_property
    def max_sockets(self) -> int:
        """Sockets one process holds at most: WS_MAX_SOCKETS, or what its open-files limit
        leaves after a reserve for the database, Redis, uploads and media files."""
        if self.ws_max_sockets:
            return self.ws_max_sockets
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 100_000
        return max(100, soft - 1000)

    @property
    def embedded_postgres(self) -> bool:
        """True when no DATABASE_URL is set and PostgreSQL runs from the data dir."""
        return self.database_url is None

    @property
    def embedded_redis(self) -> bool:
        """True when no REDIS_URL is set and Redis runs from the data dir."""
        return self.redis_url is None

    @property
    def runs_inline_worker(self) -> bool:
        """Whether `serve` also transcodes (the embedded default does, unless told otherwise)."""
        if self.inline_worker is not None:
            return self.inline_worker
        return self.embedded_postgres

    @property
    def media_origins(self) -> tuple[str, ...]:
        """Origins other than ours that browsers load media from: the CDN, or the S3 endpoint
        that presigned GETs redirect to."""
        if self.s3_bucket is None:
            return ()
        # Signed media redirects to presigned GETs on S3 even when public media is on a CDN.
        s3 = _origin(self.s3_endpoint_url) if self.s3_endpoint_url else "https://*.amazonaws.com"
        if self.cdn_base_url:
            return (_origin(self.cdn_base_url), s3)
        return (s3,)

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
            redis_url=reader.url(
                "REDIS_URL", ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
            ),
            jwt_secret_key=reader.secret("JWT_SECRET_KEY"),
            jwt_audience=reader.text("JWT_AUDIENCE", "reelwire-api"),
            access_token_minutes=reader.integer("ACCESS_TOKEN_EXPIRE_MINUTES", 15, 1, 24 * 60),
            refresh_token_days=reader.integer("REFRESH_TOKEN_EXPIRE_DAYS", 7, 1, 365),
            cors_origins=reader.origins("CORS_ORIGINS"),
            public_base_url=reader.url("PUBLIC_BASE_URL", ("http", "https")),
            http_idle_timeout=reader.integer("HTTP_IDLE_TIMEOUT_SECONDS", 15, 1, 3600),
            startup_timeout=reader.integer("STARTUP_TIMEOUT_SECONDS", 60, 0, 3600),
            upload_drain_seconds=reader.integer("UPLOAD_DRAIN_SECONDS", 30, 0, 3600),
            log_level=reader.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
            log_format=reader.choice("LOG_FORMAT", "TEXT", LOG_FORMATS),
            max_json_bytes=reader.integer("MAX_JSON_BODY_BYTES", 1024 * 1024, 1024, 64 << 20),
            db_pool_size=reader.integer("DB_POOL_SIZE", 10, 1, 500),
            max_video_bytes=reader.integer("MAX_VIDEO_UPLOAD_BYTES", 2 * 1024**3, 1024, 1 << 40),
            max_clip_bytes=reader.integer("MAX_CLIP_UPLOAD_BYTES", 100 * 1024**2, 1024, 1 << 40),
            max_image_bytes=reader.integer("MAX_IMAGE_UPLOAD_BYTES", 10 * 1024**2, 1024, 1 << 34),
            max_video_seconds=reader.integer("MAX_VIDEO_SECONDS", 3600, 1, 86400),
            max_video_dimension=reader.integer("MAX_VIDEO_DIMENSION", 4096, 64, 16384),
            max_image_pixels=reader.integer("MAX_IMAGE_PIXELS", 40_000_000, 4096, 1 << 31),
            transcode_concurrency=reader.integer(
                "TRANSCODE_CONCURRENCY", max(1, (os.cpu_count() or 2) // 2), 1, 256
            ),
            transcode_timeout=reader.integer("TRANSCODE_TIMEOUT_SECONDS", 3600, 5, 86400),
            job_lease_seconds=reader.integer("JOB_LEASE_SECONDS", 60, 2, 3600),
            keep_originals=reader.boolean("KEEP_ORIGINALS", True),
            inline_worker=reader.optional_boolean("INLINE_WORKER"),
            upload_url_ttl=reader.integer("UPLOAD_URL_TTL_SECONDS", 3600, 30, 7 * 86400),
            media_url_ttl=reader.integer("MEDIA_URL_TTL_SECONDS", 4 * 3600, 600, 7 * 86400),
            clip_sweep_seconds=reader.integer("CLIP_SWEEP_SECONDS", 3600, 1, 86400),
            tus_expire_hours=reader.integer("TUS_EXPIRE_HOURS", 24, 1, 24 * 30),
            tus_max_unfinished=reader.integer("TUS_MAX_UNFINISHED_UPLOADS", 10, 1, 10_000),
            s3_bucket=reader.optional_text("S3_BUCKET"),
            s3_endpoint_url=reader.url("S3_ENDPOINT_URL", ("http", "https")),
            s3_region=reader.text("AWS_REGION", reader.text("AWS_DEFAULT_REGION", "us-east-1")),
            cdn_base_url=reader.url("CDN_BASE_URL", ("http", "https")),
            webhook_secret=reader.optional_text("WEBHOOK_SECRET"),
            cleanup_api_key=reader.optional_text("CLEANUP_API_KEY"),
            metrics_token=reader.optional_text("METRICS_TOKEN"),
            rate_limits_enabled=reader.boolean("RATE_LIMITS_ENABLED", True),
            rate_limits=MappingProxyType(
                {
                    name: reader.limit(f"RATE_LIMIT_{name.upper()}", default)
                    for name, default in DEFAULT_RATE_LIMITS.items()
                }
            ),
            view_flush_ms=reader.integer("VIEW_FLUSH_MS", 1000, 50, 600_000),
            trending_window_days=reader.integer("TRENDING_WINDOW_DAYS", 7, 1, 365),
            web_concurrency=reader.integer("WEB_CONCURRENCY", 1, 1, 256),
            coalesce_ms=reader.integer("COALESCE_MS", 100, 0, 10_000),
            history_size=reader.integer("HISTORY_SIZE", 1000, 0, 1_000_000),
            history_ttl=reader.integer("HISTORY_TTL_SECONDS", 600, 1, 30 * 86400),
            presence_ttl=reader.integer("PRESENCE_TTL_SECONDS", 15, 1, 3600),
            ws_heartbeat_seconds=reader.integer("WS_HEARTBEAT_SECONDS", 25, 1, 3600),
            ws_auth_timeout=reader.integer("WS_AUTH_TIMEOUT_SECONDS", 10, 1, 3600),
            ws_max_message_bytes=reader.integer("WS_MAX_MESSAGE_BYTES", 64 * 1024, 1024, 16 << 20),
            ws_max_subscriptions=reader.integer("WS_MAX_SUBSCRIPTIONS", 100, 1, 100_000),
            ws_messages_per_second=reader.integer("WS_MESSAGES_PER_SECOND", 20, 1, 100_000),
            ws_queue_bytes=reader.integer("WS_QUEUE_BYTES", 1024 * 1024, 4096, 1 << 30),
            ws_queue_messages=reader.integer("WS_QUEUE_MESSAGES", 2000, 10, 10_000_000),
            ws_send_buffer_bytes=reader.integer("WS_SEND_BUFFER_BYTES", 128 * 1024, 0, 1 << 30),
            ws_write_delay_ms=reader.integer("WS_WRITE_DELAY_MS", 5, 0, 1000),
            ws_max_sockets=reader.integer("WS_MAX_SOCKETS", 0, 0, 10_000_000),
            ws_max_sockets_per_address=reader.integer(
                "WS_MAX_SOCKETS_PER_ADDRESS", 1000, 0, 10_000_000
            ),
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

    def optional_text(self, name: str) -> str | None:
        return self._get(name)

    def optional_boolean(self, name: str) -> bool | None:
        raw = self._get(name)
        if raw is None:
            return None
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}: expected true or false, got {raw!r}")

    def boolean(self, name: str, default: bool) -> bool:
        value = self.optional_boolean(name)
        return default if value is None else value

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

    def limit(self, name: str, default: Limit) -> Limit:
        raw = self._get(name)
        if raw is None:
            return default
        count, _, period = raw.partition("/")
        match = re.fullmatch(r"(\d*)\s*([a-z]+)", period.strip().lower())
        unit = match and _PERIODS.get(match.group(2).rstrip("s") or "s")
        if not count.strip().isdigit() or not match or not unit or int(count) < 1:
            raise SettingsError(
                f"{name}: expected a limit like 100/min, 5/hour or 10/30s, got {raw!r}"
            )
        return Limit(int(count), int(match.group(1) or 1) * unit)

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


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
