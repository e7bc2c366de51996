"""A freshly uploaded portrait clip plays in the web app (hls.js in Chromium) before its ladder
is finished, from the start, and goes on playing as the rest arrives."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser import Rig, rig_fixture  # noqa: F401  (the fixture)
from tests.media import make_video
from tests.test_browser import sign_up, tid

pytestmark = pytest.mark.timeout(240, method="thread")

PLAYER = "document.querySelector('[data-testid=\"video-player\"]')"
STATUS = "document.querySelector('[data-testid=\"processing-status\"]')"


@pytest.fixture(scope="module")
def portrait_minute(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("portrait")
    return make_video(root / "portrait.mp4", size="540x960", seconds=60)


async def api_status(rig: Rig, video_id: str, token: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(f"{rig.api}/api/videos/{video_id}") as resp,
    ):
        body: dict[str, Any] = await resp.json()
        return body


async def test_a_portrait_minute_plays_before_its_ladder_is_done(
    rig: Rig, portrait_minute: Path
) -> None:
    page = await rig.page(phone=True)
    await sign_up(page, "vertical")
    token = await page.evaluate("() => window.reelwire.api.accessToken()")
    data = await asyncio.to_thread(portrait_minute.read_bytes)
    form = aiohttp.FormData()
    form.add_field("title", "A minute, upright")
    form.add_field(
        "video_file",
        io.BytesIO(data),
        filename="portrait.mp4",
        content_type="video/mp4",
    )
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.post(f"{rig.api}/api/videos", data=form) as resp,
    ):
        assert resp.status == 201
        video_id = (await resp.json())["id"]

    # Straight to the watch page, as the uploader would open the link.
    await page.goto(f"{rig.app_origin}/#/watch/{video_id}")
    await page.wait_for_selector(f'{tid("processing-status")}[data-status="processing"]')
    await page.evaluate(f"() => {{ const v = {PLAYER}; v.muted = true; }}")
    # Played 2.5 s from the very start while the page still says it is being transcoded.
    try:
        await page.wait_for_function(
            f"""() => {{
              const v = {PLAYER}, s = {STATUS};
              if (v && v.paused && v.readyState >= 2) v.play().catch(() => {{}});
              return v && v.currentTime > 2.5 && v.videoHeight > v.videoWidth && s && !s.hidden
                && s.dataset.status === 'processing' && s.dataset.playable === 'true';
            }}""",
            timeout=90_000,
        )
    except Exception:
        await rig.shot(page, "watch-while-transcoding-failed")
        state = await page.evaluate(
            f"""() => {{ const v = {PLAYER}, s = {STATUS};
              return {{t: v && v.currentTime, w: v && v.videoWidth, h: v && v.videoHeight,
                paused: v && v.paused, ready: v && v.readyState,
                status: s && s.dataset.status, playable: s && s.dataset.playable,
                hidden: s && s.hidden, text: s && s.textContent,
                media: performance.getEntriesByType('resource')
                  .filter(e => e.name.includes('/media/'))
                  .map(e => e.name.split('/hls/')[1])}}; }}"""
        )
        raise AssertionError(
            f"{state}, errors {page.console_errors}, "
            f"server {await api_status(rig, video_id, token)}"
        ) from None
    server_side = await api_status(rig, video_id, token)
    assert server_side["status"] == "processing" and server_side["playable"], server_side
    await rig.shot(page, "watch-while-transcoding")
    started_at = await page.evaluate(
        "() => performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('segment_00000.ts')).length"
    )
    assert started_at >= 1, "played from the first segment"

    # The ladder finishes under the player: the page says so, and playback goes on.
    await page.wait_for_selector(tid("processing-status"), state="hidden", timeout=150_000)
    done = await api_status(rig, video_id, token)
    assert done["status"] == "ready" and done["resolution"] == "540x960"
    assert [q["resolution"] for q in done["qualities"]] == ["360x640", "480x854"]
    now = await page.evaluate(f"() => {PLAYER}.currentTime")
    await page.wait_for_function(f"() => {PLAYER}.currentTime > {now + 2}", timeout=30_000)
    await rig.shot(page, "watch-after-ready")
    assert page.console_errors == []
