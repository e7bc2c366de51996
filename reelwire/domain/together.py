"""Lookups many callers make at once, made together.

A reconnect storm asks the same small questions thousands of times in a second (is this session
logged out, does this account still exist); `Together` answers the callers of one moment with one
lookup. A caller's key is only ever answered by a lookup that started after it asked, so nobody
gets an answer older than their question: the first caller's lookup starts at once, and keys asked
for while it is in flight wait for the next one, which takes all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

Fetch = Callable[[list[K]], Awaitable[Mapping[K, V]]]


class Together(Generic[K, V]):
    """One process's lookups of one kind; `fetch` answers a list of keys with a mapping (a key it
    leaves out is answered None)."""

    def __init__(self) -> None:
        self._next: dict[K, asyncio.Future[V | None]] = {}
        self._fetch: Fetch[K, V] | None = None
        self._running = False
        self._task: asyncio.Future[None] | None = None

    async def get(self, key: K, fetch: Fetch[K, V]) -> V | None:
        """The answer for `key`, from a lookup that starts after this call."""
        waiter = self._next.get(key)
        if waiter is None:
            waiter = self._next[key] = asyncio.get_running_loop().create_future()
            self._fetch = fetch
            if not self._running:
                self._running = True
                self._task = asyncio.ensure_future(self._run())
        # Shielded: a caller that gives up does not cancel the answer others wait for.
        return await asyncio.shield(waiter)

    async def _run(self) -> None:
        try:
            while self._next:
                batch, self._next = self._next, {}
                assert self._fetch is not None
                try:
                    found = await self._fetch(list(batch))
                except Exception as exc:
                    for waiter in batch.values():
                        if not waiter.done():
                            waiter.set_exception(exc)
                            waiter.exception()  # retrieved: a caller that gave up logs nothing
                    continue
                for key, waiter in batch.items():
                    if not waiter.done():
                        waiter.set_result(found.get(key))
        finally:
            self._running = False
