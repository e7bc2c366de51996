"""HTTP hygiene: the error envelope everywhere, headers, CORS, trailing slashes, health, OpenAPI."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from http_api.middlewares import SECURITY_HEADERS
from http_api.routes import route_table
from reelwire.app import create_app
from reelwire.embedded import EmbeddedRedis
from reelwire.settings import Settings
from tests.conftest import Api, Backends, database_named, make_settings

pytestmark = pytest.mark.usefixtures("reset")


def assert_envelope(body: dict[str, Any], code: str) -> None:
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_unknown_route_is_enveloped_404_with_security_headers(client: Any) -> None:
    resp = await client.get("/api/does-not-exist")
    assert resp.status == 404
    assert_envelope(await resp.json(), "NOT_FOUND")
    for name, value in SECURITY_HEADERS.items():
        assert resp.headers[name] == value
    assert resp.headers["X-Request-ID"]


async def test_wrong_method_is_enveloped_405_with_allow(client: Any) -> None:
    resp = await client.delete("/api/auth/login")
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert_envelope(await resp.json(), "METHOD_NOT_ALLOWED")


async def test_malformed_json_is_400(client: Any) -> None:
    resp = await client.post(
        "/api/auth/login", data=b'{"login": ', headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    body = await resp.json()
    assert_envelope(body, "VALIDATION_ERROR")
    assert body["error"]["message"] == "Malformed JSON body"


async def test_non_object_json_is_400(client: Any) -> None:
    resp = await client.post("/api/auth/login", json=["login", "password"])
    assert resp.status == 400
    assert (await resp.json())["error"]["message"] == "Request body must be a JSON object"


async def test_wrong_content_type_is_415(client: Any) -> None:
    resp = await client.post(
        "/api/auth/login",
        data="login=a&password=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 415
    assert_envelope(await resp.json(), "UNSUPPORTED_MEDIA_TYPE")


async def test_missing_body_is_400(client: Any) -> None:
    resp = await client.post("/api/auth/login")
    assert resp.status == 400
    assert (await resp.json())["error"]["message"] == "Request body is required"


async def test_over_large_body_is_413(client: Any, settings: Settings) -> None:
    payload = b'{"login": "' + b"x" * (settings.max_json_bytes + 10) + b'"}'
    resp = await client.post(
        "/api/auth/login", data=io.BytesIO(payload), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413
    body = await resp.json()
    assert_envelope(body, "PAYLOAD_TOO_LARGE")
    assert body["error"]["details"] == {"max_bytes": settings.max_json_bytes}


async def test_unexpected_failure_is_500_with_request_id_and_no_trace(
    aiohttp_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    app.router.add_get("/api/test-broken", broken)
    client = await aiohttp_client(app)
    resp = await client.get("/api/test-broken", headers={"X-Request-ID": "trace-me-123"})
    assert resp.status == 500
    text = await resp.text()
    assert "secret internal detail" not in text and "Traceback" not in text
    body = await resp.json()
    assert_envelope(body, "SERVER_ERROR")
    assert body["error"]["details"] == {"request_id": "trace-me-123"}
    assert resp.headers["X-Request-ID"] == "trace-me-123"
    assert "trace-me-123" in caplog.text and "secret internal detail" in caplog.text


async def test_request_id_is_echoed_or_generated(client: Any) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    generated = resp.headers["X-Request-ID"]
    assert generated != "bad id\twith spaces" and len(generated) == 32
    other = (await client.get("/healthz")).headers["X-Request-ID"]
    assert other != generated


async def test_trailing_slash_answers_like_its_absence(api: Api) -> None:
    user = await api.register("slashy")
    headers = api.auth(user["token"])
    for path in ("/api/auth/me", f"/api/users/{user['id']}", f"/api/users/{user['id']}/followers"):
        plain = await api.client.get(path, headers=headers)
        slashed = await api.client.get(path + "/", headers=headers)
        assert plain.status == slashed.status == 200
        assert (await plain.json()) == (await slashed.json())
    resp = await api.client.post(
        "/api/auth/login/", json={"username": "slashy", "password": "Passw0rd!"}
    )
    assert resp.status == 200


async def test_api_root_health_and_readiness(client: Any) -> None:
    root = await (await client.get("/api/")).json()
    assert root["name"] == "reelwire" and root["version"]
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"postgres": "ok", "redis": "ok", "workers": "0"}


async def test_readyz_is_503_while_postgres_is_unreachable(
    aiohttp_client: Any, backends: Backends, tmp_path: Path
) -> None:
    name = f"readyz_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(backends.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    db_url = database_named(backends.database_url, name)
    try:
        client = await aiohttp_client(
            create_app(make_settings(backends, tmp_path, database_url=db_url))
        )
        assert (await client.get("/readyz")).status == 200
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503
        assert body["status"] == "unavailable"
        assert body["checks"]["postgres"].startswith("unavailable")
        assert body["checks"]["redis"] == "ok"
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert (await client.get("/readyz")).status == 200
        await client.close()
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_readyz_is_503_while_redis_is_down(
    aiohttp_client: Any, backends: Backends, tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "r", durable=False)
    redis.start()
    try:
        client = await aiohttp_client(
            create_app(make_settings(backends, tmp_path, redis_url=redis.url))
        )
        assert (await client.get("/readyz")).status == 200
        redis.kill()
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503
        assert body["checks"]["redis"].startswith("unavailable")
        assert body["checks"]["postgres"] == "ok"
        redis.start()
        assert (await client.get("/readyz")).status == 200
    finally:
        redis.stop()


async def test_while_redis_is_down_requests_work_and_what_needs_it_is_503_not_500(
    aiohttp_client: Any, backends: Backends, tmp_path: Path
) -> None:
    redis = EmbeddedRedis(tmp_path / "r", durable=False)
    redis.start()
    try:
        client = await aiohttp_client(
            create_app(make_settings(backends, tmp_path, redis_url=redis.url))
        )
        user = await Api(client).register("during_outage")
        redis.kill()
        resp = await client.get("/api/auth/me", headers=Api.auth(user["token"]))
        assert resp.status == 200  # the session is checked in PostgreSQL meanwhile
        # A socket ticket lives in Redis only.
        resp = await client.post("/api/ws/ticket", headers=Api.auth(user["token"]))
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert_envelope(await resp.json(), "SERVICE_UNAVAILABLE")
    finally:
        redis.stop()


async def test_a_redis_outage_is_logged_once_not_every_flush(
    aiohttp_client: Any, backends: Backends, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = EmbeddedRedis(tmp_path / "r", durable=False)
    redis.start()
    try:
        settings = make_settings(backends, tmp_path, redis_url=redis.url, view_flush_ms=100)
        await aiohttp_client(create_app(settings))
        caplog.set_level("INFO", logger="reelwire.app")
        caplog.clear()
        redis.kill()
        await asyncio.sleep(2)  # some 20 flushes fail meanwhile
        redis.start()
        for _ in range(100):
            await asyncio.sleep(0.1)
            flusher = [r for r in caplog.records if r.name == "reelwire.app"]
            messages = [r.getMessage() for r in flusher]
            if "flushing views again" in messages:
                break
        assert len([m for m in messages if m.startswith("flushing views paused")]) == 1, messages
        assert not [r for r in flusher if r.exc_info], messages
        assert "flushing views again" in messages, messages
    finally:
        redis.stop()


async def test_cors_allows_configured_origins_only(
    aiohttp_client: Any, backends: Backends, tmp_path: Path
) -> None:
    settings = make_settings(backends, tmp_path, cors_origins=("https://app.example.com",))
    client = await aiohttp_client(create_app(settings))
    preflight = await client.options(
        "/api/auth/login",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Authorization",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    simple = await client.get("/api/", headers={"Origin": "https://app.example.com"})
    assert simple.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "X-Request-ID" in simple.headers["Access-Control-Expose-Headers"]
    foreign = await client.get("/api/", headers={"Origin": "https://evil.example.net"})
    assert "Access-Control-Allow-Origin" not in foreign.headers
    refused = await client.options(
        "/api/auth/login",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status == 403


def _concrete(path: str) -> str:
    """A route path with every parameter filled in (a UUID, or a key for /media)."""
    path = re.sub(r"\{key:[^}]*\}", "videos/00000000-0000-0000-0000-000000000001/hls/a.ts", path)
    return re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000001", path)


async def test_cors_preflight_for_every_route_and_method(
    aiohttp_client: Any, backends: Backends, tmp_path: Path
) -> None:
    """Built from the route table: each (path, method), with and without a trailing slash."""
    allowed = "https://app.example.com"
    settings = make_settings(backends, tmp_path, cors_origins=(allowed, "http://localhost:3000"))
    client = await aiohttp_client(create_app(settings))
    pairs = [(r.path, r.method) for r in route_table().routes]
    assert len(pairs) > 50
    checked = 0
    for path, method in pairs:
        for concrete in {_concrete(path), _concrete(path).rstrip("/") + "/"}:
            asked = {
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "Authorization, Content-Type",
            }
            ok = await client.options(concrete, headers={"Origin": allowed, **asked})
            where = f"{method} {concrete}"
            assert ok.status in (200, 204), (where, ok.status, await ok.text())
            allow_origin = ok.headers.get("Access-Control-Allow-Origin")
            assert method in ok.headers["Access-Control-Allow-Methods"], where
            assert "authorization" in ok.headers["Access-Control-Allow-Headers"].lower(), where
            assert 600 <= int(ok.headers["Access-Control-Max-Age"]) <= 86400, where
            foreign = await client.options(
                concrete, headers={"Origin": "https://evil.example.net", **asked}
            )
            if path.startswith("/media/"):
                # Media is for players embedded anywhere: any origin may read it, nobody may
                # write it, and it uses no credentials.
                assert allow_origin == "*" and foreign.headers["Access-Control-Allow-Origin"] == "*"
                assert method in ("GET", "HEAD")
            else:
                assert allow_origin == allowed, where
                assert foreign.status == 403, (where, foreign.status)
                assert "Access-Control-Allow-Origin" not in foreign.headers, where
            checked += 1
    assert checked >= 2 * len(pairs) - 2


async def test_cross_origin_write_reaches_the_handler(
    aiohttp_client: Any, backends: Backends, tmp_path: Path
) -> None:
    """The actual request after a preflight carries the origin's grant (a second method on a
    path, which used to be refused)."""
    allowed = "https://app.example.com"
    settings = make_settings(backends, tmp_path, cors_origins=(allowed,))
    api = Api(await aiohttp_client(create_app(settings)))
    user = await api.register()
    resp = await api.client.patch(
        "/api/users/me",
        json={"bio": "from another origin"},
        headers={**api.auth(user["token"]), "Origin": allowed},
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Access-Control-Allow-Origin"] == allowed


async def test_no_cors_headers_when_no_origins_configured(client: Any) -> None:
    resp = await client.get("/api/", headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_openapi_documents_every_registered_route(client: Any) -> None:
    doc = await (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    registered = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "OPTIONS") or path is None or path.startswith("/static"):
            continue
        registered.add((route.method, path.rstrip("/") or "/"))
    missing = registered - documented
    assert not missing, f"routes missing from OpenAPI: {sorted(missing)}"
    assert ("POST", "/api/auth/register") in documented
    register = doc["paths"]["/api/auth/register"]["post"]
    schema_ref = register["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"username", "email", "password"}
    assert schema["additionalProperties"] is False
    assert doc["paths"]["/api/auth/me"]["get"]["security"] == [{"bearerAuth": []}]


async def test_static_default_avatar_is_served(client: Any) -> None:
    resp = await client.get("/static/avatar-default.svg")
    assert resp.status == 200
    assert resp.content_type == "image/svg+xml"


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    user = await api.register("metered")
    await api.client.get(f"/api/users/{user['id']}")
    await api.client.get("/api/nowhere")
    resp = await api.client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert (
        'reelwire_http_requests_total{method="POST",route="/api/auth/register",status="201"} 1.0'
        in text
    )
    assert 'route="/api/users/{user_id}",status="200"' in text
    assert 'route="unmatched",status="404"' in text
    assert user["id"] not in text


async def test_metrics_are_not_public(api: Api, make_api: Any) -> None:
    # Without METRICS_TOKEN: this machine only, and not through a proxy.
    assert (await api.client.get("/metrics")).status == 200
    proxied = await api.client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status == 404
    # With one: the token, from anywhere.
    tokened = await make_api(metrics_token="scrape-me-0123456789")
    assert (await tokened.client.get("/metrics")).status == 404
    wrong = await tokened.client.get("/metrics", headers=Api.auth("nope"))
    assert wrong.status == 404
    right = await tokened.client.get(
        "/metrics", headers={**Api.auth("scrape-me-0123456789"), "X-Forwarded-For": "203.0.113.9"}
    )
    assert right.status == 200 and "reelwire_http_requests_total" in await right.text()
