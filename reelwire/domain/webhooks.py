"""Incoming webhooks from an external transcoder (the CLUTCH and upload-flow APIs).

Authenticity: HMAC-SHA256 of the raw body with WEBHOOK_SECRET, sent as
`x-webhook-signature: sha256=<hex>` and compared in constant time. When the sender also sends
`x-webhook-timestamp` (unix seconds), the signature covers `<timestamp>.<body>` and the
timestamp must be within 300 s of now, which stops replays of old captures.
Idempotency: each event id is recorded in the same transaction as its effect; a repeat is
acknowledged and not applied again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any
from uuid import UUID

from reelwire.domain import events, media, processing
from reelwire.domain.context import Services
from reelwire.domain.errors import Forbidden, NotFound, Unauthorized
from storage import videos as video_rows
from storage import webhooks as webhook_rows

logger = logging.getLogger(__name__)

TIMESTAMP_WINDOW = 300


def verify_signature(
    secret: str | None, body: bytes, signature: str | None, timestamp: str | None
) -> None:
    """Raise unless the signature (and timestamp, when sent) is right: 401 with the
    direct-upload API's message "Invalid signature", the reason in details."""
    try:
        _check_signature(secret, body, signature, timestamp)
    except Unauthorized as exc:
        raise Unauthorized("Invalid signature", details={"reason": exc.message}) from None


def _check_signature(
    secret: str | None, body: bytes, signature: str | None, timestamp: str | None
) -> None:
    if not secret:
        raise Forbidden("Webhooks are refused: WEBHOOK_SECRET is not configured")
    if not signature or not signature.startswith("sha256="):
        raise Unauthorized("Missing or malformed x-webhook-signature")
    signed = body
    if timestamp is not None:
        try:
            sent = int(timestamp)
        except ValueError:
            raise Unauthorized("Malformed x-webhook-timestamp") from None
        if abs(time.time() - sent) > TIMESTAMP_WINDOW:
            raise Unauthorized("Webhook timestamp is outside the 300 s window")
        signed = timestamp.encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.removeprefix("sha256=")):
        raise Unauthorized("Invalid webhook signature")


def event_id(explicit: str | None, body: bytes) -> str:
    """The sender's event id, or the body's digest when it sends none (same body, same event)."""
    return explicit or "sha256:" + hashlib.sha256(body).hexdigest()


async def apply_result(
    ctx: Services,
    *,
    endpoint: str,
    event: str,
    video_id: UUID,
    ready: bool,
    playback_url: str | None = None,
    thumbnail_url: str | None = None,
    quality_variants: dict[str, str] | None = None,
    duration: float | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """Record the event once and set the video's status from it."""
    async with ctx.db.acquire() as conn, conn.transaction():
        first_time = await webhook_rows.record_event(conn, event, endpoint)
        if not first_time:
            return {"received": True, "duplicate": True}
        row = await video_rows.get_for_update(conn, video_id)
        if row is None:
            raise NotFound(media.VIDEO_NOT_FOUND)
        if ready:
            external = {
                "playback_url": playback_url,
                "thumbnail_url": thumbnail_url,
                "quality_variants": quality_variants or {},
            }
            await processing.mark_ready(
                conn,
                row,
                provider="external",
                external=external,
                duration=duration if duration is not None else row["duration"],
            )
        else:
            await video_rows.update(
                conn,
                video_id,
                status="failed",
                error=error or "The external transcoder reported an error",
            )
    status = "ready" if ready else "failed"
    await events.processing(
        ctx, video_id, row["owner_id"], status, 100.0 if ready else 0.0, None if ready else error
    )
    logger.info("webhook %s: video %s is %s", event, video_id, status)
    return {"received": True, "duplicate": False, "video_id": str(video_id), "status": status}
