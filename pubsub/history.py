"""Reading a channel's history: its position (epoch, top offset) and what came after an offset.

Written by the Lua script in `bus.py`; stream ids are `<offset>-0`, so a range query by offset is
a range query by id.

Each read comes in two halves as well as whole: `queue_*` puts its commands on a pipeline the
caller runs (with other reads of its own, in one round trip) and `*_from` makes sense of their
replies, so one subscriber's position, what it missed and its video's state cost one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from pubsub import keys
from pubsub.bus import POSITION_TTL, new_epoch

POSITION_COMMANDS = 4  # replies `queue_position` adds to a pipeline
Entries = list[tuple[bytes, dict[bytes, bytes]]]


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


def queue_position(pipe: Any, channel: str) -> None:
    """Queue the commands that read the channel's position (creating its epoch if it has none).

    Each is atomic on its own, which is enough: whoever sets the epoch first wins, and the
    publish script only ever raises `top`.
    """
    pos_key = keys.history_position(channel)
    pipe.hsetnx(pos_key, "epoch", new_epoch())
    pipe.hsetnx(pos_key, "top", 0)
    pipe.expire(pos_key, POSITION_TTL)
    pipe.hmget(pos_key, "epoch", "top")


def position_from(replies: Sequence[Any]) -> Position:
    """The position from the `POSITION_COMMANDS` replies of `queue_position`."""
    epoch, top = replies[POSITION_COMMANDS - 1]
    return Position(epoch.decode() if isinstance(epoch, bytes) else str(epoch), int(top))


def queue_after(pipe: Any, channel: str, offset: int, limit: int) -> None:
    """Queue a read of the events after `offset` (at most `limit` + 1 of them): one reply."""
    pipe.xrange(keys.history_stream(channel), min=f"{offset + 1}-0", max="+", count=limit + 1)


def frames_of(entries: Entries, top: int) -> list[tuple[int, bytes]]:
    """(offset, frame) of stream entries, up to `top` (anything later is newer than the position
    read beside it, and reaches the channel's subscribers as it is published)."""
    frames = []
    for entry_id, data in entries:
        offset = int(entry_id.split(b"-", 1)[0])
        if offset > top:
            break
        frames.append((offset, data[b"f"]))
    return frames


def recovery_from(
    current: Position,
    epoch: str,
    offset: int,
    frames: Sequence[tuple[int, bytes]],
    limit: int,
) -> Recovery:
    """What a client at `offset` of `epoch` missed, from the channel's position and the frames read
    after some offset at or before `offset` (in order, up to the position): recovered only when
    every one of them is there."""
    if current.epoch != epoch or offset > current.offset:
        return Recovery(current, False)
    if offset == current.offset:
        return Recovery(current, True)
    missed = current.offset - offset
    if missed > limit:
        return Recovery(current, False)
    mine = [frame for frame in frames if frame[0] > offset]
    if len(mine) != missed or mine[0][0] != offset + 1:
        return Recovery(current, False)
    return Recovery(current, True, mine)


async def position(client: aioredis.Redis, channel: str) -> Position:
    """The channel's current position, creating its epoch if it has none yet."""
    async with client.pipeline(transaction=False) as pipe:
        queue_position(pipe, channel)
        return position_from(await pipe.execute())


async def since(
    client: aioredis.Redis, channel: str, epoch: str, offset: int, limit: int
) -> Recovery:
    """Frames after `offset` of `epoch`, if all of them are still kept (at most `limit`): one
    round trip."""
    async with client.pipeline(transaction=False) as pipe:
        queue_position(pipe, channel)
        queue_after(pipe, channel, offset, limit)
        replies = await pipe.execute()
    current = position_from(replies)
    return recovery_from(current, epoch, offset, frames_of(replies[-1], current.offset), limit)
