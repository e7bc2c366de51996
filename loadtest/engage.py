"""What viewers do besides watching: a view when they start, likes and comments.

Through the real operations, as a client calls them: REST (`POST /api/videos/{id}/view`,
`.../like`, `.../comments` with the actor's token) or the same commands on the viewer's own
socket (`{"type": "like", ...}`; its `ack` or `error` is counted). Rates are global (spread
evenly over the load processes) or per viewer (per minute, for every viewer connected at the
time). Likes alternate like / remove per user and video, so every one changes a count and
publishes an update. A burst is a fixed number of likes and comments on one video, spread over
a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loadtest.viewers import Totals, Watcher

IN_FLIGHT = 256  # REST actions waiting for an answer, at most
KINDS = ("views", "likes", "comments")
# The first letter of a WS command's id says what it was, so acks and errors are told apart
# without parsing them: rate actions lower case, burst actions upper case.
LETTER = {"views": "v", "likes": "l", "comments": "c"}


@dataclass
class Actions:
    """Actions sent and their outcome (for WS, the outcome is read from Totals at the end)."""

    sent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    done: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    errors: int = 0
    first: float | None = None  # monotonic, first sent
    last: float | None = None  # monotonic, last answered

    def to_json(self) -> dict[str, Any]:
        """Plain counts."""
        return {"sent": self.sent, "done": self.done, "errors": self.errors}


class Engager:
    """Sends a load process's actions."""

    def __init__(
        self,
        *,
        via: str,
        http: aiohttp.ClientSession,
        actors: list[dict[str, str]],
        videos: list[str],
        watchers: list[Watcher],
        totals: Totals,
        rng: random.Random,
    ) -> None:
        self.via = via
        self.http = http
        self.actors = actors
        self.videos = videos
        self.watchers = watchers
        self.totals = totals
        self.rng = rng
        self.actions = Actions()
        self.burst_actions = Actions()
        self.liked: dict[tuple[str, str], bool] = {}
        self.gate = asyncio.Semaphore(IN_FLIGHT)
        self.pending: set[asyncio.Task[None]] = set()
        self.sequence = 0

    # --- one action ---------------------------------------------------------------------------

    async def act(
        self,
        kind: str,
        *,
        watcher: Watcher | None = None,
        video: str | None = None,
        burst: bool = False,
    ) -> None:
        """Send one action (waits only while IN_FLIGHT REST actions are unanswered)."""
        book = self.burst_actions if burst else self.actions
        if self.via == "ws":
            watcher = watcher if _live(watcher) else self._live_watcher()
            if watcher is None or watcher.viewer is None:
                book.errors += 1  # no socket to send it on
                return
            self._send_ws(kind, watcher, video or watcher.video, burst, book)
            return
        if watcher is not None and watcher.token is not None:
            token, target = watcher.token, video or watcher.video
        else:
            token = self.rng.choice(self.actors)["token"]
            target = video or self.rng.choice(self.videos)
        await self.gate.acquire()
        book.sent[kind] += 1
        if book.first is None:
            book.first = time.monotonic()
        task = asyncio.create_task(self._rest(kind, token, target, book))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    def _body(self, kind: str, token: str, video: str) -> dict[str, Any]:
        if kind == "likes":
            on = not self.liked.get((token, video), False)
            self.liked[(token, video)] = on
            return {"action": "like" if on else "remove"}
        if kind == "comments":
            return {"content": f"load {time.time():.3f}"}
        return {}

    async def _rest(self, kind: str, token: str, video: str, book: Actions) -> None:
        path = {"views": "view", "likes": "like", "comments": "comments"}[kind]
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self.http.post(
                f"/api/videos/{video}/{path}", json=self._body(kind, token, video), headers=headers
            ) as resp:
                await resp.read()
                ok = resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        finally:
            self.gate.release()
        if ok:
            book.done[kind] += 1
        else:
            book.errors += 1
        book.last = time.monotonic()

    def _send_ws(self, kind: str, watcher: Watcher, video: str, burst: bool, book: Actions) -> None:
        assert watcher.viewer is not None and watcher.token is not None
        letter = LETTER[kind].upper() if burst else LETTER[kind]
        self.sequence += 1
        message: dict[str, Any] = {
            "type": kind[:-1] if kind != "views" else "view",
            "id": f"{letter}{self.sequence}",
            "video_id": video,
        }
        message.update(self._body(kind, watcher.token, video))
        watcher.viewer.send_json(message)
        book.sent[kind] += 1
        if book.first is None:
            book.first = time.monotonic()

    def _live_watcher(self) -> Watcher | None:
        if not self.watchers:
            return None
        for _ in range(8):
            watcher = self.rng.choice(self.watchers)
            if _live(watcher):
                return watcher
        return next((w for w in self.watchers if _live(w)), None)

    def view_on_start(self, watcher: Watcher) -> None:
        """A watcher just started: count a view of its video."""
        task = asyncio.create_task(self.act("views", watcher=watcher))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    # --- rates and bursts ---------------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event,
        rates: dict[str, float],
        per_viewer: dict[str, float],
        *,
        phase: float = 0.0,
    ) -> None:
        """Send actions at `rates` (per second, for this process) plus `per_viewer` (per
        minute per live viewer of this process) until `stop`; `phase` (0 to 1) of an action
        is owed from the start, so processes sharing a rate take turns."""
        if not any(rates.values()) and not any(per_viewer.values()):
            return
        owed = dict.fromkeys(KINDS, phase)
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.02)
            now = time.monotonic()
            live = self.totals.live
            for kind in KINDS:
                owed[kind] += (now - last) * rates.get(kind, 0.0)
                owed[kind] += (now - last) * per_viewer.get(kind, 0.0) * live / 60
            last = now
            for kind in KINDS:
                global_share = rates.get(kind, 0.0)
                viewer_share = per_viewer.get(kind, 0.0) * live / 60
                while owed[kind] >= 1 and not stop.is_set():
                    owed[kind] -= 1
                    by_viewer = self.rng.random() * (global_share + viewer_share) >= global_share
                    watcher = self._live_watcher() if by_viewer else None
                    await self.act(kind, watcher=watcher)

    async def burst(
        self, stop: asyncio.Event, video: str, counts: dict[str, int], seconds: float
    ) -> None:
        """`counts` likes and comments on `video`, spread evenly over `seconds`."""
        started = time.monotonic()
        sent = dict.fromkeys(counts, 0)
        while not stop.is_set() and any(sent[k] < counts[k] for k in counts):
            elapsed = time.monotonic() - started
            for kind, count in counts.items():
                due = count if elapsed >= seconds else int(count * elapsed / max(seconds, 1e-9))
                while sent[kind] < due and not stop.is_set():
                    sent[kind] += 1
                    await self.act(kind, video=video, burst=True)
            await asyncio.sleep(0.01)

    async def finish(self, timeout: float = 10) -> None:
        """Wait (a bounded time) for the REST actions still in flight."""
        if self.pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self.pending, return_exceptions=True), timeout
                )
        for task in list(self.pending):
            task.cancel()

    def settle_ws(self) -> None:
        """For WS actions: done and errors as the sockets counted acks and errors."""
        if self.via != "ws":
            return
        acks, refused = self.totals.acks, self.totals.command_errors
        for book, upper in ((self.actions, False), (self.burst_actions, True)):
            for kind, letter in LETTER.items():
                key = letter.upper() if upper else letter
                book.done[kind] = acks.get(key, 0)
                book.errors += refused.get(key, 0)
                acked = self.totals.acked_at.get(key)
                if acked is not None and (book.last is None or acked > book.last):
                    book.last = acked


def _live(watcher: Watcher | None) -> bool:
    return watcher is not None and watcher.viewer is not None and watcher.viewer.live
