"""Addresses both transports hand out: where the API documents live, and the base of every
absolute URL (signed upload URLs, the AsyncAPI document's servers).

The base comes from `PUBLIC_BASE_URL` when it is set (behind a proxy or a domain), otherwise
from the local address the client actually connected to — never from the `Host` header, which
the client writes: `Host: evil.example` must not make us sign a URL pointing at evil.example.
"""

from __future__ import annotations

from typing import Any

from reelwire.settings import Settings

DOCS_URL = "/api/docs"
ASYNCAPI_URL = "/api/asyncapi.json"


def public_base_url(settings: Settings, *, secure: bool, sockname: Any) -> str:
    """`scheme://host[:port]` under which this server is reached, without a trailing slash.

    `secure` is whether the request came over TLS, `sockname` the local address of its socket
    (None when unknown)."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    scheme = "https" if secure else "http"
    if not sockname:
        return f"{scheme}://{settings.host}:{settings.port}"
    host, port = sockname[0], sockname[1]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")
