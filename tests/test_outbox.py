"""The outbox's rules for writes that fail otherwise than "Redis is away"."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from pubsub import outbox
from pubsub.outbox import Outbox


async def test_an_odd_failure_of_a_held_write_is_retried_and_a_hopeless_one_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox, "RETRY_CAP_SECONDS", 0.01)  # keep the test quick
    done: list[str] = []
    tries = {"odd": 0, "hopeless": 0}

    async def away() -> None:
        raise RedisConnectionError("Redis is away")

    async def odd() -> None:  # fails once in a way that does not say "Redis is away"
        tries["odd"] += 1
        if tries["odd"] == 1:
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")
        done.append("odd")

    async def hopeless() -> None:
        tries["hopeless"] += 1
        raise ValueError("this write can never succeed")

    async def last() -> None:
        done.append("last")

    box = Outbox()
    await box.run(away)  # Redis away: held, and everything after it waits in order
    assert box.backlog == 1
    for op in (odd, hopeless, last):
        await box.run(op)
    box._held.popleft()  # Redis "answers" again: the first write landed (taken off by hand)
    async with asyncio.timeout(10):
        while box.backlog:
            await asyncio.sleep(0.01)
    assert done == ["odd", "last"]  # in order, the odd failure cost nothing
    assert tries == {"odd": 2, "hopeless": outbox.UNEXPECTED_ATTEMPTS}
    await box.aclose()
