"""`GET /ws`: the upgrade (origin and auth checks), the greeting, and the one reading loop."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import WSMsgType, web

from realtime import commands, messages
from realtime.asyncapi import setup_asyncapi
from realtime.close_codes import CloseCode
from realtime.command_table import CommandTable, Session
from realtime.connection import Connection, Limits
from realtime.hub import Hub, HubSettings
from realtime.wire import pong_frame
from reelwire.appkeys import SERVICES, SETTINGS
from reelwire.domain import accounts, tokens, videos
from reelwire.domain.context import Principal, Services
from reelwire.domain.errors import DomainError
from reelwire.settings import Settings

logger = logging.getLogger(__name__)

HUB = web.AppKey("hub", Hub)
COMMAND_TABLE = web.AppKey("ws_commands", CommandTable)
LIMITS = web.AppKey("ws_limits", Limits)


class Holders:
    """Open sockets per client address, and in all (counted as they change: summing the
    addresses on every upgrade would cost more the more clients there are)."""

    __slots__ = ("by_address", "total")

    def __init__(self) -> None:
        self.by_address: collections.Counter[str] = collections.Counter()
        self.total = 0

    def add(self, address: str) -> None:
        """A socket of `address` opened."""
        self.by_address[address] += 1
        self.total += 1

    def remove(self, address: str) -> None:
        """A socket of `address` closed."""
        self.total -= 1
        left = self.by_address[address] - 1
        if left > 0:
            self.by_address[address] = left
        else:
            del self.by_address[address]


HOLDERS = web.AppKey("ws_holders", Holders)


def setup_realtime(app: web.Application) -> None:
    """Add `/ws` with its command table and AsyncAPI document, the hub's cleanup context (after
    the services one) and the shutdown drain."""
    table = CommandTable()
    commands.register_commands(table)
    app[COMMAND_TABLE] = table
    app.router.add_get("/ws", websocket)
    setup_asyncapi(app)
    app[HOLDERS] = Holders()
    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(_close_sockets)


def node_name() -> str:
    """This process, as `welcome.node` and in presence: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    """The process's hub: its Redis subscription and housekeeping, stopped on cleanup."""
    settings: Settings = app[SETTINGS]
    ctx: Services = app[SERVICES]

    async def load_counts(video_id: uuid.UUID) -> dict[str, object] | None:
        return await videos.live_counts(ctx, video_id)

    hub = Hub(
        ctx.redis,
        HubSettings(
            coalesce_ms=settings.coalesce_ms,
            heartbeat=settings.ws_heartbeat_seconds,
            auth_timeout=settings.ws_auth_timeout,
            history_size=settings.history_size,
            presence_ttl=settings.presence_ttl,
            write_delay_ms=settings.ws_write_delay_ms,
        ),
        node=node_name(),
        load_counts=load_counts,
        videos=_VideoWatch(ctx),
    )
    app[HUB] = hub
    app[LIMITS] = Limits(
        queue_bytes=settings.ws_queue_bytes,
        queue_messages=settings.ws_queue_messages,
        max_subscriptions=settings.ws_max_subscriptions,
        messages_per_second=settings.ws_messages_per_second,
    )
    await hub.start()
    yield
    await hub.stop()
    await ctx.outbox.aclose()


class _VideoWatch:
    """The domain's answers about a video channel's video, for the hub."""

    def __init__(self, ctx: Services) -> None:
        self._ctx = ctx

    def trusted(self) -> bool:
        return self._ctx.outbox.usable

    async def read(
        self, video_id: uuid.UUID, also: Callable[[Any], None] | None = None
    ) -> tuple[videos.Watchable, list[Any]]:
        return await videos.watchable(self._ctx, video_id, also)


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].shutdown()


async def websocket(request: web.Request) -> web.StreamResponse:
    """The WebSocket endpoint of PROTOCOL.md."""
    app = request.app
    hub, ctx, settings = app[HUB], app[SERVICES], app[SETTINGS]
    if hub.closing:
        raise web.HTTPServiceUnavailable(text="server is restarting", headers={"Retry-After": "2"})
    if not _origin_allowed(request, settings.cors_origins):
        raise web.HTTPForbidden(text="origin not allowed")
    holders, address = app[HOLDERS], request.remote or "unknown"
    _check_capacity(holders, address, settings)
    try:
        principal = await _upgrade_principal(request, ctx)
    except DomainError as exc:
        raise web.HTTPUnauthorized(text=exc.message) from None

    ws = web.WebSocketResponse(
        compress=False,  # broadcast frames are built once, uncompressed
        max_msg_size=settings.ws_max_message_bytes,
        autoping=False,  # pongs are our heartbeat's evidence
        heartbeat=None,
        timeout=5.0,
    )
    await ws.prepare(request)
    holders.add(address)
    try:
        return await _serve_socket(request, ws, principal)
    finally:
        holders.remove(address)


def _check_capacity(holders: Holders, address: str, settings: Settings) -> None:
    """Refuse the upgrade, with a status that says why, when this process holds as many
    sockets as it can (503) or as many as one address may hold (429)."""
    if holders.total >= settings.max_sockets:
        raise web.HTTPServiceUnavailable(
            text="this server holds as many sockets as it can; retry shortly",
            headers={"Retry-After": "5"},
        )
    per_address = settings.ws_max_sockets_per_address
    if per_address and holders.by_address[address] >= per_address:
        raise web.HTTPTooManyRequests(
            text=f"too many open sockets from one address (at most {per_address})",
            headers={"Retry-After": "30"},
        )


async def _serve_socket(
    request: web.Request, ws: web.WebSocketResponse, principal: Principal | None
) -> web.WebSocketResponse:
    app = request.app
    hub, ctx, settings = app[HUB], app[SERVICES], app[SETTINGS]
    _cap_kernel_buffer(request, settings.ws_send_buffer_bytes)
    conn = Connection(ws, request, uuid.uuid4().hex, app[LIMITS])
    if principal is not None:
        commands.authenticate(hub, conn, principal)
    hub.attach(conn)
    session = Session(ctx, hub, conn)
    table = app[COMMAND_TABLE]
    conn.send(messages.welcome(conn.session, hub.node, settings.ws_heartbeat_seconds))
    try:
        async for message in ws:
            conn.missed_pongs = 0
            if message.type is WSMsgType.TEXT:
                admitted = conn.admit()
                if admitted:
                    await table.dispatch(session, message.data)
                elif admitted is False:
                    conn.send(messages.error(None, "RATE_LIMITED", "Too many messages"))
                else:
                    conn.close(CloseCode.RATE_LIMITED, "message rate limit")
                    break
            elif message.type is WSMsgType.PING:
                conn.send(pong_frame(message.data))
            elif message.type is WSMsgType.BINARY:
                conn.send(messages.error(None, "VALIDATION_ERROR", "Send text frames (JSON)"))
            elif message.type is WSMsgType.ERROR:
                break
    finally:
        hub.detach(conn)
        await conn.finish()
    return ws


async def _upgrade_principal(request: web.Request, ctx: Services) -> Principal | None:
    token = tokens.bearer_token(request.headers.get("Authorization", ""))
    if token is not None:
        return await accounts.authenticate(ctx, token)
    ticket = request.query.get("ticket")
    if ticket:
        return await accounts.redeem_socket_ticket(ctx, ticket)
    return None


def _cap_kernel_buffer(request: web.Request, size: int) -> None:
    """A fixed send buffer instead of the kernel's autotuning (up to megabytes per socket):
    less memory held for slow readers, and a stalled one is noticed after kilobytes."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if size and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin; it must be ours or listed in CORS_ORIGINS. Others send none."""
    origin = request.headers.get("Origin")
    if origin is None or "*" in allowed:
        return True
    origin = origin.rstrip("/")
    if origin in allowed:
        return True
    own = f"{request.scheme}://{request.host}"
    return origin == own
