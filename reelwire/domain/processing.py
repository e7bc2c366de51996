"""What happens to a video or clip as it is processed: the rows, the events, the fenced caches
and feeds. The transcoder's mechanics (FFmpeg, the ladder, the queue, the worker loop) live in
`transcode/`; the worker is handed the job functions here by the composition root."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from storage import videos as video_rows


async def mark_ready(conn: asyncpg.Connection, row: Any, **outputs: Any) -> None:
    """Set a video ready to watch: full progress, no error, published now unless it already
    was, and `outputs` (where its playback comes from, what was measured). Whoever made the
    renditions, our transcoder or an external one (the CLUTCH API's webhooks), ends here."""
    await video_rows.update(
        conn,
        row["id"],
        status="ready",
        progress=100.0,
        error=None,
        published_at=row["published_at"] or datetime.now(UTC),
        **outputs,
    )
