"""The upload page's resumable upload in a real Chromium (tus-js-client, vendored): in the middle
of the upload the network goes away and every connection is cut (the page talks to the API
through a TCP proxy that tears them down mid-body), then it comes back; the upload goes on from
the bytes the server kept, and the video plays."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser import DESKTOP, Rig, rig_fixture  # noqa: F401  (the fixture)
from tests.media import make_video
from tests.test_browser import sign_up, tid
from tests.tusclient import CuttingProxy

pytestmark = pytest.mark.timeout(240, method="thread")
CHUNK = 8 * 1024 * 1024  # the page's chunk size (http_api/web/resumable.js)
POINT_AT = """(() => {
  const point = () => {
    const meta = document.querySelector('meta[name="reelwire-api"]');
    if (meta) meta.setAttribute('content', PROXY);
    return !!meta;
  };
  if (!point()) {
    const watch = new MutationObserver(() => { if (point()) watch.disconnect(); });
    watch.observe(document, {childList: true, subtree: true});
  }
})()"""
THROTTLE = {"latency": 20, "downloadThroughput": -1, "uploadThroughput": 1 << 20}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(
        tmp_path_factory.mktemp("browser-tus") / "resume.mp4", size="854x480", seconds=20
    )


async def page_through(rig: Rig, proxy: CuttingProxy) -> Any:
    """The web app from its usual origin, with its API base pointed at the proxy."""
    context = await rig.browser.new_context(viewport=DESKTOP)
    rig.contexts.append(context)
    page = await context.new_page()
    page.console_errors = []
    page.on(
        "console",
        lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None,
    )

    # Before any module reads it, the page's API base becomes the proxy.
    await page.add_init_script(POINT_AT.replace("PROXY", json.dumps(proxy.url)))
    await page.goto(rig.app_origin + "/")
    return page


async def test_an_upload_cut_off_midway_resumes_where_the_server_stopped(
    rig: Rig, video: Path
) -> None:
    port = int(rig.api.rsplit(":", 1)[1])
    async with CuttingProxy(("127.0.0.1", port)).running() as proxy:
        page = await page_through(rig, proxy)
        await sign_up(page, "resumer")
        await page.goto(rig.app_origin + "/#/upload")
        await page.wait_for_selector(tid("upload-form"))
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Network.emulateNetworkConditions", {"offline": False, **THROTTLE})
        requests: list[tuple[str, str | None]] = []

        def seen(request: Any) -> None:
            if "/api/uploads" in request.url and request.method != "OPTIONS":
                requests.append((request.method, request.headers.get("upload-offset")))

        page.on("request", seen)
        await page.evaluate(
            """() => {
            window.__states = [];
            const text = document.querySelector('[data-testid="upload-progress-text"]');
            new MutationObserver(() => window.__states.push(text.dataset.state))
              .observe(text, {attributes: true, attributeFilter: ['data-state']});
          }"""
        )
        await page.set_input_files(tid("upload-file"), str(video))
        await page.fill(tid("upload-title"), "Twenty seconds, in two goes")
        await page.click(tid("upload-submit"))
        # A quarter of the first chunk through the proxy (counted there, not by the page's
        # progress bar, which runs ahead of what has arrived by the size of the socket buffers).
        deadline = asyncio.get_running_loop().time() + 30
        while proxy.sent < CHUNK // 4:
            assert asyncio.get_running_loop().time() < deadline, "the upload did not start"
            await asyncio.sleep(0.02)
        # The network goes away, and with it the connection carrying the chunk.
        await cdp.send("Network.emulateNetworkConditions", {"offline": True, **THROTTLE})
        assert proxy.cut_now() >= 1
        await page.wait_for_selector(
            f'{tid("upload-progress-text")}[data-state="offline"]', timeout=30_000
        )
        await rig.shot(page, "upload-offline")
        await asyncio.sleep(1.5)
        await cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        await page.wait_for_selector(f'{tid("transcode-status")}[data-status="processing"]')
        await page.wait_for_selector(tid("video-player"), timeout=120_000)
        await rig.shot(page, "upload-resumed-and-playing")
        states = await page.evaluate("() => window.__states")

    assert "offline" in states and states.index("resuming") > states.index("offline"), states
    methods = [method for method, _ in requests]
    assert methods[0] == "POST" and "HEAD" in methods, requests
    patches = [int(offset or 0) for method, offset in requests if method == "PATCH"]
    # After the cut the upload went on from the bytes the server had kept: not from the start,
    # and not from a chunk boundary.
    assert patches[0] == 0 and any(offset % CHUNK for offset in patches[1:]), requests
    assert not [e for e in page.console_errors if "Content Security Policy" in e]
