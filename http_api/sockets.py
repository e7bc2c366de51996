"""/api/ws/ticket: how a browser authenticates its WebSocket (PROTOCOL.md)."""

from __future__ import annotations

from typing import Any

from http_api.routing import Call, RouteTable
from reelwire.domain import accounts
from reelwire.domain.schemas.auth import TicketOut

routes = RouteTable()


@routes.post(
    "/api/ws/ticket",
    tag="realtime",
    auth="required",
    response=TicketOut,
    errors=(401,),
)
async def socket_ticket(call: Call[Any]) -> dict[str, Any]:
    """A ticket valid once, for 30 s, to open `/ws?ticket=` as yourself."""
    return await accounts.issue_socket_ticket(call.services, call.user)


# The upgrade itself, for the OpenAPI document (the messages are in docs/protocol.md).
WEBSOCKET_OPERATION = {
    "get": {
        "tags": ["realtime"],
        "summary": "Open the realtime WebSocket (PROTOCOL v1, see docs/protocol.md)",
        "description": (
            "Upgrade to a WebSocket. Authenticate with `Authorization: Bearer`, with "
            "`?ticket=` from POST /api/ws/ticket, or with a first `auth` message; anonymous "
            "sockets may watch public videos. Browsers' `Origin` must be the API's own or one of "
            "CORS_ORIGINS."
        ),
        "parameters": [
            {"name": "ticket", "in": "query", "required": False, "schema": {"type": "string"}}
        ],
        "responses": {
            "101": {"description": "Switching protocols"},
            "401": {"description": "Bad token or ticket"},
            "403": {"description": "Origin not allowed"},
            "503": {"description": "The server is shutting down"},
        },
    }
}
