"""Auth as API.md describes it: register, login, refresh rotation, logout, me, JWT rules."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import orjson
import pytest

from reelwire.domain.schemas.auth import AuthOut, CurrentUserOut
from tests.conftest import TEST_SECRET, Api

pytestmark = pytest.mark.usefixtures("reset")


async def post(client: Any, path: str, body: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post(path, json=body, **kw)
    return resp.status, await resp.json()


async def test_register_returns_clutch_shape_and_tokens(client: Any) -> None:
    status, body = await post(
        client,
        "/api/auth/register",
        {
            "username": "alice_1",
            "email": "Alice@Example.com",
            "password": "Secret123",
            "display_name": "Alice",
        },
    )
    assert status == 201
    AuthOut.model_validate(body)
    assert body["success"] is True
    assert body["message"] == "Account created successfully"
    user = body["user"]
    assert user["username"] == "alice_1"
    assert user["display_name"] == "Alice"
    assert user["follower_count"] == 0 and user["following_count"] == 0
    assert user["avatar_url"]
    assert body["access"] == body["tokens"]["access_token"]
    assert body["refresh"] == body["tokens"]["refresh_token"]


async def test_display_name_defaults_to_username(client: Any) -> None:
    status, body = await post(
        client,
        "/api/auth/register",
        {"username": "bob", "email": "bob@example.com", "password": "Secret123"},
    )
    assert status == 201
    assert body["user"]["display_name"] == "bob"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("username", "ab", "3-30 characters"),
        ("username", "a" * 31, "3-30 characters"),
        ("username", "bad-name", "letters, digits and underscores"),
        ("username", "spa ce", "letters, digits and underscores"),
        ("email", "not-an-email", "valid email"),
        ("email", "a@b", "valid email"),
        ("password", "Short1", "at least 8 characters"),
        ("password", "alllowercase1", "an uppercase letter"),
        ("password", "NoDigitsHere", "a number"),
        ("display_name", "", "1-50 characters"),
        ("display_name", "x" * 51, "1-50 characters"),
    ],
)
async def test_register_validation_rules_have_per_field_messages(
    client: Any, field: str, value: str, fragment: str
) -> None:
    body = {"username": "valid_name", "email": "ok@example.com", "password": "Secret123"}
    body[field] = value
    status, data = await post(client, "/api/auth/register", body)
    assert status == 400
    assert data["success"] is False
    assert data["error"]["code"] == "VALIDATION_ERROR"
    assert list(data["error"]["field_errors"]) == [field]
    assert fragment in data["error"]["field_errors"][field][0]


async def test_register_reports_every_bad_field_at_once(client: Any) -> None:
    status, data = await post(client, "/api/auth/register", {"username": "x", "role": "admin"})
    assert status == 400
    errors = data["error"]["field_errors"]
    assert set(errors) == {"username", "email", "password", "role"}
    assert errors["email"] == ["This field is required."]
    assert errors["role"] == ["Unknown field."]


async def test_taken_username_and_email_are_409_case_insensitively(api: Api) -> None:
    await api.register("carol")
    status, data = await post(
        api.client,
        "/api/auth/register",
        {"username": "CAROL", "email": "other@example.com", "password": "Secret123"},
    )
    assert status == 409
    assert data["error"]["code"] == "CONFLICT"
    assert "username" in data["error"]["field_errors"]
    status, data = await post(
        api.client,
        "/api/auth/register",
        {"username": "carol2", "email": "CAROL@example.com", "password": "Secret123"},
    )
    assert status == 409
    assert "email" in data["error"]["field_errors"]


@pytest.mark.parametrize(
    "login_body",
    [
        {"login": "dave", "password": "Passw0rd!"},
        {"login": "dave@example.com", "password": "Passw0rd!"},
        {"login": "DAVE@EXAMPLE.COM", "password": "Passw0rd!"},
        {"username": "dave", "password": "Passw0rd!"},
        {"email": "dave@example.com", "password": "Passw0rd!"},
    ],
)
async def test_login_by_username_or_email(api: Api, login_body: dict[str, str]) -> None:
    await api.register("dave")
    status, body = await post(api.client, "/api/auth/login", login_body)
    assert status == 200, body
    AuthOut.model_validate(body)
    assert body["user"]["username"] == "dave"
    me = await api.client.get("/api/auth/me", headers=api.auth(body["access"]))
    assert me.status == 200


async def test_login_with_wrong_password_or_unknown_user_is_401(api: Api) -> None:
    await api.register("erin")
    for body in (
        {"login": "erin", "password": "Wrong1234"},
        {"login": "nobody", "password": "Passw0rd!"},
    ):
        status, data = await post(api.client, "/api/auth/login", body)
        assert status == 401
        assert data["error"] == {
            "code": "UNAUTHORIZED",
            "message": "No active account found with the given credentials",
        }


async def test_login_needs_an_identifier(client: Any) -> None:
    status, data = await post(client, "/api/auth/login", {"password": "x"})
    assert status == 400
    assert data["error"]["code"] == "VALIDATION_ERROR"


async def test_me_returns_user_and_profile(api: Api) -> None:
    user = await api.register("frank")
    resp = await api.client.get("/api/auth/me", headers=api.auth(user["token"]))
    body = await resp.json()
    assert resp.status == 200
    CurrentUserOut.model_validate(body)
    assert body["user"]["id"] == user["id"]
    assert body["user"]["email"] == "frank@example.com"
    assert body["profile"] == {"total_views": 0, "total_videos": 0, "total_likes_received": 0}


async def test_me_without_token_is_401(client: Any) -> None:
    resp = await client.get("/api/auth/me")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "UNAUTHORIZED"


async def test_refresh_rotates_and_clipsy_field_name_works(api: Api) -> None:
    user = await api.register("gina")
    status, first = await post(api.client, "/api/auth/refresh", {"refresh_token": user["refresh"]})
    assert status == 200
    assert first["refresh_token"] != user["refresh"]
    assert first["access"] == first["access_token"]
    status, second = await post(api.client, "/api/auth/refresh", {"refresh": first["refresh"]})
    assert status == 200
    me = await api.client.get("/api/auth/me", headers=api.auth(second["access_token"]))
    assert me.status == 200


async def test_reused_refresh_token_revokes_the_whole_family(api: Api) -> None:
    user = await api.register("hank")
    status, rotated = await post(
        api.client, "/api/auth/refresh", {"refresh_token": user["refresh"]}
    )
    assert status == 200
    # The old token comes back (stolen copy): refused, and the family dies with it.
    status, data = await post(api.client, "/api/auth/refresh", {"refresh_token": user["refresh"]})
    assert status == 401
    assert "already been used" in data["error"]["message"]
    status, _ = await post(api.client, "/api/auth/refresh", {"refresh_token": rotated["refresh"]})
    assert status == 401
    me = await api.client.get("/api/auth/me", headers=api.auth(rotated["access_token"]))
    assert me.status == 401


async def test_other_sessions_survive_a_revoked_family(api: Api) -> None:
    await api.register("ivy")
    _, session_a = await post(
        api.client, "/api/auth/login", {"login": "ivy", "password": "Passw0rd!"}
    )
    _, session_b = await post(
        api.client, "/api/auth/login", {"login": "ivy", "password": "Passw0rd!"}
    )
    await post(api.client, "/api/auth/logout", {}, headers=api.auth(session_a["access"]))
    me = await api.client.get("/api/auth/me", headers=api.auth(session_b["access"]))
    assert me.status == 200


async def test_logout_revokes_access_and_refresh_tokens(api: Api) -> None:
    user = await api.register("jack")
    resp = await api.client.post("/api/auth/logout", headers=api.auth(user["token"]))
    assert resp.status == 200
    assert await resp.json() == {"success": True, "detail": "Successfully logged out"}
    me = await api.client.get("/api/auth/me", headers=api.auth(user["token"]))
    assert me.status == 401
    status, _ = await post(api.client, "/api/auth/refresh", {"refresh_token": user["refresh"]})
    assert status == 401


async def test_logout_needs_a_token(client: Any) -> None:
    resp = await client.post("/api/auth/logout")
    assert resp.status == 401


# --- JWT negatives -------------------------------------------------------------------------


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def _forge(claims: dict[str, Any], key: str = TEST_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _me_status(api: Api, token: str) -> int:
    resp = await api.client.get("/api/auth/me", headers=api.auth(token))
    if resp.status != 200:
        assert (await resp.json())["error"]["code"] == "UNAUTHORIZED"
    return resp.status


async def test_tampered_signature_is_rejected(api: Api) -> None:
    user = await api.register("kim")
    header, payload, signature = user["token"].split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert await _me_status(api, f"{header}.{payload}.{flipped}") == 401
    # A payload changed to claim admin, with the original signature.
    claims = _claims(user["token"]) | {"role": "admin"}
    forged_payload = _b64(orjson.dumps(claims))
    assert await _me_status(api, f"{header}.{forged_payload}.{signature}") == 401


async def test_alg_none_is_rejected(api: Api) -> None:
    user = await api.register("lee")
    header = _b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    payload = _b64(orjson.dumps(_claims(user["token"])))
    assert await _me_status(api, f"{header}.{payload}.") == 401


async def test_other_hmac_algorithm_is_rejected(api: Api) -> None:
    user = await api.register("lena")
    token = _forge(_claims(user["token"]), alg="HS512")
    assert await _me_status(api, token) == 401


async def test_expired_token_is_rejected(api: Api) -> None:
    user = await api.register("max")
    now = int(time.time())
    token = _forge(_claims(user["token"]) | {"iat": now - 3600, "exp": now - 60})
    resp = await api.client.get("/api/auth/me", headers=api.auth(token))
    assert resp.status == 401
    assert (await resp.json())["error"]["message"] == "Token has expired"


async def test_wrong_issuer_and_audience_are_rejected(api: Api) -> None:
    user = await api.register("nia")
    claims = _claims(user["token"])
    assert await _me_status(api, _forge(claims | {"iss": "someone-else"})) == 401
    assert await _me_status(api, _forge(claims | {"aud": "another-api"})) == 401
    # Control: the same forging path with correct claims is accepted.
    assert await _me_status(api, _forge(claims)) == 200


async def test_token_signed_with_another_key_is_rejected(api: Api) -> None:
    user = await api.register("oli")
    token = _forge(_claims(user["token"]), key="another-secret-that-is-also-long-enough-xx")
    assert await _me_status(api, token) == 401


async def test_refresh_token_is_not_an_access_token(api: Api) -> None:
    user = await api.register("pia")
    resp = await api.client.get("/api/auth/me", headers=api.auth(user["refresh"]))
    assert resp.status == 401
    assert (await resp.json())["error"]["message"] == "Expected an access token"


async def test_access_token_cannot_refresh(api: Api) -> None:
    user = await api.register("quin")
    status, data = await post(api.client, "/api/auth/refresh", {"refresh_token": user["token"]})
    assert status == 401
    assert data["error"]["message"] == "Expected a refresh token"


async def test_token_without_required_claims_is_rejected(api: Api) -> None:
    user = await api.register("rae")
    claims = _claims(user["token"])
    del claims["jti"]
    assert await _me_status(api, _forge(claims)) == 401


async def test_token_of_deleted_user_cannot_refresh(api: Api, db: Any) -> None:
    user = await api.register("sam")
    await db.execute("DELETE FROM users WHERE username = 'sam'")
    status, _ = await post(api.client, "/api/auth/refresh", {"refresh_token": user["refresh"]})
    assert status == 401


async def test_passwords_are_stored_as_argon2_hashes(api: Api, db: Any) -> None:
    await api.register("tia")
    stored = await db.fetchval("SELECT password_hash FROM users WHERE username = 'tia'")
    assert stored.startswith("$argon2id$")
    assert "Passw0rd!" not in stored


def test_our_own_tokens_are_read_without_pyjwt_and_never_more_leniently() -> None:
    """TokenCodec reads tokens shaped as it writes them itself (a reconnect storm verifies
    thousands a second); whatever it accepts that way, PyJWT accepts with the same claims, and
    anything else is left to PyJWT."""
    from datetime import timedelta
    from uuid import uuid4

    from reelwire.domain.errors import Unauthorized
    from reelwire.domain.tokens import ACCESS, TokenCodec

    def new_codec() -> TokenCodec:
        return TokenCodec(
            TEST_SECRET,
            issuer="reelwire",
            audience="reelwire-api",
            access_ttl=timedelta(minutes=15),
            refresh_ttl=timedelta(days=7),
        )

    codec = new_codec()
    good = codec.issue(ACCESS, uuid4(), uuid4(), {"role": "admin"}).token
    claims = _claims(good)
    now = int(time.time())
    forged = {
        "good": good,
        "re-signed": _forge(claims),
        "expired": _forge(claims | {"exp": now - 6}),
        "expired within the leeway": _forge(claims | {"exp": now - 3}),
        "issued in the future": _forge(claims | {"iat": now + 60}),
        "not before later": _forge(claims | {"nbf": now + 60}),
        "not before now": _forge(claims | {"nbf": now}),
        "another issuer": _forge(claims | {"iss": "else"}),
        "another audience": _forge(claims | {"aud": "else"}),
        "audiences": _forge(claims | {"aud": ["else", "reelwire-api"]}),
        "float expiry": _forge(claims | {"exp": now + 60.5}),
        "numeric subject": _forge(claims | {"sub": 5}),
        "numeric jti": _forge(claims | {"jti": 5}),
        "a refresh type": _forge(claims | {"typ": "refresh"}),
        "another key": _forge(claims, key="another-secret-that-is-also-long-enough-xx"),
        "HS512": _forge(claims, alg="HS512"),
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "four parts": good + ".x",
        **{
            f"without {name}": _forge({k: v for k, v in claims.items() if k != name})
            for name in claims
        },
    }
    slow = new_codec()
    slow._decode_ours = lambda token, token_type: None  # type: ignore[method-assign]
    fast_ones = set()
    for name, token in forged.items():
        fast = codec._decode_ours(token, ACCESS)
        try:
            judged = slow._decode(token, ACCESS)
        except Unauthorized:
            judged = None
        if fast is not None:
            fast_ones.add(name)
            assert judged == fast, name
    valid = {"good", "re-signed", "expired within the leeway", "not before now"}
    optional = {"without role", "without user_id"}  # claims no check requires
    assert fast_ones == valid | optional
