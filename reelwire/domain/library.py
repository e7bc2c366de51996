"""The S3 video library API's video library: always scoped to the caller's own videos."""

from __future__ import annotations

import math
from typing import Any

from reelwire.domain import media_access, present
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import NotFound
from storage import videos as video_rows


def shape(ctx: Services, row: Any, owner: Principal | None = None) -> dict[str, Any]:
    """One library entry (the caller's own), its media URLs signed for them when needed."""
    entry = present.library_video(row, ctx.blobs)
    if media_access.needs_signing(row):
        entry = media_access.sign_urls(ctx, entry, owner)
    return entry


async def page(
    ctx: Services,
    principal: Principal,
    *,
    page: int,
    page_size: int,
    search: str | None,
    sort_by: str,
    descending: bool,
) -> dict[str, Any]:
    """A page of the caller's videos with the S3 video library API's paging fields."""
    async with ctx.db.acquire() as conn:
        rows, total = await video_rows.library_page(
            conn,
            principal.user_id,
            search=search,
            sort_by=sort_by,
            descending=descending,
            limit=page_size,
            offset=(page - 1) * page_size,
        )
    total_pages = math.ceil(total / page_size) if total else 0
    return {
        "videos": [shape(ctx, r, principal) for r in rows],
        "total_count": total,
        "page": page,
        "page_size": page_size,
        "total_pages": total_pages,
        "has_more": page < total_pages,
    }


async def recent(ctx: Services, principal: Principal, limit: int) -> dict[str, Any]:
    """The caller's newest videos."""
    result = await page(
        ctx, principal, page=1, page_size=limit, search=None, sort_by="created_at", descending=True
    )
    return {"videos": result["videos"]}


async def by_key(ctx: Services, principal: Principal, key: str) -> dict[str, Any]:
    """The caller's video stored under `key`."""
    async with ctx.db.acquire() as conn:
        row = await video_rows.by_source_key(conn, principal.user_id, key)
    if row is None:
        raise NotFound("Video not found")
    return shape(ctx, row, principal)
