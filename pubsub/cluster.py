"""Whether a client talks to a Redis Cluster (then scripts and transactions keep to one hash slot
and pub/sub is sharded: SPUBLISH / SSUBSCRIBE)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError


def is_cluster(client: object) -> bool:
    """True for redis-py's cluster client (the web app's client is typed as plain Redis)."""
    return isinstance(client, RedisCluster)


class ClusterNotOk(Exception):
    """CLUSTER INFO does not say `cluster_state:ok` (slots uncovered, a master unreachable)."""


async def ping(client: Any) -> None:
    """Redis answers; on a cluster, the node asked also says the whole cluster is ok."""
    if not is_cluster(client):
        await client.ping()
        return
    info = await client.cluster_info()
    state = info.get("cluster_state") if isinstance(info, dict) else None
    if isinstance(state, bytes):
        state = state.decode()
    if state != "ok":
        raise ClusterNotOk(f"cluster_state:{state}")


async def detect(url: str) -> bool:
    """Whether the Redis at `url` is a cluster node (`INFO cluster` says cluster_enabled:1).

    Not reachable now: False (plain Redis, which copes with an outage as it always has).
    """
    probe = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        info = await probe.info("cluster")
        return str(info.get("cluster_enabled", "0")) == "1"
    except (RedisError, OSError):
        return False
    finally:
        await probe.aclose()


def split_url(url: str) -> tuple[str, bool]:
    """`redis+cluster://…` / `rediss+cluster://…`: the plain URL and True (a cluster, said so);
    any other URL unchanged and False (a cluster only if `detect` finds one)."""
    for scheme in ("redis+cluster://", "rediss+cluster://"):
        if url.startswith(scheme):
            return url.replace("+cluster", "", 1), True
    return url, False
