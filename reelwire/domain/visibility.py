"""Who may see a video: one rule, for video rows and rendered videos alike.

Public and unlisted videos are visible to anyone (unlisted ones are just not listed), private
ones to their owner and admins; to anyone else a private video does not exist (404). The same
rule in SQL: `set_video_reaction` (migration 0003) refuses a private video to others inside the
statement that changes the counters, and the lists read only what `storage.videos` calls public
(ready, public, not deleted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reelwire.domain.context import Principal

PRIVATE = "private"


def may_see(visibility: str, owner_id: object, viewer: Principal | None) -> bool:
    """The rule itself."""
    if visibility != PRIVATE:
        return True
    return viewer is not None and (str(viewer.user_id) == str(owner_id) or viewer.is_admin)


def may_see_row(row: Mapping[str, Any], viewer: Principal | None) -> bool:
    """For a video row from PostgreSQL."""
    return may_see(row["visibility"], row["owner_id"], viewer)


def may_see_video(video: Mapping[str, Any], viewer: Principal | None) -> bool:
    """For a rendered video (as cached and answered)."""
    return may_see(video["visibility"], video["author"]["id"], viewer)
