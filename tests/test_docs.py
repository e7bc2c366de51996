"""API docs a person reads: /api/docs, the OpenAPI 3.1 document and the generated AsyncAPI
document of the WebSocket protocol, checked against what a live socket really sends."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from realtime import commands
from realtime.schemas import CLIENT_MESSAGES, SERVER_MESSAGES
from tests.conftest import Api, Catalog
from tests.wsclient import Socket

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "http_api" / "web"
# Where the server's messages are written: a `"type": "..."` literal in any of these is a message
# some socket can receive.
SENDERS = [*(ROOT / "reelwire" / "domain").glob("*.py"), ROOT / "realtime" / "hub.py"]
NOT_MESSAGES = {
    "following",  # a follow changing a feed:clips subscription: the hub consumes it
    "video",  # a post's media kind
}


def refs(node: Any) -> list[str]:
    """Every `$ref` in a document."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for key in ref.removeprefix("#/").split("/"):
        node = node[key]
    return node


async def test_docs_page_renders_openapi_with_vendored_swagger_ui(api: Api) -> None:
    resp = await api.client.get("/api/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    # Under `script-src 'self'` nothing inline runs: every script is a file of ours.
    scripts = re.findall(r"<script\b([^>]*)>", page)
    assert scripts and all('src="/app/' in attrs for attrs in scripts)
    assert not re.search(r"\son[a-z]+=", page), "inline event handlers need 'unsafe-inline'"
    assets = re.findall(r'(?:src|href)="(/app/[^"]+)"', page)
    assert "/app/vendor/swagger-ui/swagger-ui-bundle.js" in assets
    assert "/app/docs/docs.js" in assets
    for asset in assets:
        got = await api.client.get(asset)
        assert got.status == 200, asset
    for link in ("/api/openapi.json", "/api/asyncapi.json", 'href="/"'):
        assert link in page
    vendor = WEB / "vendor" / "swagger-ui"
    assert (vendor / "LICENSE").is_file() and "swagger-ui-dist" in (vendor / "VERSION").read_text()
    script = (WEB / "docs" / "docs.js").read_text()
    assert "/api/openapi.json" in script and "/api/asyncapi.json" in script

    root = await (await api.client.get("/api/")).json()
    assert root["docs"] == "/api/docs"


async def test_openapi_is_valid_31_and_every_operation_is_documented(api: Api) -> None:
    doc = await (await api.client.get("/api/openapi.json")).json()
    validate_openapi(doc, cls=OpenAPIV31SpecValidator)
    assert doc["openapi"] == "3.1.0"
    assert doc["externalDocs"]["url"] == "/api/asyncapi.json"
    tags = {tag["name"] for tag in doc["tags"]}
    operation_ids = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary", "").strip(), f"{where} has no summary"
            assert op.get("tags") and set(op["tags"]) <= tags, f"{where} has no known tag"
            errors = {int(code) for code in op["responses"] if int(code) >= 400}
            assert errors, f"{where} documents no errors"
            if path == "/ws":
                continue  # an upgrade: its refusals are plain HTTP statuses
            operation_ids.append(op["operationId"])
            for code in errors:
                body = op["responses"][str(code)]
                assert body["description"]
                schema = body["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, where
            if op.get("security") and op["security"][0] == {"bearerAuth": []}:
                assert 401 in errors, f"{where} takes a token but documents no 401"
            if "requestBody" in op:
                assert 400 in errors, f"{where} takes a body but documents no 400"
            templated = set(re.findall(r"\{([^}]+)\}", path))
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert templated == declared, where
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    for ref in refs(doc):
        resolve(doc, ref)
    html = doc["paths"]["/api/docs"]["get"]["responses"]["200"]["content"]
    assert list(html) == ["text/html"]


async def test_asyncapi_is_generated_from_the_message_models(api: Api) -> None:
    resp = await api.client.get("/api/asyncapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["asyncapi"] == "3.0.0"
    server = doc["servers"]["reelwire"]
    assert server["host"] == f"{api.client.host}:{api.client.port}"
    assert server["protocol"] == "ws" and server["pathname"] == "/ws"

    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert {"video:{video_id}", "user:{user_id}", "feed:clips"} <= addresses
    user_events = set(doc["channels"]["user"]["messages"])
    assert {"new_follower", "clip_viewed", "notification"} <= user_events
    messages = doc["components"]["messages"]
    # Every type the server's code can put on a socket is documented.
    sent = set()
    for source in SENDERS:
        sent |= set(re.findall(r'"type": "([a-z_]+)"', source.read_text()))
    assert sent - NOT_MESSAGES, "no message types found in the sources"
    assert not (sent - NOT_MESSAGES) - set(messages), "undocumented server messages"
    assert set(SERVER_MESSAGES) <= set(messages)

    # Every command the server answers is a `send` operation, with its replies.
    sends = {
        ref["$ref"].rsplit("/", 1)[1]: op
        for op in doc["operations"].values()
        if op["action"] == "send"
        for ref in op["messages"]
    }
    assert set(sends) == set(commands.COMMANDS) == set(CLIENT_MESSAGES)
    subscribe = sends["subscribe"]["reply"]["messages"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in subscribe} == {"subscribed", "error"}
    # An operation's messages belong to its channel; every reference resolves.
    for op in doc["operations"].values():
        channel = op["channel"]["$ref"]
        for ref in op["messages"]:
            assert ref["$ref"].startswith(channel + "/messages/")
            resolve(doc, ref["$ref"])
    for ref in refs(doc):
        resolve(doc, ref)
    subscribe_schema = resolve(doc, messages["subscribe"]["payload"]["$ref"])
    assert set(subscribe_schema["required"]) == {"type", "channel"}


async def test_what_a_live_socket_sends_matches_its_schema(api: Api, catalog: Catalog) -> None:
    doc = await (await api.client.get("/api/asyncapi.json")).json()

    def check(message: dict[str, Any]) -> str:
        payload = doc["components"]["messages"][message["type"]]["payload"]
        schema = {**payload, "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(message)
        return str(message["type"])

    owner, fan = await api.register(), await api.register()
    video = await catalog.video(owner["id"])
    watcher = await Socket.open(api.client)
    seen = {check(watcher.welcome)}
    seen.add(check(await watcher.call("ping")))
    seen.add(check(await watcher.subscribe(f"video:{video}")))
    seen.add(check(await watcher.expect("video_update")))
    seen.add(check(await watcher.call("like", video_id=video, action="like")))  # anonymous
    seen.add(check(await watcher.call("subscribe")))  # no channel: a validation error

    actor = await Socket.open(api.client)
    seen.add(check(await actor.call("auth", token=fan["token"])))
    seen.add(check(await actor.call("like", video_id=video, action="like")))
    seen.add(check(await actor.call("comment", video_id=video, content="a live one")))
    seen.add(check(await watcher.expect("new_comment")))
    seen.add(check(await watcher.until(lambda m: m.get("data", {}).get("comment_count") == 1)))
    seen.add(check(await watcher.call("unsubscribe", channel=f"video:{video}")))

    mine = await Socket.open(api.client, headers=api.auth(owner["token"]))
    check(await mine.subscribe(f"user:{owner['id']}"))
    await api.client.post(f"/api/users/{owner['id']}/follow", headers=api.auth(fan["token"]))
    seen.add(check(await mine.expect("new_follower")))
    clip = await catalog.clip(owner["id"])
    await api.client.post(f"/api/clips/{clip}/view", headers=api.auth(fan["token"]))
    seen.add(check(await mine.expect("clip_viewed")))
    assert seen >= {
        "welcome",
        "pong",
        "subscribed",
        "video_update",
        "error",
        "ack",
        "new_comment",
        "unsubscribed",
        "new_follower",
        "clip_viewed",
    }
