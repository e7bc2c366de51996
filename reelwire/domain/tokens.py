"""JWT access and refresh tokens: HS256 pinned, iss/aud/exp/iat/sub/jti, and a type claim."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import jwt

from reelwire.domain.errors import Unauthorized

ALGORITHM = "HS256"
ACCESS, REFRESH = "access", "refresh"
VERIFIED_CACHE_SIZE = 10_000
ACCOUNT_CHECK_SECONDS = 1.0  # how long "this account exists" is believed without asking again
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti", "typ", "fam"]


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    user_id: UUID
    jti: UUID
    family: UUID
    token_type: str
    expires_at: datetime
    role: str


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and when it stops working."""

    token: str
    jti: UUID
    expires_at: datetime


class TokenCodec:
    """Signs and verifies this deployment's tokens."""

    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        access_ttl: timedelta,
        refresh_ttl: timedelta,
    ) -> None:
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._verified: dict[str, Claims] = {}  # insertion-ordered: the oldest goes first
        self._accounts: dict[UUID, float] = {}  # user id -> when it was last seen to exist

    def account_recently_seen(self, user_id: UUID) -> bool:
        """Whether the account was seen to exist less than ACCOUNT_CHECK_SECONDS ago."""
        seen = self._accounts.get(user_id)
        return seen is not None and time.monotonic() - seen < ACCOUNT_CHECK_SECONDS

    def account_seen(self, user_id: UUID, exists: bool) -> None:
        """Remember the outcome of an account lookup (only a live account is remembered)."""
        self._accounts.pop(user_id, None)
        if exists:
            if len(self._accounts) >= VERIFIED_CACHE_SIZE:
                self._accounts.pop(next(iter(self._accounts)))
            self._accounts[user_id] = time.monotonic()

    def issue(
        self,
        token_type: str,
        user_id: UUID,
        family: UUID,
        extra: dict[str, Any] | None = None,
    ) -> IssuedToken:
        """Sign a new token of `token_type` for the user's session `family`."""
        now = datetime.now(UTC)
        ttl = self.access_ttl if token_type == ACCESS else self.refresh_ttl
        jti = uuid.uuid4()
        expires_at = now + ttl
        payload: dict[str, Any] = {
            **(extra or {}),
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "user_id": str(user_id),
            "jti": str(jti),
            "fam": str(family),
            "typ": token_type,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        token = jwt.encode(payload, self._secret, algorithm=ALGORITHM, headers={"typ": "JWT"})
        return IssuedToken(token, jti, expires_at)

    def verify(self, token: str, token_type: str) -> Claims:
        """Check signature, algorithm, issuer, audience, expiry and type; raise Unauthorized.

        Verified access tokens are remembered until they expire: a client sends the same one
        with every request, and checking its signature again costs more than the rest of a
        small request. (Revocation is checked per request by the caller, not here.)
        """
        if token_type == ACCESS:
            known = self._verified.get(token)
            if known is not None and known.expires_at.timestamp() + 5 > time.time():
                return known
        claims = self._decode(token, token_type)
        if token_type == ACCESS:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))
            self._verified[token] = claims
        return claims

    def _decode(self, token: str, token_type: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Token has expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("Invalid token") from None
        if payload.get("typ") != token_type:
            article = "an" if token_type == ACCESS else "a"
            raise Unauthorized(f"Expected {article} {token_type} token") from None
        try:
            return Claims(
                user_id=UUID(payload["sub"]),
                jti=UUID(payload["jti"]),
                family=UUID(payload["fam"]),
                token_type=token_type,
                expires_at=datetime.fromtimestamp(payload["exp"], UTC),
                role=str(payload.get("role", "user")),
            )
        except (ValueError, TypeError):
            raise Unauthorized("Invalid token") from None


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer ...` header value, if it is one."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
