"""Who may fetch a stored media file, and signed media URLs.

Media of a public or unlisted video is served at plain, CDN-cacheable URLs
(`/media/videos/<id>/hls/...`). Media that not everyone may see — a private video, a clip
(which exists for 24 hours) — is served only at URLs signed for the viewer who was shown them:

    /media/signed/<expires>.<viewer>.<signature>/videos/<id>/hls/master.m3u8

The token sits in the path, before the key, so the relative URIs inside playlists and the
storyboard index (`720p/playlist.m3u8`, `segment_00001.ts`, `storyboard.jpg`) resolve to URLs
that carry it too: a player needs nothing rewritten. A signature covers the object's media
prefix (`videos/<id>` or `clips/<id>`), the expiry and the viewer, under a key derived from
the JWT secret. Expiries are rounded up to the next `ROUND_SECONDS`, so one viewer's URLs stay
the same for a while and caches can keep them, and never pass a clip's `expires_at`.

Plain URLs are checked on every request against the video's current visibility (the video
cache, fenced on every change), so switching a video to private refuses them at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from uuid import UUID

from reelwire.domain.context import Principal, Services
from storage import blob_keys

SIGNED_PREFIX = "signed/"
ROUND_SECONDS = 600
_ANONYMOUS = "0"


@dataclass(frozen=True)
class MediaObject:
    """What a key belongs to: `kind` is `videos` or `clips`, `scope` the prefix signed."""

    kind: str
    object_id: UUID

    @property
    def scope(self) -> str:
        """The key prefix a signature covers."""
        return blob_keys.scope(self.kind, self.object_id)


@dataclass(frozen=True)
class SignedKey:
    """A request for `key` through a signed URL."""

    key: str
    expires: int
    viewer: str
    signature: str


def media_object(key: str) -> MediaObject | None:
    """The video or clip a key belongs to, or None for keys that belong to neither."""
    owner = blob_keys.owner(key)
    return MediaObject(*owner) if owner is not None else None


def split_signed(path: str) -> SignedKey | None:
    """`signed/<token>/<key>` taken apart; None when the path is not of that shape."""
    if not path.startswith(SIGNED_PREFIX):
        return None
    token, _, key = path[len(SIGNED_PREFIX) :].partition("/")
    expires, _, rest = token.partition(".")
    viewer, _, signature = rest.partition(".")
    if not (key and viewer and signature and expires.isascii() and expires.isdecimal()):
        return None
    if len(expires) > 12 or not (viewer.isascii() and signature.isascii()):
        return None
    return SignedKey(key, int(expires), viewer, signature)


def verify(ctx: Services, signed: SignedKey, now: float | None = None) -> bool:
    """The signature is ours, covers the key's object and has not expired."""
    obj = media_object(signed.key)
    if obj is None or signed.expires < (now if now is not None else time.time()):
        return False
    expected = _signature(ctx, obj.scope, signed.expires, signed.viewer)
    return hmac.compare_digest(expected, signed.signature)


def sign_key(
    ctx: Services,
    key: str,
    viewer: Principal | None,
    not_after: datetime | None = None,
    now: float | None = None,
) -> str:
    """A signed URL of ours for `key` (which must belong to a video or clip)."""
    obj = media_object(key)
    assert obj is not None, f"not a video or clip key: {key}"
    expires = _expiry(ctx, not_after, now)
    who = viewer.user_id.hex if viewer is not None else _ANONYMOUS
    signature = _signature(ctx, obj.scope, expires, who)
    return f"/media/{SIGNED_PREFIX}{expires}.{who}.{signature}/{key}"


def sign_urls(
    ctx: Services,
    obj: dict[str, Any],
    viewer: Principal | None,
    *,
    not_after: datetime | None = None,
) -> dict[str, Any]:
    """`obj` (a rendered video, clip or library entry) with every media URL in it signed."""
    base = _plain_base(ctx)

    def sign(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(base):
            key = value[len(base) :]
            if media_object(key) is not None:
                return sign_key(ctx, key, viewer, not_after)
        if isinstance(value, dict):
            return {k: sign(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sign(v) for v in value]
        return value

    return {k: sign(v) for k, v in obj.items()}


def needs_signing(video: Mapping[str, Any]) -> bool:
    """Private videos and the videos behind uploaded clips are served only at signed URLs
    (`video`: a rendered video or a video row)."""
    return video.get("visibility") == "private" or video.get("source") == "clip"


def for_viewer(ctx: Services, video: dict[str, Any], viewer: Principal | None) -> dict[str, Any]:
    """A rendered video as `viewer` gets it: media URLs signed where plain ones are refused."""
    if not needs_signing(video):
        return video
    not_after = None
    if video.get("source") == "clip" and video.get("created_at"):
        from reelwire.domain.clips import CLIP_LIFETIME

        not_after = datetime.fromisoformat(video["created_at"]) + CLIP_LIFETIME
    return sign_urls(ctx, video, viewer, not_after=not_after)


def plain_allowed(video: dict[str, Any] | None) -> bool:
    """Whether a video's media may be served at plain URLs right now."""
    return video is not None and not needs_signing(video)


def cache_seconds(signed: SignedKey, now: float | None = None) -> int:
    """How long a response to a signed URL may be kept: never past its expiry."""
    return max(0, int(signed.expires - (now if now is not None else time.time())))


def _expiry(ctx: Services, not_after: datetime | None, now: float | None) -> int:
    moment = now if now is not None else time.time()
    expires = moment + ctx.settings.media_url_ttl
    expires = (int(expires) // ROUND_SECONDS + 1) * ROUND_SECONDS
    if not_after is not None:
        expires = min(expires, int(not_after.timestamp()))
    return expires


def _plain_base(ctx: Services) -> str:
    # A store's URL for a key is its base followed by the key.
    probe = ctx.blobs.url(blob_keys.VIDEOS)
    return probe[: -len(blob_keys.VIDEOS)]


def _signature(ctx: Services, scope: str, expires: int, viewer: str) -> str:
    message = f"{scope}\n{expires}\n{viewer}".encode()
    digest = hmac.new(_key(ctx.settings.jwt_secret_key or ""), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


@cache
def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"reelwire media urls", hashlib.sha256).digest()
