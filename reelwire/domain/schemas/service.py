"""The service itself: what this API is, and whether it is healthy."""

from __future__ import annotations

from pydantic import BaseModel


class ApiInfoOut(BaseModel):
    """GET /api/."""

    name: str
    version: str
    message: str
    docs: str


class HealthOut(BaseModel):
    """Liveness and readiness."""

    status: str
    checks: dict[str, str] | None = None
