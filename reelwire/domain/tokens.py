"""JWT access and refresh tokens: HS256 pinned, iss/aud/exp/iat/sub/jti, and a type claim."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import jwt
import orjson

from reelwire.domain.errors import Unauthorized

ALGORITHM = "HS256"
ACCESS, REFRESH = "access", "refresh"
VERIFIED_CACHE_SIZE = 10_000
ACCOUNT_CHECK_SECONDS = 1.0  # how long "this account exists" is believed without asking again
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti", "typ", "fam"]
LEEWAY_SECONDS = 5
# The header `issue` writes (PyJWT sorts a header's keys): the tokens `_decode_ours` reads.
_OUR_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()


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
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)  # copied per token
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
        claims = self._decode_ours(token, token_type)
        if claims is not None:
            return claims
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Token has expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("Invalid token") from None
        if payload.get("typ") != token_type:
            article = "an" if token_type == ACCESS else "a"
            raise Unauthorized(f"Expected {article} {token_type} token") from None
        try:
            return _claims(payload, token_type)
        except (ValueError, TypeError):
            raise Unauthorized("Invalid token") from None

    def _decode_ours(self, token: str, token_type: str) -> Claims | None:
        """A valid token exactly as `issue` writes them, read in a few microseconds (PyJWT's
        generality costs a hundred, per socket of a reconnect storm); None for anything else or
        anything wrong, which PyJWT then judges and words the refusal of. Every check it makes
        PyJWT makes too (signature, required claims, exp and iat and nbf with the leeway, iss,
        aud, sub and jti being strings), so this accepts nothing PyJWT would refuse."""
        header, _, rest = token.partition(".")
        body, dot, signature = rest.partition(".")
        if header != _OUR_HEADER or not dot or "." in signature:
            return None
        mac = self._mac.copy()
        mac.update(f"{header}.{body}".encode())
        try:
            given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            if not hmac.compare_digest(mac.digest(), given):
                return None
            payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            return None
        if not isinstance(payload, dict) or any(name not in payload for name in _REQUIRED):
            return None
        now = time.time()
        exp, iat, nbf = payload["exp"], payload["iat"], payload.get("nbf")
        if type(exp) is not int or type(iat) is not int or exp <= now - LEEWAY_SECONDS:
            return None
        if iat > now + LEEWAY_SECONDS or (
            nbf is not None and (type(nbf) is not int or nbf > now + LEEWAY_SECONDS)
        ):
            return None
        if payload["iss"] != self.issuer or payload["aud"] != self.audience:
            return None
        if payload["typ"] != token_type or not isinstance(payload["jti"], str):
            return None
        if not isinstance(payload["sub"], str) or not isinstance(payload["fam"], str):
            return None
        try:
            return _claims(payload, token_type)
        except (ValueError, TypeError, OverflowError):
            return None


def _claims(payload: dict[str, Any], token_type: str) -> Claims:
    """The claims of a verified token's payload (ValueError and the like when one is malformed)."""
    return Claims(
        user_id=UUID(payload["sub"]),
        jti=UUID(payload["jti"]),
        family=UUID(payload["fam"]),
        token_type=token_type,
        expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        role=str(payload.get("role", "user")),
    )


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer ...` header value, if it is one."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
