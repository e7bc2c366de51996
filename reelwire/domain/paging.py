"""The CLUTCH API's page pagination plus opaque keyset cursors for large lists."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from reelwire.domain.errors import ValidationFailed


@dataclass(frozen=True)
class PageRequest:
    """`page`/`limit` as the CLUTCH API defines them, or a `cursor` from a previous page."""

    page: int = 1
    limit: int = 20
    cursor: str | None = None

    @property
    def offset(self) -> int:
        """Rows to skip in page mode."""
        return (self.page - 1) * self.limit


Position = datetime | int


def encode_cursor(position: Position, row_id: UUID) -> str:
    """An opaque cursor pointing just after (position, row_id) in the list's order."""
    value = position.isoformat() if isinstance(position, datetime) else position
    raw = orjson.dumps([value, str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Position, UUID]:
    """The position a cursor points after; 400 when it was not made by encode_cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, row_id = orjson.loads(raw)
        if isinstance(value, str):
            return datetime.fromisoformat(value), UUID(row_id)
        if isinstance(value, int) and not isinstance(value, bool):
            return value, UUID(row_id)
        raise ValueError(value)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ValidationFailed(
            "Invalid cursor", field_errors={"cursor": ["Invalid or expired cursor"]}
        ) from None


def pagination(request: PageRequest, total: int, returned: int) -> dict[str, Any]:
    """The pagination object; in cursor mode the page number is unknown and is null."""
    total_pages = max(1, math.ceil(total / request.limit)) if total else 0
    if request.cursor:
        return {
            "current_page": None,
            "total_pages": total_pages,
            "total_items": total,
            "has_next": returned == request.limit,
            "has_prev": True,
        }
    return {
        "current_page": request.page,
        "total_pages": total_pages,
        "total_items": total,
        "has_next": request.page < total_pages,
        "has_prev": request.page > 1,
    }


def decode_time_cursor(cursor: str) -> tuple[datetime, UUID]:
    """A cursor of a list ordered by time."""
    value, row_id = decode_cursor(cursor)
    if not isinstance(value, datetime):
        raise ValidationFailed(
            "Invalid cursor", field_errors={"cursor": ["Invalid or expired cursor"]}
        )
    return value, row_id


def next_cursor(
    rows: Sequence[Mapping[str, Any]], page: PageRequest, column: str = "created_at"
) -> str | None:
    """The cursor after a full page (ordered by `column`, then id); None after the last one."""
    if len(rows) < page.limit:
        return None
    return encode_cursor(rows[-1][column], rows[-1]["id"])
