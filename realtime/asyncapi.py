"""`GET /api/asyncapi.json`: the WebSocket protocol as an AsyncAPI 3.0 document, generated from
the models in `realtime.schemas` that the server validates and builds its messages with.

The REST route table declares this route too (so `/api/openapi.json` lists it and CORS covers
it, as it does every REST route); this transport serves it, with the same `general` rate limit.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import orjson
from aiohttp import web
from pydantic.json_schema import models_json_schema

import reelwire
from realtime.close_codes import CloseCode
from realtime.schemas import CHANNELS, CLIENT_MESSAGES, REPLIES, SERVER_MESSAGES, Event, type_of
from reelwire.appkeys import SERVICES, SETTINGS
from reelwire.domain import rates, urls
from reelwire.domain.urls import ASYNCAPI_URL, DOCS_URL

RATE_BUCKET = "general"  # as the route table declares for this route


def setup_asyncapi(app: web.Application) -> None:
    """Serve the document at ASYNCAPI_URL, also with a trailing slash (as every REST route)."""
    for path in (ASYNCAPI_URL, ASYNCAPI_URL + "/"):
        app.router.add_resource(path).add_route("GET", asyncapi)


async def asyncapi(request: web.Request) -> web.Response:
    """The WebSocket protocol (`/ws`) as an AsyncAPI 3.0 document."""
    limit_headers = await rates.check(
        request.app[SERVICES], RATE_BUCKET, None, request.remote or "unknown"
    )
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    base = urls.public_base_url(request.app[SETTINGS], secure=request.secure, sockname=sockname)
    scheme, _, host = base.partition("://")
    return web.Response(
        body=orjson.dumps(asyncapi_document(host, secure=scheme == "https")),
        content_type="application/json",
        headers=limit_headers,
    )


_SCHEMA_REF = "#/components/schemas/{model}"
_CONNECTION = "connection"  # the socket itself: commands, their replies, control messages
_CHANNEL_KEYS = {"video:{video_id}": "video", "user:{user_id}": "user", "feed:clips": "clipFeed"}
_CHANNEL_TEXT = {
    "video": "A video's counters, comments and processing status. Anyone who may see the video "
    "(a private one answers NOT_FOUND to others).",
    "user": "One user's own events (processing progress, followers, views of their clips, "
    "notifications). That user only: FORBIDDEN to others, UNAUTHORIZED to anonymous sockets.",
    "clipFeed": "Clips of everyone the user follows; a follow or unfollow while connected "
    "adjusts it. Authenticated sockets only; it has no single offset, so `since` always answers "
    "`recovered: false`.",
}


def asyncapi_document(host: str, *, secure: bool = False) -> dict[str, Any]:
    """The AsyncAPI document, with `servers` naming the host it was asked from."""
    document = copy.deepcopy(_asyncapi_body())
    base = f"{'https' if secure else 'http'}://{host}"
    document["info"]["externalDocs"] = {
        "description": "The REST API (OpenAPI), for reading",
        "url": base + DOCS_URL,
    }
    document["servers"] = {
        "reelwire": {
            "host": host,
            "protocol": "wss" if secure else "ws",
            "pathname": "/ws",
            "description": "This server. One socket carries every channel.",
            "security": [
                {"$ref": "#/components/securitySchemes/bearer"},
                {"$ref": "#/components/securitySchemes/ticket"},
            ],
        }
    }
    return document


@functools.cache
def _asyncapi_body() -> dict[str, Any]:
    models = [*CLIENT_MESSAGES.values(), *SERVER_MESSAGES.values()]
    refs, top = models_json_schema([(m, "validation") for m in models], ref_template=_SCHEMA_REF)
    messages: dict[str, Any] = {}
    for model in models:
        kind = type_of(model)
        messages[kind] = {
            "name": kind,
            "title": kind,
            "summary": (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "),
            "payload": refs[(model, "validation")],
        }

    def message_refs(kinds: Any) -> dict[str, Any]:
        return {kind: {"$ref": f"#/components/messages/{kind}"} for kind in kinds}

    control = [k for k in SERVER_MESSAGES if not _is_event(k)]
    channels: dict[str, Any] = {
        _CONNECTION: {
            "address": None,
            "title": "The socket",
            "description": "Commands a client sends, their replies (which echo the command's "
            "`id`), and the server's own messages. Not a channel to subscribe to.",
            "messages": message_refs([*CLIENT_MESSAGES, *control]),
        }
    }
    for address, kinds in CHANNELS.items():
        key = _CHANNEL_KEYS[address]
        channel: dict[str, Any] = {
            "address": address,
            "title": address,
            "description": _CHANNEL_TEXT[key],
            "messages": message_refs(kinds),
        }
        parameters = [name for name in ("video_id", "user_id") if "{" + name + "}" in address]
        if parameters:
            channel["parameters"] = {
                name: {"description": "A UUID, as in the REST routes"} for name in parameters
            }
        channels[key] = channel

    def on_socket(*kinds: str) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{_CONNECTION}/messages/{kind}"} for kind in kinds]

    operations: dict[str, Any] = {}
    for kind in CLIENT_MESSAGES:
        operations[kind] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_CONNECTION}"},
            "summary": messages[kind]["summary"],
            "messages": on_socket(kind),
            "reply": {
                "channel": {"$ref": f"#/channels/{_CONNECTION}"},
                "messages": on_socket(*REPLIES[kind], "error"),
            },
        }
    operations["receiveControl"] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{_CONNECTION}"},
        "summary": "The greeting, token expiry warnings and unsolicited `subscribed`",
        "messages": on_socket("welcome", "token_expiring", "subscribed"),
    }
    for address, kinds in CHANNELS.items():
        key = _CHANNEL_KEYS[address]
        operations["receive" + key[0].upper() + key[1:]] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"Events on `{address}` (after a `subscribe`)",
            "messages": [{"$ref": f"#/channels/{key}/messages/{kind}"} for kind in kinds],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Reelwire realtime API",
            "version": reelwire.__version__,
            "description": (
                "`GET /ws`: text frames, one JSON object each, every one with a `type`. A client "
                "message may carry `id`, echoed in its reply. Subscribe to channels with "
                "`subscribe`; every event carries `ts` (publish time, ms) and `offset` "
                "(its position in the channel, to recover from with `since`). Limits and closing "
                f"codes: 64 KiB per message ({CloseCode.MESSAGE_TOO_BIG}), 100 subscriptions, "
                f"20 messages/s (then RATE_LIMITED, then {CloseCode.RATE_LIMITED}), a slow reader "
                f"is closed with {CloseCode.SLOW}, an expired token with "
                f"{CloseCode.UNAUTHORIZED}, a restarting server closes with {CloseCode.RESTART}: "
                "reconnect after 1-5 s and resubscribe with `since`."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": top.get("$defs", {}),
            "messages": messages,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`Authorization: Bearer <access_token>` on the upgrade "
                    "(or an `auth` message after connecting)",
                },
                "ticket": {
                    "type": "httpApiKey",
                    "name": "ticket",
                    "in": "query",
                    "description": "`/ws?ticket=` from POST /api/ws/ticket: single use, 30 s",
                },
            },
        },
    }


def _is_event(kind: str) -> bool:
    return issubclass(SERVER_MESSAGES[kind], Event)
