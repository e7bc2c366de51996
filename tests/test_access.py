"""Access rules: every route that takes an id, walked with a second user's token.

Each such route must be listed below with what user B may do to user A's things. A route added
without an entry fails the walk, so nobody adds an id route without deciding who may use it.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from http_api.routes import route_table
from tests.conftest import Api, Catalog

# (method, path) -> [(whose resource, body, expected status)]. "A" is the victim user, "V" A's
# public video, "P" A's private video, "CV" A's comment on V, "CP" A's comment on P, "K" A's clip,
# "U" A's resumable upload (every request says `Tus-Resumable: 1.0.0`).
WALK: dict[tuple[str, str], list[tuple[str, Any, int]]] = {
    ("GET", "/api/users/{user_id}"): [("A", None, 200)],
    ("POST", "/api/users/{user_id}/follow"): [("A", None, 200)],  # B's own follow edge
    ("DELETE", "/api/users/{user_id}/follow"): [("A", None, 200)],
    ("GET", "/api/users/{user_id}/followers"): [("A", None, 200)],
    ("GET", "/api/users/{user_id}/following"): [("A", None, 200)],
    ("POST", "/api/users/{user_id}/disable"): [("A", None, 403)],  # admins only
    ("DELETE", "/api/users/{user_id}/disable"): [("A", None, 403)],
    ("GET", "/api/videos/{video_id}"): [("V", None, 200), ("P", None, 404)],
    ("PATCH", "/api/videos/{video_id}"): [("V", {"title": "pwned"}, 403), ("P", {}, 404)],
    ("POST", "/api/videos/{video_id}/like"): [
        ("V", {"action": "like"}, 200),
        ("P", {"action": "like"}, 404),
    ],
    ("POST", "/api/videos/{video_id}/view"): [("V", None, 200), ("P", None, 404)],
    ("DELETE", "/api/videos/{video_id}"): [("V", None, 403), ("P", None, 404)],
    ("GET", "/api/videos/{video_id}/status"): [("V", None, 403), ("P", None, 404)],
    ("GET", "/api/videos/{video_id}/stream"): [("P", None, 404)],
    ("GET", "/api/videos/{video_id}/comments"): [("V", None, 200), ("P", None, 404)],
    ("POST", "/api/videos/{video_id}/comments"): [
        ("V", {"content": "hi"}, 201),
        ("P", {"content": "hi"}, 404),
    ],
    ("POST", "/api/videos/{video_id}/upload-complete"): [("V", None, 403), ("P", None, 404)],
    ("GET", "/api/comments/{comment_id}/replies"): [("CV", None, 200), ("CP", None, 404)],
    ("POST", "/api/comments/{comment_id}/like"): [
        ("CV", {"action": "like"}, 200),
        ("CP", {"action": "like"}, 404),
    ],
    ("PUT", "/api/comments/{comment_id}"): [
        ("CV", {"content": "pwned"}, 403),
        ("CP", {"content": "pwned"}, 404),
    ],
    ("DELETE", "/api/comments/{comment_id}"): [("CV", None, 403), ("CP", None, 404)],
    ("DELETE", "/api/clips/{clip_id}"): [
        ("K", None, 404)
    ],  # Stories API: "not found or unauthorized"
    ("GET", "/api/clips/user/{user_id}"): [("A", None, 200)],
    ("POST", "/api/clips/{clip_id}/view"): [("K", None, 200)],
    ("GET", "/api/clips/{clip_id}/viewers"): [("K", None, 403)],
    ("POST", "/api/clips/{clip_id}/reactions"): [("K", {"emoji": "🔥"}, 200)],
    ("GET", "/api/v1/videos/s3-videos/by-key/{s3_key:.+}"): [("Vkey", None, 404)],
    # the signed URL is the credential; a made-up one is refused
    ("PUT", "/api/uploads/{token}"): [("forged", None, 403)],
    ("HEAD", "/api/uploads/{token}"): [("U", None, 404)],
    ("DELETE", "/api/uploads/{token}"): [("U", None, 404)],
    # not a chunk (no application/offset+octet-stream body); B's real chunk: 404 (test_tus.py)
    ("PATCH", "/api/uploads/{token}"): [("U", None, 415)],
}
TUS = {"Tus-Resumable": "1.0.0"}
# Media files are public by design: their keys are unguessable, as on a CDN (docs/compat.md).
EXEMPT = {("GET", "/media/{key:.+}")}


async def test_a_second_users_token_reaches_nothing_it_should_not(
    api: Api, catalog: Catalog, db: asyncpg.Connection
) -> None:
    a = await api.register("victim")
    b = await api.register("intruder")
    public = await catalog.video(a["id"], title="mine", source_key="videos/x/original")
    private = await catalog.video(a["id"], title="secret", visibility="private")
    comments = {}
    for name, video in (("CV", public), ("CP", private)):
        resp = await api.client.post(
            f"/api/videos/{video}/comments", json={"content": "A's"}, headers=api.auth(a["token"])
        )
        comments[name] = (await resp.json())["id"]
    ids = {
        "A": a["id"],
        "V": public,
        "P": private,
        "K": await catalog.clip(a["id"]),
        "Vkey": "videos/x/original",
        "forged": "eyJub3QiOiJzaWduZWQifQ.AAAA",
        "U": await _upload_of(api, a["token"]),
        **comments,
    }

    id_routes = {(r.method, r.path) for r in route_table().routes if r.path_params}
    assert id_routes - EXEMPT == set(WALK), "classify every id route in WALK"
    for (method, path), cases in WALK.items():
        for whose, body, expected in cases:
            url = path.replace(path[path.index("{") : path.index("}") + 1], ids[whose])
            headers = {**api.auth(b["token"]), **TUS}
            resp = await api.client.request(method, url, json=body, headers=headers)
            assert resp.status == expected, (method, path, whose, await resp.text())

    row = await db.fetchrow("SELECT title, deleted_at FROM videos WHERE id = $1", public)
    assert (row["title"], row["deleted_at"]) == ("mine", None)
    row = await db.fetchrow(
        "SELECT title, deleted_at, visibility FROM videos WHERE id = $1", private
    )
    assert tuple(row) == ("secret", None, "private")
    contents = await db.fetch("SELECT content FROM comments WHERE user_id = $1", a["id"])
    assert [r["content"] for r in contents] == ["A's", "A's"]
    assert await db.fetchval("SELECT count(*) FROM clips WHERE id = $1", ids["K"]) == 1
    kept = "SELECT upload_offset FROM resumable_uploads WHERE id = $1"
    assert await db.fetchval(kept, ids["U"]) == 0  # still there, untouched
    # B's actions that were allowed touched only B's own rows
    assert await db.fetchval("SELECT count(*) FROM comments WHERE user_id = $1", b["id"]) == 1


async def _upload_of(api: Api, token: str) -> str:
    """A resumable upload of the user's, created with tus; its id."""
    headers = {**api.auth(token), **TUS, "Upload-Length": "10"}
    resp = await api.client.post("/api/uploads/", headers=headers)
    assert resp.status == 201, await resp.text()
    return str(resp.headers["Location"]).rsplit("/", 1)[1]
