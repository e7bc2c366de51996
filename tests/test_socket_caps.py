"""What one stranger can hold: sockets per address and per process are capped, with a status
that says why, and a freed place can be taken again."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import MakeApi
from tests.wsclient import Socket

pytestmark = pytest.mark.usefixtures("reset")


async def _refused(api: Any) -> aiohttp.WSServerHandshakeError:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await Socket.open(api.client)
    return refused.value


async def test_sockets_per_address_are_capped_and_freed(make_api: MakeApi) -> None:
    api = await make_api(ws_max_sockets_per_address=3)
    held = [await Socket.open(api.client) for _ in range(3)]
    refused = await _refused(api)
    assert refused.status == 429
    assert refused.headers and refused.headers["Retry-After"]
    await held.pop().ws.close()
    again = None
    for _ in range(50):  # the server lets go of the place once its handler has finished
        try:
            again = await Socket.open(api.client)
            break
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 429
            await asyncio.sleep(0.1)
    assert again is not None and again.welcome["type"] == "welcome"
    for sock in [*held, again]:
        await sock.ws.close()


async def test_a_full_process_refuses_with_503(make_api: MakeApi) -> None:
    api = await make_api(ws_max_sockets=2, ws_max_sockets_per_address=0)
    held = [await Socket.open(api.client) for _ in range(2)]
    refused = await _refused(api)
    assert refused.status == 503
    for sock in held:
        await sock.ws.close()
