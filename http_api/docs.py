"""The API as a person reads it: `/api/docs` (Swagger UI over /api/openapi.json) and
`/api/asyncapi.json`, the WebSocket protocol generated from the models in `realtime.schemas`.

The page is a shell; its code is static (`http_api/web/docs/`, and Swagger UI vendored under
`http_api/web/vendor/swagger-ui/`, both served at `/app/`) so it runs under a CSP without
inline scripts.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

import reelwire
from http_api.openapi import ASYNCAPI_URL, DOCS_URL, responds_with
from http_api.routing import Call, RouteTable, json_response
from http_api.urls import public_base_url
from realtime import schemas as s

routes = RouteTable()

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Reelwire API docs</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/app/vendor/swagger-ui/swagger-ui.css">
  <link rel="stylesheet" href="/app/docs/docs.css">
</head>
<body>
  <header class="docs-bar">
    <span class="docs-title">Reelwire API</span>
    <nav aria-label="Documents">
      <a href="#rest">REST</a>
      <a href="#websocket">WebSocket</a>
      <a href="/">Web app</a>
      <a href="/api/openapi.json">OpenAPI JSON</a>
      <a href="/api/asyncapi.json">AsyncAPI JSON</a>
    </nav>
  </header>
  <main>
    <section id="rest" aria-labelledby="rest-title">
      <h2 id="rest-title" class="docs-section">REST
        <small>OpenAPI 3.1, generated from the routes' own schemas</small></h2>
      <div id="swagger-ui"><p class="docs-note">Loading the OpenAPI document...</p></div>
    </section>
    <section id="websocket" aria-labelledby="ws-title">
      <h2 id="ws-title" class="docs-section">WebSocket <code>/ws</code>
        <small>AsyncAPI 3.0, generated from the models the server validates messages with</small>
      </h2>
      <div id="asyncapi"><p class="docs-note">Loading the AsyncAPI document...</p></div>
    </section>
  </main>
  <script src="/app/vendor/swagger-ui/swagger-ui-bundle.js"></script>
  <script src="/app/docs/docs.js"></script>
</body>
</html>
"""
_SCHEMA_REF = "#/components/schemas/{model}"
_CONNECTION = "connection"  # the socket itself: commands, their replies, control messages
_CHANNEL_KEYS = {"video:{video_id}": "video", "user:{user_id}": "user", "feed:clips": "clipFeed"}
_CHANNEL_TEXT = {
    "video": "A video's counters, comments and processing status. Anyone who may see the video "
    "(a private one answers NOT_FOUND to others).",
    "user": "One user's own events (processing progress, followers, notifications). That user "
    "only: FORBIDDEN to others, UNAUTHORIZED to anonymous sockets.",
    "clipFeed": "Clips of everyone the user follows; a follow or unfollow while connected "
    "adjusts it. Authenticated sockets only; it has no single offset, so `since` always answers "
    "`recovered: false`.",
}


@routes.get(DOCS_URL, tag="service", rate=None)
@responds_with("text/html")
async def docs_page(call: Call[Any]) -> web.Response:
    """This API's documentation, for reading in a browser."""
    return web.Response(text=_PAGE, content_type="text/html")


@routes.get(ASYNCAPI_URL, tag="realtime")
async def asyncapi(call: Call[Any]) -> web.Response:
    """The WebSocket protocol (`/ws`) as an AsyncAPI 3.0 document."""
    base = public_base_url(call.request)
    scheme, _, host = base.partition("://")
    return json_response(asyncapi_document(host, secure=scheme == "https"))


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
    models = [*s.CLIENT_MESSAGES.values(), *s.SERVER_MESSAGES.values()]
    refs, top = models_json_schema([(m, "validation") for m in models], ref_template=_SCHEMA_REF)
    messages: dict[str, Any] = {}
    for model in models:
        kind = s.type_of(model)
        messages[kind] = {
            "name": kind,
            "title": kind,
            "summary": (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "),
            "payload": refs[(model, "validation")],
        }

    def message_refs(kinds: Any) -> dict[str, Any]:
        return {kind: {"$ref": f"#/components/messages/{kind}"} for kind in kinds}

    control = [k for k in s.SERVER_MESSAGES if not _is_event(k)]
    channels: dict[str, Any] = {
        _CONNECTION: {
            "address": None,
            "title": "The socket",
            "description": "Commands a client sends, their replies (which echo the command's "
            "`id`), and the server's own messages. Not a channel to subscribe to.",
            "messages": message_refs([*s.CLIENT_MESSAGES, *control]),
        }
    }
    for address, kinds in s.CHANNELS.items():
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
    for kind in s.CLIENT_MESSAGES:
        operations[kind] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_CONNECTION}"},
            "summary": messages[kind]["summary"],
            "messages": on_socket(kind),
            "reply": {
                "channel": {"$ref": f"#/channels/{_CONNECTION}"},
                "messages": on_socket(*s.REPLIES[kind], "error"),
            },
        }
    operations["receiveControl"] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{_CONNECTION}"},
        "summary": "The greeting, token expiry warnings and unsolicited `subscribed`",
        "messages": on_socket("welcome", "token_expiring", "subscribed"),
    }
    for address, kinds in s.CHANNELS.items():
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
                "codes: 64 KiB per message (1009), 100 subscriptions, 20 messages/s (then "
                "RATE_LIMITED, then 1008), a slow reader is closed with 4008, an expired token "
                "with 4001, a restarting server closes with 1012: reconnect after 1-5 s and "
                "resubscribe with `since`."
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
    return issubclass(s.SERVER_MESSAGES[kind], s.Event)
