"""The HLS a strict player gets (RFC 8216), checked against the segments on disk with real
FFmpeg: BANDWIDTH no segment exceeds, measured AVERAGE-BANDWIDTH, CODECS/RESOLUTION/FRAME-RATE
as the streams really are, no sub-second tail segment, target durations that hold."""

from __future__ import annotations

import asyncio
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest

from reelwire.appkeys import SERVICES
from reelwire.settings import Settings
from storage import videos as video_rows
from tests.conftest import Api
from tests.media import LONG_SECONDS, Media, make_video, upload, wait_for
from transcode import hls, progressive
from transcode.ffmpeg import ffmpeg_path, run_ffmpeg
from transcode.ladder import ladder_command, plan_ladder, plan_storyboard
from transcode.probe import parse_probe, probe


@dataclass(frozen=True)
class Rate:
    peak: float
    average: float


def measured(directory: Path, playlist: hls.MediaPlaylist) -> Rate:
    """Bits per second of the listed segments, computed here independently of transcode.hls."""
    sizes = [(directory / s.uri).stat().st_size * 8 for s in playlist.segments]
    durations = [s.duration for s in playlist.segments]
    return Rate(
        max(b / d for b, d in zip(sizes, durations, strict=True)), sum(sizes) / sum(durations)
    )


def ffmpeg_stderr(*args: str) -> str:
    done = subprocess.run(
        [ffmpeg_path(), "-hide_banner", *args], capture_output=True, text=True, check=False
    )
    return done.stderr


def sps_fields(segment: Path) -> dict[str, int]:
    """profile_idc, constraint_set flags and level_idc as FFmpeg's trace_headers reads them."""
    trace = ffmpeg_stderr(
        *("-i", str(segment), "-map", "0:v", "-c", "copy", "-bsf:v", "trace_headers"),
        *("-frames:v", "1", "-f", "null", "-"),
    )
    fields = re.findall(r"\s(profile_idc|constraint_set\d_flag|level_idc)\s+[01]+ = (\d+)", trace)
    return {name: int(value) for name, value in dict(fields).items()}


def check_media_playlist(directory: Path, whole_duration: float) -> hls.MediaPlaylist:
    playlist = hls.parse_media_playlist((directory / hls.PLAYLIST).read_text())
    assert playlist.ended and playlist.segments
    assert playlist.version == hls.HLS_VERSION
    # Published as an EVENT playlist while the ladder was made, ended once complete (players
    # treat it as VOD then); the target duration was fixed from its first publication.
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in playlist.tags
    assert "#EXT-X-START:TIME-OFFSET=0" in playlist.tags
    # RFC 8216 4.3.3.1: every EXTINF, rounded to the nearest integer, <= the target duration.
    assert all(
        hls.round_duration(s.duration) <= playlist.target_duration for s in playlist.segments
    )
    assert playlist.duration == pytest.approx(whole_duration, abs=0.1)
    if whole_duration >= hls.MIN_TAIL_SECONDS:
        assert min(s.duration for s in playlist.segments) >= hls.MIN_TAIL_SECONDS, playlist
    else:
        assert len(playlist.segments) == 1
    for segment in playlist.segments:
        data = (directory / segment.uri).read_bytes()
        assert hls.read_ts(data).continuity_errors == 0, segment
        errors = ffmpeg_stderr("-v", "error", "-i", str(directory / segment.uri), "-f", "null", "-")
        assert errors.strip() == "", (segment, errors)
    assert sorted(p.name for p in directory.glob("*.ts")) == [s.uri for s in playlist.segments]
    return playlist


def check_hls(out: Path, *, rungs: list[str], duration: float, audio: bool) -> list[dict[str, str]]:
    """Everything a strict player checks, for every playlist under `out`; returns each
    variant's attributes with the measured peak and average added (for reporting)."""
    master = hls.parse_master_playlist((out / hls.MASTER).read_text())
    assert master.version == hls.HLS_VERSION
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in master.tags
    assert [v.uri for v in master.variants] == [f"{name}/playlist.m3u8" for name in rungs]
    audio_rate = Rate(0.0, 0.0)
    if audio:
        (rendition,) = master.media
        assert rendition["TYPE"] == "AUDIO" and rendition["DEFAULT"] == "YES"
        assert rendition["AUTOSELECT"] == "YES" and hls.unquote(rendition["NAME"])
        assert hls.unquote(rendition["URI"]) == "audio/playlist.m3u8"
        playlist = check_media_playlist(out / "audio", duration)
        audio_rate = measured(out / "audio", playlist)
        stream = re.search(
            r"Audio: (.*)", ffmpeg_stderr("-i", str(out / "audio" / playlist.segments[0].uri))
        )
        assert stream is not None and "aac (LC)" in stream.group(1)
        channels = {"mono": "1", "stereo": "2"}[
            re.search(r"Hz, (\w+)", stream.group(1)).group(1)  # type: ignore[union-attr]
        ]
        assert rendition["CHANNELS"] == f'"{channels}"'
    else:
        assert master.media == []
    report = []
    for variant in master.variants:
        attrs = variant.attributes
        directory = out / variant.uri.split("/")[0]
        playlist = check_media_playlist(directory, duration)
        video_rate = measured(directory, playlist)
        peak = video_rate.peak + audio_rate.peak
        average = video_rate.average + audio_rate.average
        assert int(attrs["BANDWIDTH"]) >= peak
        assert int(attrs["AVERAGE-BANDWIDTH"]) == pytest.approx(average, rel=0.02)
        assert int(attrs["AVERAGE-BANDWIDTH"]) <= int(attrs["BANDWIDTH"])

        first = directory / playlist.segments[0].uri
        sps = sps_fields(first)
        flags = sum(sps[f"constraint_set{i}_flag"] << (7 - i) for i in range(6))
        avc1 = f"avc1.{sps['profile_idc']:02x}{flags:02x}{sps['level_idc']:02x}"
        codecs = hls.unquote(attrs["CODECS"]).split(",")
        assert codecs == ([avc1, "mp4a.40.2"] if audio else [avc1])
        info = parse_probe(ffmpeg_stderr("-i", str(first)), "mp4")
        assert attrs["RESOLUTION"] == f"{info.width}x{info.height}"
        assert info.fps is not None and attrs["FRAME-RATE"] == f"{info.fps:.3f}"
        assert (attrs.get("AUDIO") is not None) == audio
        report.append({**attrs, "measured_peak": f"{peak:.0f}", "measured_avg": f"{average:.0f}"})
    return report


def make_dirs(paths: list[Path]) -> None:
    for path in paths:
        path.mkdir(parents=True)


async def transcode_to(source: Path, out: Path, frames: Path) -> list[hls.VariantStats]:
    """What the video job does with the FFmpeg run, without the database and storage."""
    info = await probe(source)
    rungs, storyboard = plan_ladder(info), plan_storyboard(info)
    names = [r.name for r in rungs] + (["audio"] if info.has_audio else [])
    await asyncio.to_thread(make_dirs, [out / name for name in names] + [frames])
    command = ladder_command(info, rungs, storyboard, source, out, frames)
    await run_ffmpeg(command, timeout=120)
    names = [r.name for r in rungs]
    return await asyncio.to_thread(
        lambda: hls.finalize(out, names, target=progressive.TARGET_DURATION)
    )


@pytest.mark.usefixtures("reset")
async def test_1080p_job_writes_playlists_that_match_its_segments(
    media_api: Api, media_settings: Settings, media: Media
) -> None:
    user = await media_api.register("strictplayer")
    _, body = await upload(media_api, user["token"], media.long_1080)
    video = await wait_for(media_api, body["id"], user["token"], timeout=150)
    assert video["status"] == "ready", video
    out = Path(media_settings.home) / "media" / "videos" / body["id"] / "hls"
    report = check_hls(
        out, rungs=["360p", "480p", "720p", "1080p"], duration=LONG_SECONDS, audio=True
    )
    for row in report:
        print(row["RESOLUTION"], row["BANDWIDTH"], row["measured_peak"], row["measured_avg"])
    # The rows keep the measured average (kbps, video + audio) as each rung's bitrate.
    services = media_api.client.app[SERVICES]
    async with services.db.acquire() as conn:
        row = await video_rows.get(conn, UUID(body["id"]))
    assert row is not None
    qualities = row["qualities"]
    assert [q["bitrate"] for q in qualities] == [
        round(int(r["AVERAGE-BANDWIDTH"]) / 1000) for r in report
    ]


async def test_no_sub_second_tails(tmp_path: Path) -> None:
    # 4.5 s: the video's keyframes (hence cuts) fall at 0 and 2 s, none in the last second;
    # the audio is cut every 2 s, and its 0.5 s tail is merged into the segment before it.
    source = make_video(tmp_path / "tail.mp4", size="640x360", seconds=4.5)
    stats = await transcode_to(source, tmp_path / "out", tmp_path / "frames")
    assert [s.name for s in stats] == ["360p"]
    check_hls(tmp_path / "out", rungs=["360p"], duration=4.5, audio=True)
    for rendition in ("360p", "audio"):
        text = (tmp_path / "out" / rendition / hls.PLAYLIST).read_text()
        playlist = hls.parse_media_playlist(text)
        durations = [s.duration for s in playlist.segments]
        assert durations == [pytest.approx(2.0, abs=0.05), pytest.approx(2.5, abs=0.05)]
        assert playlist.target_duration == 5


async def test_a_video_shorter_than_a_second_is_one_segment(tmp_path: Path) -> None:
    source = make_video(tmp_path / "blink.mp4", size="640x360", seconds=0.6, audio=False)
    await transcode_to(source, tmp_path / "out", tmp_path / "frames")
    check_hls(tmp_path / "out", rungs=["360p"], duration=0.6, audio=False)


def test_parser_reads_quoted_attributes_and_segments() -> None:
    master = hls.parse_master_playlist(
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=10,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=2x2\n'
        "a/playlist.m3u8\n"
    )
    assert master.variants[0].attributes == {
        "BANDWIDTH": "10",
        "CODECS": '"avc1.64001f,mp4a.40.2"',
        "RESOLUTION": "2x2",
    }
    media = hls.parse_media_playlist(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.000000,\ns0.ts\n#EXTINF:0.5,\ns1.ts\n"
        "#EXT-X-ENDLIST\n"
    )
    assert [(s.duration, s.uri) for s in media.segments] == [(4.0, "s0.ts"), (0.5, "s1.ts")]
    assert media.ended and media.target_duration == 4
    with pytest.raises(ValueError):
        hls.parse_media_playlist("not a playlist")
    rendered = hls.render_media_playlist([hls.Segment(4.4, "a.ts"), hls.Segment(4.6, "b.ts")])
    assert "#EXT-X-TARGETDURATION:5" in rendered


def mean_luma(picture: Path) -> float:
    """The average brightness (0-255) of a picture, decoded by FFmpeg to 8-bit grey."""
    grey = subprocess.run(
        [
            ffmpeg_path(),
            "-v",
            "error",
            "-i",
            str(picture),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return sum(grey) / len(grey)


async def test_the_poster_is_a_representative_frame_not_the_black_opening(
    tmp_path: Path,
) -> None:
    # A second and a half of black, then the picture: a fixed frame at 1 s would be black.
    source = tmp_path / "fade.mp4"
    graph = (
        "color=black:size=640x360:rate=30:duration=1.5[dark];"
        "testsrc2=size=640x360:rate=30:duration=6[lit];[dark][lit]concat=n=2:v=1[v]"
    )
    await asyncio.to_thread(
        subprocess.run,
        [
            ffmpeg_path(),
            "-v",
            "error",
            "-filter_complex",
            graph,
            "-map",
            "[v]",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(source),
        ],
        check=True,
    )
    await transcode_to(source, tmp_path / "out", tmp_path / "frames")
    poster = tmp_path / "out" / "thumbnail.jpg"
    assert await asyncio.to_thread(mean_luma, poster) > 60, "the poster shows the picture"
    preview = await probe(tmp_path / "out" / "preview.mp4")
    assert (preview.width, preview.height) == (426, 240) and not preview.has_audio
    assert preview.duration == pytest.approx(3.0, abs=0.1)
