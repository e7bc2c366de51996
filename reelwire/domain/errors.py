"""Domain errors. Raised by operations, mapped to the error envelope in one place per transport."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.exceptions


class DomainError(Exception):
    """Base: a code from the CLUTCH API's list, an HTTP status, and a message a person can read."""

    code = "SERVER_ERROR"
    status = 500
    default_message = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        field_errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.field_errors = field_errors
        self.headers = headers or {}
        super().__init__(self.message)


class ValidationFailed(DomainError):
    code, status, default_message = "VALIDATION_ERROR", 400, "Request validation failed"


class Unauthorized(DomainError):
    code, status, default_message = "UNAUTHORIZED", 401, "Authentication required"


class Forbidden(DomainError):
    code, status, default_message = "FORBIDDEN", 403, "You do not have permission to do this"


class NotFound(DomainError):
    code, status, default_message = "NOT_FOUND", 404, "Not found"


class Conflict(DomainError):
    code, status, default_message = "CONFLICT", 409, "Resource already exists"


class Gone(DomainError):
    code, status, default_message = "GONE", 410, "Gone"


class PreconditionFailed(DomainError):
    code, status, default_message = "PRECONDITION_FAILED", 412, "Precondition failed"


class Locked(DomainError):
    code, status, default_message = "LOCKED", 423, "The resource is being written to"


class ChecksumMismatch(DomainError):
    """tus's 460: the chunk does not match the checksum it was sent with (and was discarded)."""

    code, status, default_message = "CHECKSUM_MISMATCH", 460, "Checksum mismatch"


class PayloadTooLarge(DomainError):
    code, status, default_message = "PAYLOAD_TOO_LARGE", 413, "Request body is too large"


class UnsupportedMediaType(DomainError):
    code, status, default_message = "UNSUPPORTED_MEDIA_TYPE", 415, "Unsupported content type"


class LimitExceeded(DomainError):
    code, status, default_message = "LIMIT_EXCEEDED", 400, "A limit was reached"


class RateLimited(DomainError):
    code, status, default_message = "RATE_LIMITED", 429, "Too many requests"


class ServiceUnavailable(DomainError):
    code, status, default_message = "SERVICE_UNAVAILABLE", 503, "Service temporarily unavailable"


@dataclass(frozen=True)
class Problem:
    """What a failure means to the caller, the same for REST (the envelope and `status`) and
    WebSocket (an `error` message): built by `describe`, rendered by each transport."""

    status: int
    code: str
    message: str
    details: dict[str, Any] | None = None
    field_errors: dict[str, list[str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    unexpected: bool = False  # a bug: log it with its traceback


OUTAGE_RETRY_SECONDS = 5


def describe(exc: BaseException) -> Problem:
    """The one error mapper: a domain error as it says, a backend outage as 503
    SERVICE_UNAVAILABLE with `Retry-After`, anything else as a 500 that shows nothing inside."""
    if isinstance(exc, DomainError):
        return Problem(
            exc.status, exc.code, exc.message, exc.details, exc.field_errors, dict(exc.headers)
        )
    if is_outage(exc):
        return Problem(
            ServiceUnavailable.status,
            ServiceUnavailable.code,
            "A backend service is unavailable; retry shortly",
            headers={"Retry-After": str(OUTAGE_RETRY_SECONDS)},
        )
    return Problem(500, DomainError.code, DomainError.default_message, unexpected=True)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says PostgreSQL or Redis cannot be reached or is shutting down right now
    (answer 503 and retry), as opposed to a bug or bad input. One rule for REST and WebSocket."""
    if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:
        return False  # a path of ours that is wrong, not a server that is away
    return isinstance(exc, _OUTAGES)


_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # CannotConnectNow, ConnectionDoesNotExist
    asyncpg.exceptions.OperatorInterventionError,  # AdminShutdown: a fast shutdown
    asyncpg.exceptions.InterfaceError,  # "cannot switch to state": the connection broke
    asyncpg.exceptions.InternalClientError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)
_LOCAL_ERRNOS = {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EINVAL}
