"""A real Chromium (the system's, driven by Playwright) against a real `reelwire serve`.

The web app is loaded from a second origin (127.0.0.2, allowed by CORS_ORIGINS), exactly as a
separately hosted front end would be, so every write in the browser suite crosses origins; a
third origin (127.0.0.3) is not allowed. Screenshots of each page go to test-artifacts/browser/.

Without Chromium the suite is skipped with a loud line; under CI=true that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from http_api.webapp import WEB_DIR
from tests.conftest import TEST_SECRET, Backends
from tests.test_serve import Server

ARTIFACTS = Path(os.environ.get("REELWIRE_ARTIFACTS", "test-artifacts")) / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def chromium_path() -> str | None:
    """CHROMIUM_PATH, else a Chromium on PATH."""
    configured = os.environ.get("CHROMIUM_PATH")
    if configured and Path(configured).exists():
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser, or a loud skip (a failure under CI=true)."""
    path = chromium_path()
    if path is None:
        message = (
            "!!! BROWSER TESTS SKIPPED: no Chromium found. Install it (Debian/Ubuntu: "
            "apt-get install chromium) or set CHROMIUM_PATH; scripts/test installs it when "
            "run as root on Debian/Ubuntu."
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def _front_end(host: str, api_base: str) -> tuple[web.AppRunner, str]:
    """The web app's own files from another origin, pointed at the API by its meta tag."""
    index = (WEB_DIR / "index.html").read_text()
    marker = '<meta name="reelwire-api" content="">'
    assert marker in index, "index.html must carry an empty reelwire-api meta tag"
    page = index.replace(marker, f'<meta name="reelwire-api" content="{api_base}">')

    async def root(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_static("/app", WEB_DIR)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port(host)
    await web.TCPSite(runner, host, port).start()
    return runner, f"http://{host}:{port}"


@dataclass
class Rig:
    """The server, the two front-end origins and the browser."""

    server: Server
    api: str
    app_origin: str
    foreign_origin: str
    browser: Any
    contexts: list[Any] = field(default_factory=list)

    async def page(self, *, origin: str | None = None, phone: bool = False) -> Any:
        """A page in a fresh browser context (its own storage: another person)."""
        context = await self.browser.new_context(viewport=PHONE if phone else DESKTOP)
        self.contexts.append(context)
        page = await context.new_page()
        page.console_errors = []
        page.on(
            "console",
            lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        await page.goto((origin or self.app_origin) + "/")
        return page

    @staticmethod
    async def shot(page: Any, name: str) -> Path:
        """A screenshot kept as a test artifact."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=False)
        return path


@pytest.fixture(name="rig")
async def rig_fixture(tmp_path: Path, backends: Backends, reset: None) -> AsyncIterator[Rig]:
    """A running Reelwire (inline transcoder, real limits) and a Chromium."""
    executable = require_chromium()
    from playwright.async_api import async_playwright

    app_host, foreign_host = "127.0.0.2", "127.0.0.3"
    port = _free_port("127.0.0.1")
    api = f"http://127.0.0.1:{port}"
    front, app_origin = await _front_end(app_host, api)
    foreign, foreign_origin = await _front_end(foreign_host, api)
    server = Server(
        tmp_path / "home",
        {
            "DATABASE_URL": backends.database_url,
            "REDIS_URL": backends.redis_url,
            "JWT_SECRET_KEY": TEST_SECRET,
            "PORT": str(port),
            "INLINE_WORKER": "true",
            "TRANSCODE_CONCURRENCY": "2",
            "CORS_ORIGINS": app_origin,
            "RATE_LIMIT_AUTH": "300/min",
        },
        port=port,
    )
    try:
        server.wait_healthy()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS
            )
            rig = Rig(server, api, app_origin, foreign_origin, browser)
            try:
                yield rig
            finally:
                for context in rig.contexts:
                    await context.close()
                await browser.close()
    finally:
        server.stop()
        await front.cleanup()
        await foreign.cleanup()
