"""Hostile input over real HTTP and WebSocket: text PostgreSQL cannot store, malformed multipart
bodies, the tokens of deleted accounts, oversized images. None of it may reach a 5xx."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from yarl import URL

from reelwire.domain import tokens
from tests.conftest import Api, Catalog
from tests.wsclient import Socket

NUL = "a\x00b"


async def _answer(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    return resp.status, await resp.json()


def _assert_refused(status: int, body: dict[str, Any], field: str) -> None:
    assert status == 400, body
    assert body["error"]["code"] == "VALIDATION_ERROR", body
    assert field in body["error"]["field_errors"], body
    assert "NUL" in " ".join(body["error"]["field_errors"][field])


# --- text PostgreSQL cannot store ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("q=%00", "q"),
        ("category=%00", "category"),
        ("tags=a%00b", "tags"),
        ("cursor=%00", "cursor"),
    ],
)
async def test_nul_in_a_query_parameter_is_a_400_naming_it(
    api: Api, query: str, field: str
) -> None:
    status, body = await _answer(await api.client.get(f"/api/videos?{query}"))
    _assert_refused(status, body, field)


async def test_nul_in_other_query_models_is_a_400(api: Api) -> None:
    user = await api.register()
    status, body = await _answer(
        await api.client.get("/api/posts?communityId=%00", headers=api.auth(user["token"]))
    )
    _assert_refused(status, body, "communityId")
    # a query model of another module (not derived from Input) is held to the same rule
    status, body = await _answer(
        await api.client.get("/api/v1/videos/s3-videos?search=%00", headers=api.auth(user["token"]))
    )
    _assert_refused(status, body, "search")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"login": NUL, "password": "Passw0rd!"}, "login"),
        ({"username": "ann", "password": "Pass\x00w0rd!"}, "password"),
        ({"email": "a\x00@example.com", "password": "Passw0rd!"}, "email"),
    ],
)
async def test_nul_in_login_is_a_400(api: Api, body: dict[str, Any], field: str) -> None:
    status, answer = await _answer(await api.client.post("/api/auth/login", json=body))
    _assert_refused(status, answer, field)


@pytest.mark.parametrize("field", ["username", "email", "password", "display_name"])
async def test_nul_in_register_is_a_400(api: Api, field: str) -> None:
    body = {"username": "ann", "email": "ann@example.com", "password": "Passw0rd!"}
    body[field] = "Ann\x00Passw0rd"
    status, answer = await _answer(await api.client.post("/api/auth/register", json=body))
    _assert_refused(status, answer, field)


async def test_nul_in_profile_fields_is_a_400(api: Api) -> None:
    user = await api.register()
    for field in ("display_name", "bio", "avatar_url"):
        value = "https://x.example/\x00" if field == "avatar_url" else NUL
        resp = await api.client.patch(
            "/api/users/me", json={field: value}, headers=api.auth(user["token"])
        )
        status, body = await _answer(resp)
        _assert_refused(status, body, field)


async def test_nul_in_comments_posts_and_communities_is_a_400(api: Api, catalog: Catalog) -> None:
    user = await api.register()
    video = await catalog.video(user["id"])
    auth = api.auth(user["token"])
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", f"/api/videos/{video}/comments", {"content": NUL}, "content"),
        (
            "POST",
            f"/api/videos/{video}/comments",
            {"content": "x", "parent_comment_id": NUL},
            "parent_comment_id",
        ),
        ("PATCH", f"/api/videos/{video}", {"title": NUL}, "title"),
        ("PATCH", f"/api/videos/{video}", {"tags": ["ok", NUL]}, "tags"),
        ("POST", "/api/posts", {"content": NUL}, "content"),
        ("POST", "/api/communities", {"name": NUL}, "name"),
        ("POST", "/api/communities", {"name": "ok", "description": NUL}, "description"),
        (
            "POST",
            "/api/videos/upload-url",
            {"filename": NUL, "fileSize": 10, "mimeType": "video/mp4"},
            "filename",
        ),
    ]
    for method, path, body, field in cases:
        status, answer = await _answer(
            await api.client.request(method, path, json=body, headers=auth)
        )
        _assert_refused(status, answer, field)
    status, answer = await _answer(
        await api.client.put(f"/api/comments/{UUID(int=1)}", json={"content": NUL}, headers=auth)
    )
    _assert_refused(status, answer, "content")


async def test_nul_in_multipart_text_fields_is_a_400(api: Api) -> None:
    user = await api.register()
    for path, field in (
        ("/api/videos", "title"),
        ("/api/videos", "description"),
        ("/api/clips/upload", "caption"),
        ("/api/clips/upload", "video_id"),
        ("/api/v1/upload/video", "title"),
    ):
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field(field, NUL)
        resp = await api.client.post(path, data=form, headers=api.auth(user["token"]))
        status, body = await _answer(resp)
        _assert_refused(status, body, field)


async def test_nul_in_websocket_commands_is_a_validation_error(api: Api, catalog: Catalog) -> None:
    user = await api.register()
    video = await catalog.video(user["id"])
    socket = await Socket.open(api.client, headers=api.auth(user["token"]))
    try:
        for kind, fields, field in (
            ("comment", {"video_id": video, "content": NUL}, "content"),
            ("like", {"video_id": f"{video}\x00", "action": "like"}, "video_id"),
            ("view", {"video_id": video, "quality": NUL}, "quality"),
            ("subscribe", {"channel": f"video:{video}\x00"}, "channel"),
            ("auth", {"token": NUL}, "token"),
        ):
            reply = await socket.call(kind, **fields)
            assert reply["type"] == "error", reply
            assert reply["error"]["code"] == "VALIDATION_ERROR", reply
            assert field in reply["error"]["field_errors"], reply
        # the socket is still usable afterwards
        reply = await socket.call("comment", video_id=video, content="fine")
        assert reply["type"] == "ack", reply
    finally:
        await socket.ws.close()


async def test_the_openapi_document_states_the_rule(api: Api) -> None:
    spec = await (await api.client.get("/api/openapi.json")).json()
    params = {p["name"]: p for p in spec["paths"]["/api/videos"]["get"]["parameters"]}
    assert params["q"]["schema"]["anyOf"][0]["pattern"] == "^[^\\x00]*$"
    post = spec["components"]["schemas"]["PostBody"]["properties"]["content"]
    assert post["pattern"] == "^[^\\x00]*$"
    comment = spec["components"]["schemas"]["CommentBody"]["properties"]["content"]
    assert "\\x00" in comment["pattern"]  # not blank, and no NUL


# --- malformed multipart -----------------------------------------------------------------------

UPLOAD_ROUTES = ["/api/videos", "/api/clips/upload", "/api/v1/upload/video"]
FILE_FIELD = {
    "/api/videos": "video_file",
    "/api/clips/upload": "clip",
    "/api/v1/upload/video": "file",
}


def _malformed(path: str) -> dict[str, tuple[bytes, str]]:
    name = FILE_FIELD[path]
    boundary = "XyZ"
    ctype = f"multipart/form-data; boundary={boundary}"
    good_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="a.mp4"\r\n\r\n'
    ).encode()
    return {
        "header without a colon": (
            f"--{boundary}\r\nContent-Disposition form-data\r\n\r\nx\r\n".encode()
            + f"--{boundary}--\r\n".encode(),
            ctype,
        ),
        "no boundary": (good_head + b"data\r\n--XyZ--\r\n", "multipart/form-data"),
        "200 KB part header": (
            f"--{boundary}\r\nX-Long: ".encode()
            + b"a" * 200_000
            + f"\r\n\r\nx\r\n--{boundary}--\r\n".encode(),
            ctype,
        ),
        "truncated body": (good_head + b"\x00" * 1000, ctype),
        "no starting boundary": (b"garbage\r\n" * 10, ctype),
    }


@pytest.mark.parametrize("path", UPLOAD_ROUTES)
async def test_malformed_multipart_is_a_400(api: Api, path: str) -> None:
    user = await api.register()
    for what, (body, ctype) in _malformed(path).items():
        resp = await api.client.post(
            path, data=body, headers={**api.auth(user["token"]), "Content-Type": ctype}
        )
        status, answer = await _answer(resp)
        assert status == 400, (what, answer)
        assert answer["error"]["code"] == "VALIDATION_ERROR", (what, answer)
        assert "multipart" in answer["error"]["message"].lower(), (what, answer)


# --- deleted accounts ------------------------------------------------------------------------


async def _everything_refuses(api: Api, token: str, other: str, video: str) -> None:
    auth = api.auth(token)
    calls = [
        ("POST", f"/api/videos/{video}/like", {"action": "like"}),
        ("POST", f"/api/users/{other}/follow", None),
        ("POST", "/api/posts", {"content": "hello"}),
        ("POST", "/api/communities", {"name": "club"}),
        ("POST", f"/api/videos/{video}/comments", {"content": "hi"}),
        (
            "POST",
            "/api/videos/upload-url",
            {"filename": "a.mp4", "fileSize": 1000, "mimeType": "video/mp4"},
        ),
        ("POST", "/api/ws/ticket", None),
        ("GET", "/api/auth/me", None),
        ("PATCH", "/api/users/me", {"bio": "x"}),
    ]
    for method, path, body in calls:
        resp = await api.client.request(method, path, json=body, headers=auth)
        status, answer = await _answer(resp)
        assert status == 401, (method, path, answer)
        assert answer["error"]["code"] == "UNAUTHORIZED"
    socket = await Socket.open(api.client)
    try:
        reply = await socket.call("auth", token=token)
        assert reply["type"] == "error" and reply["error"]["code"] == "UNAUTHORIZED", reply
    finally:
        await socket.ws.close()
    resp = await api.client.get(
        "/ws",
        headers={
            **auth,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZQ==",
        },
    )
    assert resp.status == 401


async def test_a_deleted_accounts_token_is_401_everywhere(
    api: Api, db: Any, catalog: Catalog
) -> None:
    owner = await api.register()
    gone = await api.register()
    video = await catalog.video(owner["id"])
    # the token is verified and cached, and the account seen to exist
    assert (await api.client.get("/api/auth/me", headers=api.auth(gone["token"]))).status == 200
    ticket = await (await api.client.post("/api/ws/ticket", headers=api.auth(gone["token"]))).json()
    await db.execute("DELETE FROM users WHERE id = $1", UUID(gone["id"]))
    # within the short time an existing account is believed, writes still answer 401
    resp = await api.client.post(
        f"/api/videos/{video}/like", json={"action": "like"}, headers=api.auth(gone["token"])
    )
    assert resp.status in (401, 404), await resp.text()
    resp = await api.client.get(
        "/ws",
        params={"ticket": ticket["ticket"]},
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZQ==",
        },
    )
    assert resp.status == 401
    await asyncio.sleep(tokens.ACCOUNT_CHECK_SECONDS + 0.1)
    await _everything_refuses(api, gone["token"], owner["id"], video)


async def test_a_write_racing_the_deletion_is_401_not_500(
    api: Api, db: Any, catalog: Catalog
) -> None:
    owner = await api.register()
    gone = await api.register()
    video = await catalog.video(owner["id"])
    auth = api.auth(gone["token"])
    assert (await api.client.get("/api/auth/me", headers=auth)).status == 200
    await db.execute("DELETE FROM users WHERE id = $1", UUID(gone["id"]))
    # the account is still believed to exist here: the write hits the foreign key
    for method, path, body in (
        ("POST", f"/api/videos/{video}/like", {"action": "like"}),
        ("POST", f"/api/users/{owner['id']}/follow", None),
        ("POST", "/api/posts", {"content": "hello"}),
    ):
        resp = await api.client.request(method, path, json=body, headers=auth)
        assert resp.status == 401, (path, await resp.text())


async def test_a_live_sockets_account_deleted_gets_unauthorized_not_a_server_error(
    api: Api, db: Any, catalog: Catalog
) -> None:
    owner = await api.register()
    gone = await api.register()
    video = await catalog.video(owner["id"])
    sock = await Socket.open(api.client, headers=api.auth(gone["token"]))
    await db.execute("DELETE FROM users WHERE id = $1", UUID(gone["id"]))
    for kind, fields in (
        ("like", {"video_id": video, "action": "like"}),
        ("comment", {"video_id": video, "content": "still here?"}),
    ):
        reply = await sock.call(kind, **fields)
        assert reply["type"] == "error", reply
        assert reply["error"]["code"] in ("UNAUTHORIZED", "NOT_FOUND"), reply
    await sock.ws.close()


async def test_a_disabled_account_is_refused_everywhere_until_enabled(
    api: Api, db: Any, catalog: Catalog
) -> None:
    admin = await api.admin(db)
    owner = await api.register()
    user = await api.register()
    video = await catalog.video(owner["id"])
    auth = api.auth(user["token"])
    sock = await Socket.open(api.client, headers=auth)
    assert (await api.client.get("/api/auth/me", headers=auth)).status == 200

    resp = await api.client.post(f"/api/users/{owner['id']}/disable", headers=auth)
    assert resp.status == 403  # only admins
    resp = await api.client.post(
        f"/api/users/{user['id']}/disable", headers=api.auth(admin["token"])
    )
    assert (resp.status, (await resp.json())["disabled"]) == (200, True)
    await asyncio.sleep(tokens.ACCOUNT_CHECK_SECONDS + 0.1)
    await _everything_refuses(api, user["token"], owner["id"], video)
    reply = await sock.call("like", video_id=video, action="like")
    assert reply["type"] == "error" and reply["error"]["code"] == "UNAUTHORIZED", reply
    await sock.ws.close()
    login = {"login": user["user"]["username"], "password": "Passw0rd!"}
    resp = await api.client.post("/api/auth/login", json=login)
    answer = await resp.json()
    assert resp.status == 401 and answer["error"]["message"] == "Account is disabled", answer
    resp = await api.client.post(
        "/api/auth/refresh", json={"refresh_token": user["tokens"]["refresh_token"]}
    )
    assert resp.status == 401
    # What they posted stays; enabled again, they log in anew.
    resp = await api.client.delete(
        f"/api/users/{user['id']}/disable", headers=api.auth(admin["token"])
    )
    assert (resp.status, (await resp.json())["disabled"]) == (200, False)
    resp = await api.client.post("/api/auth/login", json=login)
    assert resp.status == 200
    token = (await resp.json())["tokens"]["access_token"]
    assert (await api.client.get("/api/auth/me", headers=api.auth(token))).status == 200


# --- image pixel limit -----------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width`x`height` (its pixel data is one short row)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x00" * 3 * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def test_an_image_clip_over_the_pixel_limit_is_refused_before_decoding(
    api: Api, db: Any
) -> None:
    user = await api.register()
    form = aiohttp.FormData()
    form.add_field(
        "clip", io.BytesIO(_png(16000, 16000)), filename="huge.png", content_type="image/png"
    )
    resp = await api.client.post("/api/clips/upload", data=form, headers=api.auth(user["token"]))
    status, body = await _answer(resp)
    assert status == 400, body
    assert "MAX_IMAGE_PIXELS" in body["error"]["message"], body
    assert "16000x16000" in body["error"]["message"], body
    assert body["error"]["details"]["max_image_pixels"] == 40_000_000
    assert await db.fetchval("SELECT count(*) FROM clips") == 0


async def test_the_pixel_limit_is_a_setting(make_api: Any) -> None:
    api = await make_api(max_image_pixels=100 * 100)
    user = await api.register()
    form = aiohttp.FormData()
    form.add_field(
        "clip", io.BytesIO(_png(200, 200)), filename="small.png", content_type="image/png"
    )
    resp = await api.client.post("/api/clips/upload", data=form, headers=api.auth(user["token"]))
    status, body = await _answer(resp)
    assert status == 400 and "10,000 pixels" in body["error"]["message"], body


async def test_a_custom_thumbnail_over_the_pixel_limit_is_refused(
    api: Api, catalog: Catalog
) -> None:
    user = await api.register()
    video = await catalog.video(user["id"])
    image = _png(16000, 16000)
    resp = await api.client.post(
        "/api/upload/thumbnail/request",
        json={
            "video_id": video,
            "filename": "t.png",
            "file_size": len(image),
            "content_type": "image/png",
        },
        headers=api.auth(user["token"]),
    )
    grant = await resp.json()
    assert resp.status == 200, grant
    resp = await api.client.put(
        URL(grant["upload_url"]).path, data=image, headers={"Content-Type": "image/png"}
    )
    status, body = await _answer(resp)
    assert status == 400, body
    assert "MAX_IMAGE_PIXELS" in body["error"]["message"], body
    resp = await api.client.get(f"/api/videos/{video}", headers=api.auth(user["token"]))
    assert not ((await resp.json()).get("thumbnail_url") or "").endswith("custom-thumbnail")
