"""A video plays while it transcodes: what a player fetching its playlists sees, from the first
segment of every rung to the complete ladder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Api
from tests.media import LONG_SECONDS, Media, fetch, until_playable, upload, wait_for
from transcode import hls
from transcode.ffmpeg import ffmpeg_path

pytestmark = pytest.mark.usefixtures("reset")


async def first_playable_count(api: Api) -> float:
    """How many ladders with a 1080p top rung have become playable in this process."""
    metrics = await (await api.client.get("/metrics")).text()
    name = 'reelwire_transcode_first_playable_seconds_count{top_rung="1080p"} '
    found = [line for line in metrics.splitlines() if line.startswith(name)]
    return float(found[0].split()[-1]) if found else 0.0


def decode_errors(path: Path) -> str:
    done = subprocess.run(
        [ffmpeg_path(), "-hide_banner", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stderr.strip()


async def test_a_video_plays_from_its_first_segments_while_the_ladder_is_made(
    media_api: Api, media: Media, tmp_path: Path
) -> None:
    user = await media_api.register("impatient")
    token = user["token"]
    before = await first_playable_count(media_api)
    _, body = await upload(media_api, token, media.long_1080)
    video = await until_playable(media_api, body["id"], token)
    assert video["playable"] is True, video
    assert video["status"] == "processing", "playable before the ladder is done"
    assert video["hls_playlist"] is None, "clients that only know `ready` see nothing new"
    base = video["playback_url"].rsplit("/", 1)[0]

    # What a player does first: the master playlist, then each variant's growing playlist.
    master_resp = await fetch(media_api, video["playback_url"])
    master = hls.parse_master_playlist(await master_resp.text())
    assert [v.uri for v in master.variants] == [
        f"{q}/playlist.m3u8" for q in ("360p", "480p", "720p", "1080p")
    ]
    early: dict[str, tuple[hls.MediaPlaylist, bytes]] = {}
    for variant in master.variants:
        resp = await fetch(media_api, f"{base}/{variant.uri}")
        assert resp.headers["Cache-Control"] == "public, no-cache", "a growing playlist"
        playlist = hls.parse_media_playlist(await resp.text())
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in playlist.tags and not playlist.ended
        assert "#EXT-X-START:TIME-OFFSET=0" in playlist.tags
        assert playlist.segments and playlist.segments[0].duration == pytest.approx(2.0, abs=0.05)
        rung = variant.uri.split("/")[0]
        segment = await (await fetch(media_api, f"{base}/{rung}/{playlist.segments[0].uri}")).read()
        (tmp_path / f"{rung}.ts").write_bytes(segment)
        assert decode_errors(tmp_path / f"{rung}.ts") == "", f"{rung}'s first segment decodes"
        early[rung] = (playlist, segment)
    audio = hls.parse_media_playlist(
        await (await fetch(media_api, f"{base}/audio/playlist.m3u8")).text()
    )
    assert audio.segments and not audio.ended

    done = await wait_for(media_api, body["id"], token, timeout=150)
    assert done["status"] == "ready" and done["playback_url"] == video["playback_url"]
    for rung, (playlist, segment) in early.items():
        resp = await fetch(media_api, f"{base}/{rung}/playlist.m3u8")
        assert resp.headers["Cache-Control"] == "public, max-age=10"
        final = hls.parse_media_playlist(await resp.text())
        assert final.ended and final.target_duration == playlist.target_duration
        # Only appended to: what a player already holds stays what it was.
        assert final.segments[: len(playlist.segments)] == playlist.segments
        again = await (await fetch(media_api, f"{base}/{rung}/{playlist.segments[0].uri}")).read()
        assert again == segment
        assert final.duration == pytest.approx(LONG_SECONDS, abs=0.1)
    measured = hls.parse_master_playlist(
        await (await fetch(media_api, done["playback_url"])).text()
    )
    assert [v.uri for v in measured.variants] == [v.uri for v in master.variants]
    assert await first_playable_count(media_api) >= before + 1


async def test_a_short_video_is_published_whole(media_api: Api, media: Media) -> None:
    # 2 s: its one segment may yet take a tail, so nothing is published before the end.
    user = await media_api.register("brief")
    _, body = await upload(media_api, user["token"], media.video_480)
    video = await wait_for(media_api, body["id"], user["token"])
    assert video["status"] == "ready" and video["playable"] is True
    text = await (
        await fetch(media_api, video["playback_url"].replace("master", "360p/playlist"))
    ).text()
    assert hls.parse_media_playlist(text).ended
