"""One Redis pub/sub connection per process; a channel is subscribed while anyone local needs it.

`acquire` counts a local interest in a channel and returns once Redis has confirmed the
subscription (so nothing published afterwards can be missed; `hold` does the same without waiting
for a channel confirmed already); `release` drops it and unsubscribes when the count reaches zero.
Messages go to one callback with the protocol channel name and the raw payload; nothing the
callback raises stops the reader. When the connection drops, the subscriber reconnects with
backoff, subscribes again to everything still wanted, and calls `on_reconnect` so the caller can
fetch what it missed.

`synced` is a barrier: it returns once every message Redis published before it was called has
been handed to the callback (a PING on the subscription's connection, whose answer comes after
them). What a process learns from its channels (a video's metadata changed) is then at least as
fresh as Redis was when the caller asked. One PING in flight serves everyone who asked before it
was sent; those who ask meanwhile share the next.

On a Redis Cluster (`ChannelSubscriber` given redis-py's cluster client) pub/sub is sharded: a
channel is a shard channel hashed like its history keys, and the subscriber holds one connection
per master that owns a wanted channel's slot and SSUBSCRIBEs each channel there. When any of them
fails (connection lost, a failover, `MOVED`, the server dropping a channel whose slot moved), it
drops them all, refreshes the cluster's slot map, connects again to the masters that own the
wanted channels now, and calls `on_reconnect`, as after a Redis restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pubsub import keys
from pubsub.cluster import is_cluster

logger = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes], None]
OnReconnect = Callable[[], None]

_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
_PONGS = (b"PONG", "PONG")  # PING's answer outside subscribed mode


class ChannelSubscriber:
    """Reference-counted subscriptions over one connection, read by one task."""

    sharded = False  # SUBSCRIBE/PUBLISH channel names; the cluster subclass uses shard ones

    def __new__(cls, client: Any, on_message: OnMessage, on_reconnect: OnReconnect) -> Any:
        # A cluster client gets the sharded subscriber, without its callers having to choose.
        if cls is ChannelSubscriber and is_cluster(client):
            return super().__new__(ShardedChannelSubscriber)
        return super().__new__(cls)

    def __init__(
        self, client: aioredis.Redis, on_message: OnMessage, on_reconnect: OnReconnect
    ) -> None:
        self._client = client
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._refs: dict[str, int] = {}
        self._confirmed: dict[bytes, asyncio.Future[None]] = {}
        self._connection: Any = None
        self._last_seen = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # PINGs sent on the connection, oldest first: the barrier waiting for each (or None).
        self._pongs: deque[asyncio.Future[bool] | None] = deque()
        self._sync_sent: asyncio.Future[bool] | None = None  # the barrier PING in flight
        self._sync_next: asyncio.Future[bool] | None = None  # the one sent when it returns

    async def start(self) -> None:
        """Connect and start reading."""
        self._task = asyncio.create_task(self._run(), name="redis-subscriber")

    async def stop(self) -> None:
        """Stop reading (cancelled and awaited) and close the connection."""
        self._stopping = True
        if self._task is not None:
            # redis-py's connect can swallow a cancellation; closing the connection as well
            # makes the reader fail, and the loop then sees _stopping.
            self._task.cancel()
            await self._close()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    def hold(self, channel: str) -> bool:
        """Count one more local interest in a channel whose subscription Redis has confirmed and
        that is live now (True), without waiting; False (nothing counted) otherwise."""
        count = self._refs.get(channel, 0)
        if not count or not self._connected.is_set():
            return False
        waiter = self._confirmed.get(keys.redis_channel(channel, self.sharded).encode())
        if waiter is None or not waiter.done() or waiter.cancelled():
            return False
        self._refs[channel] = count + 1
        return True

    async def synced(self, timeout: float = 2.0) -> bool:
        """True once every message published on Redis before this call has been handed to the
        callback; False when that cannot be told now (not connected, the connection dropped
        meanwhile, no answer within `timeout`, or a sharded subscriber, which does not do this)."""
        if self.sharded or self._connection is None or not self._connected.is_set():
            return False
        waiter = self._sync_next
        if waiter is None:
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            # One deadline for everyone waiting on this barrier: unanswered by then, it is False.
            loop.call_later(timeout, _settle, waiter, False)
            if self._sync_sent is None:
                self._send_sync(waiter)
            else:
                self._sync_next = waiter
        return await asyncio.shield(waiter)  # a caller that gives up leaves it to the others

    def _send_sync(self, waiter: asyncio.Future[bool]) -> None:
        self._sync_sent = waiter
        task = asyncio.ensure_future(self._ping(waiter))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _ping(self, waiter: asyncio.Future[bool] | None = None) -> None:
        # Answers come in the order the PINGs were written, and each was written after it was
        # counted here, so the n-th answer was written after the n-th waiter's callers asked.
        if self._connection is None:
            if waiter is not None:
                _settle(waiter, False)
            return
        self._pongs.append(waiter)
        with contextlib.suppress(*_DOWN):
            await self._send("PING")

    def _ponged(self) -> None:
        if not self._pongs:
            return
        waiter = self._pongs.popleft()
        if waiter is None:
            return
        _settle(waiter, True)
        if waiter is self._sync_sent:
            self._sync_sent = None
            waiting, self._sync_next = self._sync_next, None
            if waiting is not None:
                self._send_sync(waiting)

    def _unsynced(self) -> None:
        """The connection is gone: no barrier waiting on it will be answered."""
        for waiter in (*self._pongs, self._sync_sent, self._sync_next):
            if waiter is not None:
                _settle(waiter, False)
        self._pongs.clear()
        self._sync_sent = self._sync_next = None

    async def acquire(self, channel: str, timeout: float = 10.0) -> None:
        """Count one more local interest; return once the Redis subscription is confirmed."""
        if self.hold(channel):
            return
        count = self._refs.get(channel, 0)
        self._refs[channel] = count + 1
        name = keys.redis_channel(channel, self.sharded).encode()
        waiter = self._confirmed.get(name)
        if count == 0 or waiter is not None:
            if waiter is None:
                waiter = asyncio.get_running_loop().create_future()
                self._confirmed[name] = waiter
                if self._connected.is_set():
                    await self._subscribe_now(name)
                # else: subscribed with everything wanted when the connection comes (back)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except BaseException:
                self.release(channel)
                raise

    def release(self, channel: str) -> None:
        """Drop one local interest; unsubscribe when it was the last."""
        count = self._refs.get(channel, 0)
        if count > 1:
            self._refs[channel] = count - 1
            return
        self._refs.pop(channel, None)
        name = keys.redis_channel(channel, self.sharded).encode()
        waiter = self._confirmed.pop(name, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()
        if self._connected.is_set():
            task = asyncio.create_task(self._unsubscribe(name))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _subscribe_now(self, name: bytes) -> None:
        with contextlib.suppress(*_DOWN):
            await self._send("SUBSCRIBE", name)

    async def _unsubscribe(self, name: bytes) -> None:
        if keys.channel_of(name) in self._refs:
            return  # wanted again meanwhile
        if self._connected.is_set():
            with contextlib.suppress(*_DOWN):
                await self._send("UNSUBSCRIBE", name)

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while not self._stopping:
            try:
                await self._connect()
                if self._stopping:  # stop() came while connecting
                    break
                if not first:
                    logger.info("Redis pub/sub back; %d channel(s) resubscribed", len(self._refs))
                    try:
                        self._on_reconnect()
                    except Exception:
                        logger.exception("recovering after a Redis reconnect failed")
                first = False
                delay = 0.1
                async with _watchdog(self):
                    await self._read()
            except Exception as exc:
                if self._stopping:
                    break
                if not isinstance(exc, _DOWN):
                    logger.exception("Redis pub/sub reader failed; reconnecting")
                elif self._connected.is_set():
                    logger.warning("Redis pub/sub connection lost: %r", exc)
                self._connected.clear()
                await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        await self._close()

    async def _connect(self) -> None:
        # A connection of our own, used by this task only: redis-py's PubSub would resubscribe
        # behind our back on reconnect, and its health checks read replies our reader expects.
        pool = self._client.connection_pool
        self._connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        await self._connection.connect()
        wanted = [keys.redis_channel(c).encode() for c in self._refs]
        for name in wanted:
            if name not in self._confirmed or self._confirmed[name].done():
                self._confirmed[name] = asyncio.get_running_loop().create_future()
        if wanted:
            await self._send("SUBSCRIBE", *wanted)
        else:
            self._pongs.append(None)
            await self._send("PING")
        self._connected.set()

    async def _send(self, *args: bytes | str) -> None:
        await self._connection.send_command(*args, check_health=False)

    async def _read(self) -> None:
        connection = self._connection
        loop = asyncio.get_running_loop()
        while True:
            response = await connection.read_response(
                timeout=math.inf, disconnect_on_error=False, push_request=True
            )
            self._last_seen = loop.time()
            kind = response[0] if isinstance(response, list) else None
            if kind == b"message":
                self._deliver(response[1], response[2])
            elif kind == b"subscribe":
                waiter = self._confirmed.get(response[1])
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif kind == b"pong" or response in _PONGS:
                self._ponged()

    def _deliver(self, name: bytes, payload: bytes) -> None:
        """Hand one message to the callback; whatever it raises, the reader reads on."""
        try:
            self._on_message(keys.channel_of(name), payload)
        except Exception:
            logger.exception("delivering a message of %r failed; reading on", name)

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        self._unsynced()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            with contextlib.suppress(Exception):
                await self._client.connection_pool.release(connection)


def _settle(waiter: asyncio.Future[bool], answer: bool) -> None:
    if not waiter.done():
        waiter.set_result(answer)


def _cancel_requested() -> bool:
    """Whether the running task was cancelled, even if a library swallowed the CancelledError
    (redis-py can, when it races its own timeout): a loop checking it still ends."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@contextlib.asynccontextmanager
async def _watchdog(subscriber: ChannelSubscriber) -> AsyncIterator[None]:
    """PING the idle connection every 10 s; drop it when nothing came back for 25 s.

    A Redis host that vanishes without a reset would otherwise leave the reader waiting forever.
    """
    loop = asyncio.get_running_loop()
    subscriber._last_seen = loop.time()

    async def ping() -> None:
        while not _cancel_requested():
            await asyncio.sleep(10)
            if loop.time() - subscriber._last_seen > 25:
                logger.warning("Redis pub/sub silent for 25 s; reconnecting")
                await subscriber._close()
                return
            await subscriber._ping()

    task = asyncio.create_task(ping(), name="redis-subscriber-watchdog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Shard:
    """One master's SSUBSCRIBE connection and the channels subscribed on it."""

    def __init__(self, name: str, connection: Any) -> None:
        self.name = name
        self.connection = connection
        self.channels: set[bytes] = set()
        self.reader: asyncio.Task[None] | None = None
        self.last_seen = 0.0


class ShardedChannelSubscriber(ChannelSubscriber):
    """Sharded pub/sub on a Redis Cluster: a connection per master with wanted channels."""

    sharded = True

    def __init__(
        self, client: aioredis.Redis, on_message: OnMessage, on_reconnect: OnReconnect
    ) -> None:
        super().__init__(client, on_message, on_reconnect)
        self._cluster: Any = client
        self._shards: dict[str, _Shard] = {}
        self._broken = asyncio.Event()
        self._lock = asyncio.Lock()  # opening a shard's connection: one at a time

    async def stop(self) -> None:
        """Stop reading and close every shard's connection."""
        self._stopping = True
        self._broken.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_all()

    async def _subscribe_now(self, name: bytes) -> None:
        await self._subscribe(name)

    async def _unsubscribe(self, name: bytes) -> None:
        if keys.channel_of(name) in self._refs:
            return  # wanted again meanwhile
        for shard in list(self._shards.values()):
            if name in shard.channels:
                shard.channels.discard(name)
                with contextlib.suppress(*_DOWN):
                    await shard.connection.send_command("SUNSUBSCRIBE", name, check_health=False)

    async def _subscribe(self, name: bytes) -> None:
        """SSUBSCRIBE on the master owning the channel's slot (connecting to it if need be);
        on any failure the whole set of shards is rebuilt, which subscribes it again."""
        try:
            node = self._cluster.get_node_from_key(name)
            async with self._lock:
                shard = self._shards.get(node.name)
                if shard is None:
                    shard = await self._open_shard(node)
            shard.channels.add(name)
            await shard.connection.send_command("SSUBSCRIBE", name, check_health=False)
        except Exception as exc:
            if not self._stopping:
                logger.warning("Redis shard subscription of %r failed: %r", name, exc)
                self._broken.set()

    async def _open_shard(self, node: Any) -> _Shard:
        connection = node.connection_class(**node.connection_kwargs)
        await connection.connect()
        shard = _Shard(node.name, connection)
        self._shards[node.name] = shard
        shard.reader = asyncio.create_task(self._read_shard(shard), name=f"redis-shard-{node.name}")
        return shard

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while not self._stopping:
            try:
                if not first:
                    # Where each slot lives now (after a failover or a resharding).
                    await self._cluster.nodes_manager.initialize()
                wanted = [keys.redis_channel(c, True).encode() for c in self._refs]
                by_node: dict[str, tuple[Any, list[bytes]]] = {}
                for name in wanted:
                    if name not in self._confirmed or self._confirmed[name].done():
                        self._confirmed[name] = asyncio.get_running_loop().create_future()
                    node = self._cluster.get_node_from_key(name)
                    by_node.setdefault(node.name, (node, []))[1].append(name)
                for node, names in by_node.values():
                    shard = await self._open_shard(node)
                    shard.channels.update(names)
                    # One SSUBSCRIBE per slot: the server refuses shard channels of several
                    # slots in one command (CROSSSLOT), even when one master owns them all.
                    by_slot: dict[int, list[bytes]] = {}
                    for name in names:
                        by_slot.setdefault(self._cluster.keyslot(name), []).append(name)
                    for same_slot in by_slot.values():
                        await shard.connection.send_command(
                            "SSUBSCRIBE", *same_slot, check_health=False
                        )
                if self._stopping:
                    break
                self._connected.set()
                for name in set(self._confirmed) - set(wanted):  # asked for meanwhile
                    await self._subscribe(name)
                if not first:
                    logger.info(
                        "Redis pub/sub back; %d channel(s) resubscribed on %d shard(s)",
                        len(self._refs),
                        len(by_node),
                    )
                    try:
                        self._on_reconnect()
                    except Exception:
                        logger.exception("recovering after a Redis reconnect failed")
                first = False
                delay = 0.1
                async with _shard_watchdog(self):
                    await self._broken.wait()
            except Exception as exc:
                if self._stopping:
                    break
                if not isinstance(exc, _DOWN):
                    logger.warning("Redis shard subscriptions failed: %r; reconnecting", exc)
            if self._stopping:
                break
            if self._connected.is_set():
                logger.warning("Redis pub/sub shard lost; reconnecting every shard")
            self._connected.clear()
            await self._close_all()
            self._broken.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        await self._close_all()

    async def _read_shard(self, shard: _Shard) -> None:
        loop = asyncio.get_running_loop()
        shard.last_seen = loop.time()
        try:
            while True:
                response = await shard.connection.read_response(
                    timeout=math.inf, disconnect_on_error=False, push_request=True
                )
                shard.last_seen = loop.time()
                kind = response[0] if isinstance(response, list) else None
                if kind == b"smessage":
                    self._deliver(response[1], response[2])
                elif kind == b"ssubscribe":
                    waiter = self._confirmed.get(response[1])
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                elif (
                    kind == b"sunsubscribe"
                    and keys.channel_of(response[1]) in self._refs
                    and response[1] in shard.channels
                ):
                    # Not asked for: the server dropped it (its slot moved to another master).
                    raise RedisConnectionError(f"{shard.name} dropped {response[1]!r}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._stopping:
                logger.warning("Redis pub/sub shard %s failed: %r", shard.name, exc)
                self._broken.set()

    async def _close_all(self) -> None:
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            if shard.reader is not None:
                shard.reader.cancel()
            with contextlib.suppress(Exception):
                await shard.connection.disconnect(nowait=True)
            if shard.reader is not None:
                with contextlib.suppress(BaseException):
                    await shard.reader


@contextlib.asynccontextmanager
async def _shard_watchdog(subscriber: ShardedChannelSubscriber) -> AsyncIterator[None]:
    """PING each shard every 10 s; rebuild them all when one was silent for 25 s."""
    loop = asyncio.get_running_loop()

    async def ping() -> None:
        while not _cancel_requested():
            await asyncio.sleep(10)
            for shard in list(subscriber._shards.values()):
                if loop.time() - shard.last_seen > 25:
                    logger.warning("Redis pub/sub shard %s silent for 25 s", shard.name)
                    subscriber._broken.set()
                    return
                with contextlib.suppress(*_DOWN):
                    await shard.connection.send_command("PING", check_health=False)

    task = asyncio.create_task(ping(), name="redis-shards-watchdog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
