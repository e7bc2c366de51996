"""python-socketio with AsyncRedisManager, the usual Python choice, for scripts/bench_fanout.

Clients join a room named after the channel; events are emitted to the room from another
process through Redis (AsyncRedisManager(write_only=True)), as an app's workers would.
Usage: bench_fanout_socketio.py PORT REDIS_URL
"""

from __future__ import annotations

import sys

import socketio
from aiohttp import web


def main() -> None:
    port, redis_url = int(sys.argv[1]), sys.argv[2]
    manager = socketio.AsyncRedisManager(redis_url)
    sio = socketio.AsyncServer(
        async_mode="aiohttp", client_manager=manager, cors_allowed_origins="*"
    )

    @sio.on("join")
    async def join(sid: str, room: str) -> None:
        await sio.enter_room(sid, room)

    app = web.Application()
    sio.attach(app)
    import uvloop

    web.run_app(
        app, host="127.0.0.1", port=port, print=None, loop=uvloop.new_event_loop(), reuse_port=True
    )


if __name__ == "__main__":
    main()
