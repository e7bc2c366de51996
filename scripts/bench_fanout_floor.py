"""The floor for scripts/bench_fanout: the least a Redis-backed WebSocket broadcaster can do.

aiohttp + redis-py, one Redis subscription per channel per process, and each message written as
the same text to every socket with `send_str`. No auth, no history, no queues, no limits.
Usage: bench_fanout_floor.py PORT REDIS_URL
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import WSMsgType, web

SOCKETS = web.AppKey("sockets", dict)
PUBSUB = web.AppKey("pubsub", object)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    sockets: dict[str, set[web.WebSocketResponse]] = request.app[SOCKETS]
    joined: list[str] = []
    try:
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            channel = json.loads(message.data).get("channel", "")
            if channel not in sockets:
                sockets[channel] = set()
                await request.app[PUBSUB].subscribe("floor:" + channel)  # type: ignore[attr-defined]
            sockets[channel].add(ws)
            joined.append(channel)
            reply = {"type": "subscribed", "channel": channel}
            await ws.send_str(json.dumps(reply, separators=(",", ":")))
    finally:
        for channel in joined:
            sockets[channel].discard(ws)
    return ws


async def pubsub_ctx(app: web.Application) -> AsyncIterator[None]:
    client = aioredis.Redis.from_url(app["redis_url"])
    pubsub = client.pubsub()
    await pubsub.subscribe("floor:__start__")
    app[PUBSUB] = pubsub
    app[SOCKETS] = {}

    async def reader() -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            text = message["data"].decode()
            for ws in list(app[SOCKETS].get(message["channel"].decode()[6:], ())):
                await ws.send_str(text)

    task = asyncio.create_task(reader())
    yield
    task.cancel()
    await client.aclose()


def main() -> None:
    port, redis_url = int(sys.argv[1]), sys.argv[2]
    app = web.Application()
    app["redis_url"] = redis_url
    app.cleanup_ctx.append(pubsub_ctx)
    app.router.add_get("/ws", websocket)
    import uvloop

    web.run_app(
        app, host="127.0.0.1", port=port, print=None, loop=uvloop.new_event_loop(), reuse_port=True
    )


if __name__ == "__main__":
    main()
