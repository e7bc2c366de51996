"""Absolute URLs the server hands out (signed upload URLs, the AsyncAPI servers).

They come from `PUBLIC_BASE_URL` when it is set (behind a proxy or a domain), otherwise from
the local address the client actually connected to — never from the `Host` header, which the
client writes: `Host: evil.example` must not make us sign a URL pointing at evil.example.
"""

from __future__ import annotations

from aiohttp import web

from reelwire.appkeys import SETTINGS


def public_base_url(request: web.Request) -> str:
    """`scheme://host[:port]` under which this server is reached, without a trailing slash."""
    configured = request.app[SETTINGS].public_base_url
    if configured:
        return configured.rstrip("/")
    scheme = "https" if request.secure else "http"
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        settings = request.app[SETTINGS]
        return f"{scheme}://{settings.host}:{settings.port}"
    host, port = sockname[0], sockname[1]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")
