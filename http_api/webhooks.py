"""Incoming webhooks from an external transcoder (the CLUTCH and upload-flow APIs)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from http_api.routing import Call, RouteTable, validate_input
from reelwire.domain import webhooks
from reelwire.domain.errors import ValidationFailed
from reelwire.domain.schemas.common import parse_uuid
from reelwire.domain.schemas.uploads import ProcessedBody, ProcessingBody, WebhookOut

routes = RouteTable()


async def _verified(call: Call[Any], model: type[BaseModel]) -> tuple[Any, bytes]:
    request = call.request
    body = await request.read()
    webhooks.verify_signature(
        call.services.settings.webhook_secret,
        body,
        request.headers.get("x-webhook-signature"),
        request.headers.get("x-webhook-timestamp"),
    )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValidationFailed("Malformed JSON body") from None
    if not isinstance(data, dict):
        raise ValidationFailed("Invalid webhook payload: expected a JSON object")
    # The same rules as every other body: text PostgreSQL cannot store is refused too.
    return validate_input(model, data, "body"), body


@routes.post(
    "/api/webhooks/video-processed",
    rate=None,
    tag="webhooks",
    body=ProcessedBody,
    raw_body=True,
    response=WebhookOut,
    errors=(400, 401, 403, 404),
)
async def video_processed(call: Call[Any]) -> dict[str, Any]:
    """An external transcoder finished (the CLUTCH API); signed with WEBHOOK_SECRET."""
    payload, raw = await _verified(call, ProcessedBody)
    event = webhooks.event_id(call.request.headers.get("x-webhook-id") or payload.event_id, raw)
    return await webhooks.apply_result(
        call.services,
        endpoint="video-processed",
        event=event,
        video_id=parse_uuid(payload.video_id, "Video not found"),
        ready=payload.status == "success",
        playback_url=payload.playback_url,
        thumbnail_url=payload.thumbnail_url,
        quality_variants=payload.quality_variants,
        duration=payload.duration,
        error=payload.error_message,
    )


@routes.post(
    "/api/webhooks/video-processing",
    rate=None,
    tag="webhooks",
    body=ProcessingBody,
    raw_body=True,
    response=WebhookOut,
    errors=(400, 401, 403, 404),
)
async def video_processing(call: Call[Any]) -> dict[str, Any]:
    """An external transcoder's asset event (the upload-flow API); signed with WEBHOOK_SECRET."""
    payload, raw = await _verified(call, ProcessingBody)
    event = webhooks.event_id(call.request.headers.get("x-webhook-id") or payload.id, raw)
    data = payload.data
    return await webhooks.apply_result(
        call.services,
        endpoint="video-processing",
        event=event,
        video_id=parse_uuid(data.id, "Video not found"),
        ready=payload.type == "video.asset.ready",
        playback_url=data.playback_url,
        thumbnail_url=data.thumbnail_url,
        duration=data.duration,
        error=data.error_message,
    )
