"""Every Redis key and channel name Reelwire uses, built here and nowhere else."""

from __future__ import annotations

from uuid import UUID

PREFIX = "rw:"


def revoked_session(family: UUID) -> str:
    """Set while a logged-out (or leaked) session's access tokens may still be unexpired."""
    return f"{PREFIX}session:revoked:{family}"
