"""Publishing events: one JSON encoding per event, sent to the channel's Redis pub/sub channel.

Every web process subscribed to the channel receives it once and fans it out to its sockets
(realtime/). Publishers call this only after their transaction has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pubsub import keys

logger = logging.getLogger(__name__)


Prepare = Callable[[Pipeline], Awaitable[object]]


async def publish(
    client: aioredis.Redis,
    channel: str,
    event: dict[str, Any],
    *,
    first: Prepare | None = None,
) -> int:
    """Send `event` to everyone watching `channel`; returns how many processes received it.

    `first` may queue commands (a cache update the event must not overtake) that go out in the
    same round trip, ahead of the publish. A Redis outage must not undo the change the event
    describes (it is already committed), so failures are logged and reported as 0 receivers.
    """
    try:
        async with client.pipeline(transaction=False) as pipe:
            if first is not None:
                await first(pipe)
            pipe.publish(keys.redis_channel(channel), orjson.dumps(event))
            results = await pipe.execute()
        return int(results[-1])
    except (RedisConnectionError, RedisTimeoutError) as exc:
        logger.warning("event to %s not published: %r", channel, exc)
        return 0
