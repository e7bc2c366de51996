"""Absolute URLs the server hands out (signed upload URLs), from a REST request.

The rule (`PUBLIC_BASE_URL`, else the local address the client connected to, never `Host`) is
`reelwire.domain.urls.public_base_url`; this reads its inputs off the request.
"""

from __future__ import annotations

from aiohttp import web

from reelwire.appkeys import SETTINGS
from reelwire.domain import urls


def public_base_url(request: web.Request) -> str:
    """`scheme://host[:port]` under which this server is reached, without a trailing slash."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return urls.public_base_url(request.app[SETTINGS], secure=request.secure, sockname=sockname)
