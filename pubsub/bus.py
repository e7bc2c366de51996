"""Publishing events: one JSON encoding per event, sent to the channel's Redis pub/sub channel.

Every web process subscribed to the channel receives it once and fans it out to its sockets
(realtime/). Publishers call this only after their transaction has committed.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pubsub import keys

logger = logging.getLogger(__name__)


async def publish(client: aioredis.Redis, channel: str, event: dict[str, Any]) -> int:
    """Send `event` to everyone watching `channel`; returns how many processes received it.

    A Redis outage must not undo the change the event describes (it is already committed), so
    failures are logged and reported as 0 receivers rather than raised.
    """
    try:
        receivers: int = await client.publish(keys.redis_channel(channel), orjson.dumps(event))
        return receivers
    except (RedisConnectionError, RedisTimeoutError) as exc:
        logger.warning("event to %s not published: %r", channel, exc)
        return 0
