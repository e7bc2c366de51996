"""The web app in a real Chromium against a real server, as people use it.

Every page is loaded from another origin than the API's (see tests/browser.py), so each write
here (sign up, sign in, upload, like, comment, reply, follow, story, reaction) is a
cross-origin request a browser had to be allowed to make.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser import Rig, rig_fixture  # noqa: F401  (the fixture)
from tests.media import make_video

# A browser that hangs must not hang CI: past this the run is stopped with every stack printed.
pytestmark = pytest.mark.timeout(240, method="thread")

PASSWORD = "Passw0rd!x"


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser-media")
    from tests.media import ffmpeg

    image = root / "story.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x1280:duration=1", "-frames:v", "1", str(image))
    return {
        "long": make_video(root / "watch.mp4", size="854x480", seconds=20),
        "short": make_video(root / "short.mp4", size="854x480", seconds=8),
        "image": image,
    }


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


async def sign_up(page: Any, name: str) -> None:
    """Create an account through the register form; lands signed in."""
    await page.goto(page.url.split("#")[0] + "#/register")
    await page.fill(tid("register-username"), name)
    await page.fill(tid("register-email"), f"{name}@example.com")
    await page.fill(tid("register-password"), PASSWORD)
    await page.click(tid("register-submit"))
    await page.wait_for_selector(tid("nav-logout"), timeout=10_000)


async def sign_in(page: Any, name: str) -> None:
    await page.goto(page.url.split("#")[0] + "#/login")
    await page.fill(tid("login-identifier"), name)
    await page.fill(tid("login-password"), PASSWORD)
    await page.click(tid("login-submit"))
    await page.wait_for_selector(tid("nav-logout"), timeout=10_000)


async def api_user(rig: Rig, name: str) -> dict[str, Any]:
    """A user made over REST (for the other side of a scenario)."""
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{rig.api}/api/auth/register", json=body) as resp,
    ):
        data = await resp.json()
        assert resp.status == 201, data
    return {"id": data["user"]["id"], "token": data["tokens"]["access_token"], "name": name}


async def api_ready_video(rig: Rig, user: dict[str, Any], path: Path, title: str) -> str:
    """A video uploaded over REST and transcoded; returns its id."""
    headers = {"Authorization": f"Bearer {user['token']}"}
    data = await asyncio.to_thread(path.read_bytes)
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("title", title)
        form.add_field("video_file", io.BytesIO(data), filename=path.name)
        async with http.post(f"{rig.api}/api/videos", data=form, headers=headers) as resp:
            body = await resp.json()
            assert resp.status == 201, body
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            async with http.get(f"{rig.api}/api/videos/{body['id']}", headers=headers) as resp:
                video = await resp.json()
            if video["status"] == "ready":
                return str(body["id"])
            assert video["status"] != "failed", video
            await asyncio.sleep(0.3)
    raise AssertionError("video not ready in 90 s")


async def watch_together(rig: Rig, video: str, pages: tuple[Any, ...], ready: str) -> None:
    """Open the video's watch page in each of `pages` (live, with `ready` shown) and wait until
    the last one counts every page as watching."""
    for page in pages:
        await page.goto(f"{rig.app_origin}/#/watch/{video}")
        await page.wait_for_selector(f'{tid("connection-status")}[data-state="open"]')
        await page.wait_for_selector(ready)
    await pages[-1].wait_for_function(
        f"() => document.querySelector('[data-testid=\"viewer-count\"]').textContent"
        f".includes('{len(pages)}')",
        timeout=10_000,
    )


async def _centre(locator: Any) -> tuple[float, float]:
    box = await locator.bounding_box()
    return box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.4


async def text_of(page: Any, name: str) -> str:
    return str(await page.locator(tid(name)).first.inner_text())


async def test_a_private_upload_shows_both_progress_bars_then_plays_on_two_levels(
    rig: Rig, clip_files: dict[str, Path]
) -> None:
    page = await rig.page()
    assert not page.url.startswith(rig.api), "the app must come from another origin"
    await rig.shot(page, "home-signed-out")
    await sign_up(page, "uploader")
    await page.goto(rig.app_origin + "/#/upload")
    await page.wait_for_selector(tid("upload-form"))
    # A phone's uplink: the byte progress bar has something to show.
    cdp = await page.context.new_cdp_session(page)
    await cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 20,
            "downloadThroughput": -1,
            "uploadThroughput": 2 * 1024 * 1024,
        },
    )
    await page.evaluate(
        """() => {
        window.__bars = {upload: [], transcode: []};
        const read = () => {
          const bars = [['upload', 'upload-progress'], ['transcode', 'transcode-progress']];
          for (const [name, id] of bars) {
            const bar = document.querySelector(`[data-testid="${id}"]`);
            const seen = window.__bars[name];
            if (bar && seen[seen.length - 1] !== bar.value) seen.push(bar.value);
          }
        };
        window.__barTimer = setInterval(read, 15);
      }"""
    )
    await page.set_input_files(tid("upload-file"), str(clip_files["long"]))
    await page.fill(tid("upload-title"), "Twenty seconds of colour")
    await page.fill(tid("upload-description"), "uploaded from a browser on another origin")
    # Private: the owner's player has to go through signed media URLs all the way.
    await page.select_option(tid("upload-visibility"), "private")
    await page.click(tid("upload-submit"))
    await page.wait_for_function(
        "() => { const b = document.querySelector('[data-testid=\"upload-progress\"]');"
        " return b && b.value > 0 && b.value < 100; }",
        timeout=20_000,
    )
    await rig.shot(page, "upload-in-progress")
    await page.wait_for_selector(f'{tid("transcode-status")}[data-status="processing"]')
    await rig.shot(page, "upload-transcoding")
    await page.wait_for_selector(tid("video-player"), timeout=120_000)
    bars = await page.evaluate("() => window.__bars")
    assert any(0 < v < 100 for v in bars["upload"]), bars
    assert bars["upload"][-1] == 100, bars
    assert any(0 < v < 100 for v in bars["transcode"]), bars
    assert bars["transcode"][-1] == 100, bars
    await cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    # The player: one level, then another, each played past 3 s (the decoded picture says
    # which level is on screen).
    levels = page.locator(f"{tid('quality-menu')} option")
    await page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=\"quality-menu\"] option').length >= 3"
    )
    assert await levels.count() >= 3  # Auto, 360p, 480p
    for level, height in (("0", 360), ("1", 480)):
        # As a viewer does it: pick a quality, then keep watching from where the picture is.
        await page.select_option(tid("quality-menu"), level)
        # play() is not awaited: its promise waits for playback, which is what is checked.
        start = await page.evaluate(
            "() => { const v = document.querySelector('[data-testid=\"video-player\"]');"
            " v.muted = true; v.play().catch(() => {}); return v.currentTime; }"
        )
        try:
            await page.wait_for_function(
                f"""() => {{
                  const v = document.querySelector('[data-testid="video-player"]');
                  return v.currentTime > {start + 3.2} && v.videoHeight === {height} && !v.paused;
                }}""",
                timeout=45_000,
            )
        except Exception:
            await rig.shot(page, f"watch-stalled-level-{level}")
            state = await page.evaluate(
                "() => { const v = document.querySelector('[data-testid=\"video-player\"]');"
                " return {t: v.currentTime, h: v.videoHeight, paused: v.paused,"
                " ready: v.readyState, net: v.networkState, error: v.error && v.error.message,"
                " status: document.querySelector('[data-testid=\"player-status\"]')?.textContent};"
                " }"
            )
            fetched = await page.evaluate(
                "() => performance.getEntriesByType('resource')"
                ".filter(e => e.name.includes('/media/'))"
                ".map(e => [e.name.split('/').slice(-2).join('/'), e.responseStatus,"
                " Math.round(e.startTime), Math.round(e.duration)])"
            )
            raise AssertionError(
                f"level {level} did not play: {state} {page.console_errors} {fetched}"
            ) from None
    await rig.shot(page, "watch-playing")
    assert not [e for e in page.console_errors if "Content Security Policy" in e]
    requested = await page.evaluate(
        "() => performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/media/'))"
    )
    assert requested and all("/media/signed/" in url for url in requested), requested

    # Nobody else can watch it, nor fetch its media.
    video_id = await page.get_attribute(tid("watch-page"), "data-video-id")
    stranger = await rig.page()
    await stranger.goto(f"{rig.app_origin}/#/watch/{video_id}")
    await stranger.wait_for_selector(tid("page-error"))
    await rig.shot(stranger, "watch-private-refused")
    segment = next(url for url in requested if url.endswith(".ts"))
    plain = segment.split("/media/signed/", 1)[0] + "/media/" + segment.split("/", 6)[-1]
    async with aiohttp.ClientSession() as http, http.get(plain) as resp:
        assert resp.status == 404, plain


async def test_a_viewer_sees_the_uploaders_like_and_comment_within_a_second(
    rig: Rig, clip_files: dict[str, Path]
) -> None:
    owner = await api_user(rig, "creator")
    video = await api_ready_video(rig, owner, clip_files["short"], "Live counts")
    uploader = await rig.page()
    await sign_in(uploader, "creator")
    viewer = await rig.page(phone=True)
    await sign_up(viewer, "watcher")
    await watch_together(rig, video, (uploader, viewer), tid("comment-form"))

    started = time.monotonic()
    await uploader.click(tid("like-button"))
    await viewer.wait_for_function(
        "() => document.querySelector('[data-testid=\"like-count\"]').textContent.trim() === '1'",
        timeout=1_000,
    )
    like_seconds = time.monotonic() - started

    await uploader.fill(tid("comment-input"), "first!")
    started = time.monotonic()
    await uploader.click(tid("comment-submit"))
    await viewer.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"comment-content\"]')]"
        ".some(c => c.textContent.includes('first!'))",
        timeout=1_000,
    )
    comment_seconds = time.monotonic() - started
    assert like_seconds < 1 and comment_seconds < 1, (like_seconds, comment_seconds)

    # The viewer replies; the uploader's thread shows a reply, and opened, its text.
    first = viewer.locator(tid("comment-item")).first
    await first.locator(tid("reply-button")).click()
    await viewer.fill(tid("reply-input"), "welcome back")
    await viewer.click(tid("reply-submit"))
    toggle = uploader.locator(tid("replies-toggle")).first
    await toggle.wait_for(timeout=5_000)
    await toggle.click()
    await uploader.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"comment-content\"]')]"
        ".some(c => c.textContent.includes('welcome back'))",
        timeout=5_000,
    )
    await rig.shot(viewer, "watch-phone-live")
    await rig.shot(uploader, "watch-desktop-live")


async def test_a_video_made_private_leaves_a_viewers_page_and_stays_on_its_owners(
    rig: Rig, clip_files: dict[str, Path]
) -> None:
    owner = await api_user(rig, "retractor")
    video = await api_ready_video(rig, owner, clip_files["short"], "Second thoughts")
    owners_page = await rig.page()
    await sign_in(owners_page, "retractor")
    viewer = await rig.page()  # not signed in
    await watch_together(rig, video, (owners_page, viewer), tid("video-player"))

    async with (
        aiohttp.ClientSession() as http,
        http.patch(
            f"{rig.api}/api/videos/{video}",
            json={"visibility": "private"},
            headers={"Authorization": f"Bearer {owner['token']}"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.json()
    notice = viewer.locator(tid("page-error"))
    await notice.wait_for(timeout=5_000)
    assert "no longer available" in (await notice.inner_text())
    assert await viewer.locator("video").count() == 0  # the player is gone with the page
    await rig.shot(viewer, "watch-made-private")
    # the owner may still watch: same page, same live channel
    assert await owners_page.locator(tid("page-error")).count() == 0
    await owners_page.click(tid("like-button"))
    await owners_page.wait_for_function(
        "() => document.querySelector('[data-testid=\"like-count\"]').textContent.trim() === '1'",
        timeout=5_000,
    )


async def test_a_viewer_whose_network_drops_misses_no_comment(
    rig: Rig, clip_files: dict[str, Path]
) -> None:
    owner = await api_user(rig, "talker")
    video = await api_ready_video(rig, owner, clip_files["short"], "Offline")
    viewer = await rig.page()
    await sign_up(viewer, "commuter")
    await viewer.goto(f"{rig.app_origin}/#/watch/{video}")
    await viewer.wait_for_selector(f'{tid("connection-status")}[data-state="open"]')
    await viewer.wait_for_selector(tid("comment-form"))

    await viewer.context.set_offline(True)
    await viewer.evaluate("() => window.reelwire.realtime.drop()")
    await viewer.wait_for_selector(f'{tid("connection-status")}:not([data-state="open"])')
    headers = {"Authorization": f"Bearer {owner['token']}"}
    async with aiohttp.ClientSession() as http:
        for n in range(5):
            async with http.post(
                f"{rig.api}/api/videos/{video}/comments",
                json={"content": f"while you were away {n}"},
                headers=headers,
            ) as resp:
                assert resp.status == 201, await resp.text()
            await asyncio.sleep(1)
    await rig.shot(viewer, "watch-offline")
    await viewer.context.set_offline(False)
    await viewer.wait_for_selector(f'{tid("connection-status")}[data-state="open"]', timeout=15_000)
    await viewer.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"comment-content\"]')]"
        ".filter(c => c.textContent.includes('while you were away')).length >= 5",
        timeout=10_000,
    )
    texts = await viewer.locator(tid("comment-content")).all_inner_texts()
    away = [t for t in texts if "while you were away" in t]
    assert sorted(away) == [f"while you were away {n}" for n in range(5)], away


async def test_a_followers_stories_bar_shows_a_new_story_live(
    rig: Rig, clip_files: dict[str, Path]
) -> None:
    creator = await rig.page()
    await sign_up(creator, "storyteller")
    follower = await rig.page(phone=True)
    await sign_up(follower, "fan")
    creator_id = await creator.evaluate("() => window.reelwire.api.currentUser().id")
    fan_id = await follower.evaluate("() => window.reelwire.api.currentUser().id")

    await follower.goto(f"{rig.app_origin}/#/u/{creator_id}")
    await follower.click(tid("follow-button"))
    await follower.wait_for_selector(f'{tid("follow-button")}[data-following="true"]')
    await follower.wait_for_function(
        "() => document.querySelector('[data-testid=\"profile-followers\"]').dataset.value === '1'"
    )
    await rig.shot(follower, "profile")
    await follower.goto(f"{rig.app_origin}/#/")
    await follower.wait_for_selector(tid("stories-bar"))
    await follower.wait_for_selector(f'{tid("connection-status")}[data-state="open"]')
    assert await follower.locator(f'{tid("story-item")}[data-user-id="{creator_id}"]').count() == 0

    await creator.goto(f"{rig.app_origin}/#/")
    await creator.click(tid("story-add"))
    await creator.set_input_files(tid("story-file"), str(clip_files["image"]))
    await creator.fill(tid("story-caption-input"), "good morning")
    await creator.click(tid("story-submit"))

    story = follower.locator(f'{tid("story-item")}[data-user-id="{creator_id}"]')
    await story.first.wait_for(timeout=10_000)
    await rig.shot(follower, "home-stories")

    # The creator has the story open, no views yet; the follower opens it and the creator's
    # count and list show them as it happens (an image story stays up for 5 s).
    await creator.wait_for_selector(f'{tid("connection-status")}[data-state="open"]')
    await creator.locator(f'{tid("story-item")}[data-own="true"]').first.click()
    await creator.wait_for_selector(f'{tid("story-view-count")}[data-value="0"]')
    await story.first.click()
    fan = f'{tid("story-viewer-item")}[data-user-id="{fan_id}"]'
    await creator.wait_for_selector(f'{tid("story-view-count")}[data-value="1"]', timeout=4_000)
    assert await text_of(creator, "story-view-count") == "1 view"
    assert await creator.locator(fan).count() == 1
    await rig.shot(creator, "story-owner-viewers")

    await follower.wait_for_selector(tid("story-viewer"))
    await follower.wait_for_selector(tid("story-image"), timeout=15_000)
    await follower.click(f"{tid('story-react')} >> nth=0")
    await rig.shot(follower, "story-viewer")
    await follower.click(tid("story-close"))

    # Opened again later, the creator's story lists who watched.
    await creator.goto(f"{rig.app_origin}/#/")
    await creator.locator(f'{tid("story-item")}[data-own="true"]').first.click()
    await creator.wait_for_selector(tid("story-viewer-item"), timeout=10_000)
    assert await creator.locator(tid("story-viewer-item")).count() == 1

    # Unfollow, also a cross-origin write.
    await follower.goto(f"{rig.app_origin}/#/u/{creator_id}")
    await follower.click(tid("follow-button"))
    await follower.wait_for_selector(f'{tid("follow-button")}[data-following="false"]')


async def test_a_page_on_a_foreign_origin_is_refused(rig: Rig) -> None:
    page = await rig.page(origin=rig.foreign_origin)
    await page.goto(rig.foreign_origin + "/#/register")
    await page.fill(tid("register-username"), "intruder")
    await page.fill(tid("register-email"), "intruder@example.com")
    await page.fill(tid("register-password"), PASSWORD)
    await page.click(tid("register-submit"))
    await page.wait_for_selector(f"{tid('register-error')}:visible", timeout=10_000)
    await rig.shot(page, "foreign-origin-refused")
    # The browser never let the request through: no such user exists.
    async with aiohttp.ClientSession() as http:
        login = {"login": "intruder", "password": PASSWORD}
        async with http.post(f"{rig.api}/api/auth/login", json=login) as resp:
            assert resp.status == 401


async def test_the_app_and_docs_on_the_api_origin_load_clean(
    rig: Rig, clip_files: dict[str, Path]
) -> None:
    """Served by Reelwire itself, under its own Content-Security-Policy: the feed with its
    thumbnails and storyboard, a video playing through hls.js (its worker, blob: media), the
    docs; no console error (a CSP violation is one)."""
    owner = await api_user(rig, "homegrown")
    video = await api_ready_video(rig, owner, clip_files["short"], "On its own origin")
    page = await rig.page(origin=rig.api)
    await page.wait_for_selector(tid("feed-tabs"))
    card = page.locator(f'{tid("video-card")}[data-video-id="{video}"]')
    await card.wait_for()
    await card.hover()
    await page.mouse.move(*(await _centre(card)))
    await page.wait_for_selector(tid("storyboard-preview"), state="attached")
    await rig.shot(page, "home-same-origin")
    await page.goto(f"{rig.api}/#/watch/{video}")
    await page.wait_for_selector(tid("video-player"))
    # As a viewer does: press play once the player shows a picture (the element is on the page
    # before hls.js has attached to it, and a play() then can be undone by the attach).
    try:
        await page.wait_for_function(
            """() => {
              const v = document.querySelector('[data-testid="video-player"]');
              if (v.paused && v.readyState >= 2) { v.muted = true; v.play().catch(() => {}); }
              return v.currentTime > 1.5;
            }""",
            timeout=30_000,
        )
    except Exception as exc:
        await rig.shot(page, "watch-same-origin-failed")
        state = await page.evaluate(
            "() => { const v = document.querySelector('[data-testid=\"video-player\"]');"
            " return {src: v.currentSrc, ready: v.readyState, net: v.networkState,"
            " paused: v.paused, t: v.currentTime, err: v.error && v.error.message,"
            " status: document.querySelector('[data-testid=\"player-status\"]').textContent}; }"
        )
        raise AssertionError(
            f"the video did not play: {state}, console: {page.console_errors}"
        ) from exc
    await rig.shot(page, "watch-same-origin")
    await page.goto(rig.api + "/#/login")
    await page.wait_for_selector(tid("login-form"))
    await rig.shot(page, "login")
    phone = await rig.page(origin=rig.api, phone=True)
    await phone.goto(rig.api + "/#/register")
    await phone.wait_for_selector(tid("register-form"))
    await rig.shot(phone, "register-phone")
    docs = await rig.page(origin=rig.api)
    await docs.goto(rig.api + "/api/docs")
    await docs.wait_for_selector(".swagger-ui .opblock-tag", timeout=20_000)
    await rig.shot(docs, "api-docs")
    for each in (page, phone, docs):
        assert not each.console_errors, each.console_errors
