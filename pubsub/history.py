"""Reading a channel's history: its position (epoch, top offset) and what came after an offset.

Written by the Lua script in `bus.py`; stream ids are `<offset>-0`, so a range query by offset is
a range query by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from pubsub import keys
from pubsub.bus import POSITION_TTL, new_epoch


@dataclass(frozen=True)
class Position:
    """Where a channel's history stands: a client that holds this has seen everything up to it."""

    epoch: str
    offset: int


@dataclass(frozen=True)
class Recovery:
    """What a client that last saw `since` missed: the frames in order, or recovered=False."""

    position: Position
    recovered: bool
    frames: list[tuple[int, bytes]] = field(default_factory=list)


async def position(client: aioredis.Redis, channel: str) -> Position:
    """The channel's current position, creating its epoch if it has none yet."""
    pos_key = keys.history_position(channel)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hsetnx(pos_key, "epoch", new_epoch())
        pipe.hsetnx(pos_key, "top", 0)
        pipe.expire(pos_key, POSITION_TTL)
        pipe.hmget(pos_key, "epoch", "top")
        *_, (epoch, top) = await pipe.execute()
    return Position(epoch.decode(), int(top))


async def since(
    client: aioredis.Redis, channel: str, epoch: str, offset: int, limit: int
) -> Recovery:
    """Frames after `offset` of `epoch`, if all of them are still kept (at most `limit`)."""
    current = await position(client, channel)
    if current.epoch != epoch or offset > current.offset:
        return Recovery(current, False)
    if offset == current.offset:
        return Recovery(current, True)
    missed = current.offset - offset
    if missed > limit:
        return Recovery(current, False)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(
        keys.history_stream(channel), min=f"{offset + 1}-0", max=f"{current.offset}-0"
    )  # type: ignore[assignment]
    frames = [(int(entry_id.split(b"-", 1)[0]), data[b"f"]) for entry_id, data in entries]
    if len(frames) != missed or (frames and frames[0][0] != offset + 1):
        return Recovery(current, False)
    return Recovery(current, True, frames)
