"""LOG_FORMAT=json: one JSON object a line, with the request id while a request is served."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from reelwire.logs import JsonFormatter, request_id
from tests.conftest import Backends, Catalog
from tests.test_realtime_processes import server_env
from tests.test_serve import Server


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return parsed


async def test_a_json_serve_logs_json_lines_with_the_request_id(
    tmp_path: Path, backends: Backends, reset: None, catalog: Catalog
) -> None:
    server = Server(tmp_path / "home", server_env(backends, LOG_FORMAT="json"))
    try:
        server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            body = {"username": "logger", "email": "logger@example.com", "password": "Passw0rd!"}
            async with http.post(f"{server.url}/api/auth/register", json=body) as resp:
                data = await resp.json()
                assert resp.status == 201, data
            video = await catalog.video(data["user"]["id"])
            headers = {
                "Authorization": f"Bearer {data['tokens']['access_token']}",
                "X-Request-ID": "trace-0123456789",
            }
            async with http.delete(f"{server.url}/api/videos/{video}", headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers["X-Request-ID"] == "trace-0123456789"
        deadline = time.monotonic() + 10
        while "deleted video" not in server.output() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        entries = json_lines(server.output())
    finally:
        server.stop()
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
    banner = next(e for e in entries if e["message"].startswith("Reelwire "))
    assert banner["level"] == "INFO" and banner["logger"] == "reelwire"
    assert "request_id" not in banner  # not while serving a request
    deleted = next(e for e in entries if e["message"].startswith("deleted video"))
    assert deleted["request_id"] == "trace-0123456789"
    assert deleted["time"].endswith("+00:00")


def test_the_json_formatter_keeps_tracebacks_and_the_request_id() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "reelwire.test", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    token = request_id.set("req-1")
    try:
        entry = orjson.loads(formatter.format(record))
    finally:
        request_id.reset(token)
    assert entry["message"] == "failed x" and entry["level"] == "ERROR"
    assert entry["request_id"] == "req-1"
    assert "ValueError: boom" in entry["exception"]
    assert "\n" not in formatter.format(record)
