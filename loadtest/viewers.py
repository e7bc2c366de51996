"""WebSocket viewers: lean asyncio protocols, not full WebSocket clients.

One load process has to take in every frame that thousands of sockets receive, so a frame costs
a header parse and two byte searches (`"ts":`, `"offset":`); only the server's own replies are
parsed as JSON. Latency is receipt time minus the event's `ts` (its publish time). A viewer the
server closes (1012 on a restart, 4008 when too slow), or that a scenario drops, reconnects after
a jittered backoff and resubscribes with `since`; the totals count how often that recovered the
gap.

The same viewer speaks two other dialects, for scripts/bench_fanout: `plain` (a bare broadcaster
that takes the same subscribe message) and `socketio` (Engine.IO 4 over a WebSocket).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from loadtest.histogram import Histogram

IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the source port at connect(), per destination


@dataclass
class Totals:
    """What every viewer of one load process adds to."""

    connected: int = 0  # viewers that subscribed at least once
    failed: int = 0  # viewers whose first connection failed
    live: int = 0  # sockets subscribed right now
    messages: int = 0
    events: int = 0  # live messages carrying a publish time
    replayed: int = 0  # events replayed after a resubscribe with `since` (not in `latency`)
    video_updates: int = 0
    reconnects: int = 0
    gaps_recovered: int = 0
    gaps_lost: int = 0
    acks: dict[str, int] = field(default_factory=dict)  # WS commands answered, by id prefix
    command_errors: dict[str, int] = field(default_factory=dict)  # WS commands refused, by id
    acked_at: dict[str, float] = field(default_factory=dict)  # monotonic, the last ack, by id
    closes: dict[int, int] = field(default_factory=dict)  # closed by the server, by code
    drops: int = 0  # cut by us (a reconnect storm)
    latency: Histogram = field(default_factory=Histogram)  # events (comments, clips, statuses)
    update_latency: Histogram = field(default_factory=Histogram)  # coalesced video_update
    replay_latency: Histogram = field(default_factory=Histogram)  # publish to replayed receipt
    second: Histogram = field(default_factory=Histogram)  # events of the current second

    def reset(self) -> None:
        """Start a measurement window (connections stay counted)."""
        self.messages = self.events = self.video_updates = 0
        self.latency, self.update_latency = Histogram(), Histogram()


class Viewer(asyncio.Protocol):
    """One WebSocket watching one channel."""

    def __init__(
        self,
        totals: Totals,
        channel: str,
        dialect: str,
        path: str,
        host: str,
        token: str | None = None,
    ) -> None:
        self.totals = totals
        self.channel = channel
        self.dialect = dialect
        self.path = path
        self.host = host
        self.token = token
        self.transport: Any = None  # asyncio's or uvloop's transport
        self.buffer = bytearray()
        self.upgraded = False
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.offset: int | None = None
        self.epoch: str | None = None
        self.since: dict[str, Any] | None = None
        self.recovered: bool | None = None  # the answer to `since`, once subscribed
        self.replay_until: int | None = None  # events up to this offset are a replay
        self.close_code: int | None = None
        self.live = False
        self.last_update = b""

    # --- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        self.transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n{auth}"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.live:
            self.live = False
            self.totals.live -= 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            del buffer[: end + 4]
            if b" 101 " not in status:
                self.ready.set_exception(ConnectionError(status.decode(errors="replace")))
                self._abort()
                return
            self.upgraded = True
            self._on_open()
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1] & 0x7F
            head = 2
            if second == 126:
                if size - pos < 4:
                    break
                second = (buffer[pos + 2] << 8) | buffer[pos + 3]
                head = 4
            elif second == 127:
                if size - pos < 10:
                    break
                second = struct.unpack_from("!Q", buffer, pos + 2)[0]
                head = 10
            end = pos + head + second
            if end > size:
                break
            opcode = first & 0x0F
            payload = bytes(buffer[pos + head : end])
            pos = end
            if opcode == 0x1:
                self._on_text(payload)
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self._send(0x8, payload[:2])
                self._abort()
                break
        del buffer[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0xFE, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0xFF, size)
        self.transport.write(header + mask + masked)

    def send_json(self, message: Any) -> None:
        """A text frame."""
        self._send(0x1, orjson.dumps(message))

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def drop(self) -> None:
        """Cut the connection at once, as a phone losing its network would (no close frame)."""
        if self.transport is not None:
            self.transport.abort()

    # --- the dialects -----------------------------------------------------------------------

    def _on_open(self) -> None:
        if self.dialect == "socketio":
            return  # the server speaks first (the Engine.IO open packet)
        subscribe: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
        if self.since is not None:
            subscribe["since"] = self.since
        self.send_json(subscribe)

    def _on_text(self, payload: bytes) -> None:
        totals = self.totals
        if self.dialect == "socketio":
            if payload[:2] != b"42":
                self._on_engineio(payload)
                return
        elif payload[:9] == b'{"type":"':
            head = payload[9:13]  # no event type starts like these replies
            if head == b'ack"':
                kind = payload[20:21].decode(errors="replace")  # {"type":"ack","id":"<k>...
                totals.acks[kind] = totals.acks.get(kind, 0) + 1
                totals.acked_at[kind] = time.monotonic()
                return
            if head in (b"subs", b"welc", b"erro"):
                self._on_control(orjson.loads(payload))
                return
        totals.messages += 1
        update = payload[9:21] == b"video_update"
        offset = None
        if update:
            totals.video_updates += 1
            self.last_update = payload
        else:
            at = payload.rfind(b'"offset":')
            if at > 0:
                end = at + 9
                while payload[end] in b"0123456789":
                    end += 1
                offset = int(payload[at + 9 : end])
                if self.offset is not None and offset > self.offset + 1:
                    totals.gaps_lost += 1
                self.offset = offset if self.offset is None else max(self.offset, offset)
        replay = False
        if self.replay_until is not None:
            if offset is not None and offset <= self.replay_until:
                replay = True
            else:
                self.replay_until = None  # the replay after a resubscribe is over
        at = payload.rfind(b'"ts":')
        if at > 0:
            end = at + 5
            while payload[end] in b"0123456789":
                end += 1
            sent = int(payload[at + 5 : end])
            if sent and update:
                totals.update_latency.add(time.time() * 1000 - sent)
            elif sent and replay:
                totals.replayed += 1
                totals.replay_latency.add(time.time() * 1000 - sent)
            elif sent:
                totals.events += 1
                ms = time.time() * 1000 - sent
                totals.latency.add(ms)
                totals.second.add(ms)

    def _on_control(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribed":
            if message.get("channel") != self.channel:
                return
            if self.since is not None:
                self.recovered = bool(message.get("recovered"))
                if self.recovered:
                    self.totals.gaps_recovered += 1
                    # what follows up to this offset is the replay of what was missed
                    self.replay_until = message.get("offset")
                else:
                    self.totals.gaps_lost += 1
                self.since = None
            elif self.ready.done() and message.get("recovered") is False:
                self.totals.gaps_lost += 1  # unasked: the server lost the channel's history
            self.epoch = message.get("epoch")
            if self.offset is None or message.get("recovered") is False:
                self.offset = message.get("offset")
            if not self.ready.done():
                self._mark_live()
                self.ready.set_result(None)
        elif kind == "error":
            if message.get("id") is not None:
                kind = str(message["id"])[:1]
                self.totals.command_errors[kind] = self.totals.command_errors.get(kind, 0) + 1
            elif not self.ready.done():
                self.ready.set_exception(ConnectionError(json.dumps(message.get("error"))))

    def _mark_live(self) -> None:
        if not self.live and self.transport is not None and not self.transport.is_closing():
            self.live = True
            self.totals.live += 1

    def _on_engineio(self, payload: bytes) -> None:
        if payload[:1] == b"0":  # open: connect to the default namespace
            self._send(0x1, b"40")
        elif payload[:2] == b"40":  # connected: join the room
            self._send(0x1, b'42["join",' + orjson.dumps(self.channel) + b"]")
            if not self.ready.done():
                self._mark_live()
                self.ready.set_result(None)
        elif payload[:1] == b"2":  # Engine.IO ping
            self._send(0x1, b"3")


@dataclass
class Target:
    """Where viewers connect."""

    host: str
    port: int
    path: str
    dialect: str = "reelwire"


async def connect_from(host: str, port: int, source: str | None) -> socket.socket | None:
    """A connected non-blocking socket bound to `source` (None: let the kernel choose, which
    create_connection does itself)."""
    if source is None:
        return None
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET:
            # The port is chosen per destination at connect(), so each source address has
            # the whole ephemeral range for this server.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def open_viewer(
    target: Target,
    totals: Totals,
    channel: str,
    since: dict[str, Any] | None = None,
    timeout: float = 30,
    *,
    source: str | None = None,
    token: str | None = None,
) -> Viewer:
    """Connect one viewer and wait until its subscription is live."""
    loop = asyncio.get_running_loop()
    host = f"[{target.host}]" if ":" in target.host else target.host
    host = f"{host}:{target.port}"

    def viewer() -> Viewer:
        made = Viewer(totals, channel, target.dialect, target.path, host, token)
        made.since = since
        return made

    async def connect() -> Viewer:
        sock = await connect_from(target.host, target.port, source)
        if sock is None:
            _, made = await loop.create_connection(viewer, target.host, target.port)
        else:
            _, made = await loop.create_connection(viewer, sock=sock)
        try:
            await made.ready
        except BaseException:
            made._abort()
            raise
        return made

    return await asyncio.wait_for(connect(), timeout)


@dataclass
class Incident:
    """A moment after which every socket that closes counts as affected (a reconnect storm
    or a server restart), and what became of those sockets."""

    at: float | None = None  # monotonic
    affected: int = 0
    recovered: int = 0  # resubscribed with `since` and got every missed event
    lost: int = 0  # resubscribed but the gap could not be filled
    last_recovery: float | None = None  # monotonic, of the last recovery


@dataclass
class Backoff:
    """Jittered reconnect delays: the first uniform in [low, high], each later one doubled
    (up to `cap`), all with full jitter."""

    low: float = 1.0
    high: float = 5.0
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt `attempt` (0 first)."""
        scale = min(2.0**attempt, self.cap / max(self.high, 1e-9))
        return rng.uniform(self.low, self.high) * scale


@dataclass
class Watch:
    """How watchers of one process connect and reconnect."""

    target: Target
    totals: Totals
    stop: asyncio.Event
    backoff: Backoff = field(default_factory=Backoff)
    incident: Incident = field(default_factory=Incident)
    rng: random.Random = field(default_factory=random.Random)
    connect_gate: asyncio.Semaphore | None = None  # bounds first connects in flight


class Watcher:
    """One viewer for the whole run: connects, reconnects with `since` when dropped."""

    def __init__(
        self,
        index: int,
        channel: str,
        *,
        token: str | None = None,
        authenticate: bool = False,
        source: str | None = None,
    ) -> None:
        self.index = index
        self.channel = channel
        self.token = token  # the user this viewer acts as
        self.authenticate = authenticate  # its socket too (for WS commands)
        self.source = source
        self.viewer: Viewer | None = None
        self.affected = False
        self.settled = False  # an affected watcher that recovered or lost
        self.dropping = False  # its socket is being cut by us, not closed by the server

    @property
    def video(self) -> str:
        """The id of the watched video."""
        return self.channel.split(":", 1)[1]

    def drop(self) -> bool:
        """Cut this watcher's socket now (it reconnects); False when it has none."""
        viewer = self.viewer
        if viewer is None or not viewer.live:
            return False
        self.dropping = True
        viewer.drop()
        return True

    async def run(self, watch: Watch, on_first: Any = None) -> None:
        """Watch until `watch.stop` is set. `on_first` (a callable) runs once subscribed."""
        totals, stop = watch.totals, watch.stop
        since: dict[str, Any] | None = None
        first, attempt = True, 0
        while not stop.is_set():
            try:
                if first and watch.connect_gate is not None:
                    async with watch.connect_gate:
                        viewer = await self._open(watch, since)
                else:
                    viewer = await self._open(watch, since)
            except (OSError, TimeoutError, ConnectionError):
                if first:
                    totals.failed += 1
                    return
                await _sleep_or_stop(stop, watch.backoff.delay(attempt, watch.rng))
                attempt += 1
                continue
            self.viewer = viewer
            attempt = 0
            if first:
                totals.connected += 1
                first = False
                if on_first is not None:
                    on_first(self)
            else:
                totals.reconnects += 1
                self._settle(watch, viewer)
            closed = asyncio.ensure_future(stop.wait())
            await asyncio.wait([closed, viewer.closed], return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            if stop.is_set():
                viewer._abort()
                return
            if self.dropping:
                self.dropping = False
                totals.drops += 1
            else:
                code = viewer.close_code or 1006
                totals.closes[code] = totals.closes.get(code, 0) + 1
            incident = watch.incident
            if incident.at is not None and time.monotonic() >= incident.at and not self.affected:
                self.affected = True
                incident.affected += 1
            if viewer.epoch is not None and viewer.offset is not None:
                since = {"offset": viewer.offset, "epoch": viewer.epoch}
            await _sleep_or_stop(stop, watch.backoff.delay(0, watch.rng))

    async def _open(self, watch: Watch, since: dict[str, Any] | None) -> Viewer:
        return await open_viewer(
            watch.target,
            watch.totals,
            self.channel,
            since,
            source=self.source,
            token=self.token if self.authenticate else None,
        )

    def _settle(self, watch: Watch, viewer: Viewer) -> None:
        if not self.affected or self.settled:
            return
        self.settled = True
        incident = watch.incident
        if viewer.recovered:
            incident.recovered += 1
            incident.last_recovery = time.monotonic()
        else:
            incident.lost += 1


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def keep_watching(
    target: Target, totals: Totals, channel: str, stop: asyncio.Event, reconnect: bool
) -> None:
    """One viewer for as long as `stop` is not set (reconnecting with `since` when dropped,
    if `reconnect`): the simple form of Watcher, kept for scripts."""
    if reconnect:
        await Watcher(0, channel).run(Watch(target, totals, stop))
        return
    try:
        viewer = await open_viewer(target, totals, channel)
    except (OSError, TimeoutError, ConnectionError):
        totals.failed += 1
        return
    totals.connected += 1
    closed = asyncio.ensure_future(stop.wait())
    await asyncio.wait([closed, viewer.closed], return_when=asyncio.FIRST_COMPLETED)
    closed.cancel()
    viewer._abort()
