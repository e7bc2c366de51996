"""Request ids, the error envelope, and security headers."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from http_api.routing import json_response
from reelwire import logs
from reelwire.domain.errors import describe

logger = logging.getLogger(__name__)

REQUEST_ID = web.RequestKey("request_id", str)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")

# The CLUTCH API's headers, on every response including errors and unknown routes.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-XSS-Protection": "1; mode=block",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
}
CSP = web.AppKey("content_security_policy", str)


def content_security_policy(media_origins: tuple[str, ...] = ()) -> str:
    """The app's Content-Security-Policy: its own scripts only (no inline ones), players
    reading media through blob: URLs (MSE), and media from where it is stored (a CDN or S3)."""
    media = " ".join(media_origins)
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self' 'unsafe-inline'",
        "img-src": f"'self' data: blob: {media}",
        "media-src": f"'self' blob: {media}",
        "worker-src": "'self' blob:",
        "connect-src": f"'self' {media}",
        "object-src": "'none'",
        "base-uri": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value.strip()}" for name, value in directives.items())


_HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}
_HTTP_MESSAGES = {404: "Not found", 405: "Method not allowed"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_envelope(
    code: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    field_errors: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The CLUTCH API's error body."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    if field_errors:
        error["field_errors"] = field_errors
    return {"success": False, "error": error}


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take a sane incoming X-Request-ID or make one; it is echoed on the response."""
    incoming = request.headers.get("X-Request-ID", "")
    request[REQUEST_ID] = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
    token = logs.request_id.set(request[REQUEST_ID])  # in every log line while it is served
    try:
        return await handler(request)
    finally:
        logs.request_id.reset(token)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes the envelope; unexpected ones are logged with the request id."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "SERVER_ERROR" if exc.status >= 500 else "ERROR")
        message = _HTTP_MESSAGES.get(exc.status) or exc.reason
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return json_response(error_envelope(code, message), status=exc.status, headers=headers)
    except Exception as exc:
        problem = describe(exc)
        details = problem.details
        if problem.status >= 500:
            details = {**(details or {}), "request_id": request[REQUEST_ID]}
            where = (request.method, request.path, request[REQUEST_ID])
            if problem.unexpected:
                logger.exception("unhandled error for %s %s [%s]", *where)
            else:
                logger.warning("backend unavailable for %s %s [%s]: %r", *where, exc)
        body = error_envelope(
            problem.code, problem.message, details=details, field_errors=problem.field_errors
        )
        return json_response(body, status=problem.status, headers=problem.headers)


async def add_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: security headers and the request id on every response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", request.app[CSP])
    request_id = request.get(REQUEST_ID)
    if request_id:
        response.headers["X-Request-ID"] = request_id
