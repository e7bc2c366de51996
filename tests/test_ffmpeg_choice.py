"""Which FFmpeg runs: version parsing, feature checks, and passing over (or refusing) a binary
that does not fit. These use a fake `ffmpeg` script; the media tests use the real one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from transcode import ffmpeg
from transcode.ffmpeg import FFmpegUnavailable, check_ffmpeg, parse_names, parse_version

LISTINGS = {
    "-encoders": "Encoders:\n V..... = Video\n ------\n V....D libx264   H.264\n"
    " V....D libwebp   WebP\n V....D mjpeg   MJPEG\n A....D aac   AAC\n",
    "-muxers": "Formats:\n D.. = Demuxing\n ---\n  E  hls   HLS\n  E  mpegts  TS\n"
    "  E  image2  image2 sequence\n  E  mp4  MP4\n",
    "-filters": "Filters:\n  T.. = Timeline support\n  ------\n"
    + "".join(
        f" .. {f}  V->V  x\n"
        for f in (
            "split",
            "scale",
            "select",
            "trim",
            "setpts",
            "thumbnail",
            "fps",
            "tile",
            "setsar",
        )
    ),
    "-demuxers": "Formats:\n ---\n D   mov,mp4,m4a,3gp,3g2,mj2 QuickTime\n D   matroska,webm  MKV\n"
    + "".join(
        f" D   {d}  x\n"
        for d in (
            *("avi", "flv", "asf", "gif", "jpeg_pipe", "png_pipe"),
            *("webp_pipe", "bmp_pipe", "svg_pipe", "image2"),
        )
    )
    + " D d lavfi   Libavfilter virtual input device\n",
}


def fake_ffmpeg(directory: Path, version: str, *, drop: str = "") -> Path:
    """An executable `ffmpeg` that prints `version` for -version and the listings above
    (without the line naming `drop`)."""
    directory.mkdir(parents=True, exist_ok=True)
    cases = []
    for flag, listing in LISTINGS.items():
        text = "".join(
            line + "\n" for line in listing.splitlines() if not drop or f" {drop} " not in line
        )
        (directory / flag.lstrip("-")).write_text(text)
        cases.append(f'  *{flag}*) cat "{directory}/{flag.lstrip("-")}" ;;')
    script = directory / "ffmpeg"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f"  *-version*) echo 'ffmpeg version {version} Copyright (c) 2000-2024'\n"
        "    echo 'libavutil      57. 28.100 / 57. 28.100' ;;\n" + "\n".join(cases) + "\n"
        "  *) exit 1 ;;\nesac\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def fresh_choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Each test chooses again; the process goes back to its usual choice afterwards."""
    monkeypatch.delenv("FFMPEG_PATH", raising=False)
    ffmpeg.reset_ffmpeg_choice()
    yield monkeypatch
    monkeypatch.undo()
    ffmpeg.reset_ffmpeg_choice()


@pytest.mark.parametrize(
    ("output", "version", "recent"),
    [
        ("ffmpeg version n9.0.2-17-g2a571b6068-20260930 Copyright", "9.0.2", True),
        ("ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024", "5.1.6", False),
        ("ffmpeg version 6.0 Copyright", "6.0", True),
        ("ffmpeg version 7.1.1-static https://johnvansickle.com/ffmpeg/", "7.1.1", True),
        ("ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright", "4.4.2", False),
        (
            "ffmpeg version N-12345-g0123abc Copyright\nlibavutil      60.  8.100",
            "N-12345-g0123abc",
            True,
        ),
        (
            "ffmpeg version N-99-g0123abc Copyright\nlibavutil      57. 28.100",
            "N-99-g0123abc",
            False,
        ),
    ],
)
def test_versions_are_read_from_every_kind_of_build(
    output: str, version: str, recent: bool
) -> None:
    parsed, _, new_enough = parse_version(output)
    assert (parsed, new_enough) == (version, recent)


def test_listings_are_read_past_flags_and_legends() -> None:
    assert {"libx264", "aac", "mjpeg"} <= parse_names(LISTINGS["-encoders"])
    assert {"mov", "mp4", "matroska", "webm", "lavfi", "image2"} <= parse_names(
        LISTINGS["-demuxers"]
    )
    assert "d" not in parse_names(LISTINGS["-demuxers"])
    assert "Timeline" not in parse_names(LISTINGS["-filters"])


def test_an_old_ffmpeg_on_path_is_passed_over_for_the_bundled_one(
    fresh_choice: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = fake_ffmpeg(tmp_path / "bin", "5.1.6-0+deb12u1")
    fresh_choice.setenv("PATH", f"{old.parent}:/usr/bin:/bin")
    with caplog.at_level(logging.WARNING, logger="transcode.ffmpeg"):
        described = check_ffmpeg()
        check_ffmpeg()  # chosen once
    assert described.endswith("(bundled)") and ffmpeg.ffmpeg_path() != str(old)
    bundled = ffmpeg.ffmpeg_build().version
    assert [r.getMessage() for r in caplog.records] == [
        f"ffmpeg 5.1.6 at {old} is older than 6.0 (needed for {ffmpeg.MIN_VERSION_WHY}); "
        f"using the bundled ffmpeg {bundled}"
    ]


def test_an_ffmpeg_on_path_without_a_feature_is_passed_over(
    fresh_choice: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lacking = fake_ffmpeg(tmp_path / "bin", "7.1", drop="libx264")
    fresh_choice.setenv("PATH", f"{lacking.parent}:/usr/bin:/bin")
    with caplog.at_level(logging.WARNING, logger="transcode.ffmpeg"):
        assert check_ffmpeg().endswith("(bundled)")
    (record,) = caplog.records
    assert record.getMessage().startswith(f"ffmpeg 7.1 at {lacking} lacks encoder libx264;")


def test_a_fitting_ffmpeg_on_path_is_used(
    fresh_choice: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = fake_ffmpeg(tmp_path / "bin", "7.1")
    fresh_choice.setenv("PATH", f"{good.parent}:/usr/bin:/bin")
    with caplog.at_level(logging.WARNING, logger="transcode.ffmpeg"):
        assert check_ffmpeg() == f"ffmpeg 7.1 ({good})"
    assert ffmpeg.ffmpeg_path() == str(good) and caplog.records == []


def test_an_ffmpeg_path_that_does_not_fit_is_refused(
    fresh_choice: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = fake_ffmpeg(tmp_path / "bin", "5.1.6-0+deb12u1")
    fresh_choice.setenv("FFMPEG_PATH", str(old))
    with pytest.raises(FFmpegUnavailable) as refused:
        check_ffmpeg()
    message = str(refused.value)
    assert message.startswith(f"FFMPEG_PATH refused: ffmpeg 5.1.6 at {old} is older than 6.0")
    assert "\n" not in message
    with pytest.raises(FFmpegUnavailable):
        ffmpeg.ffmpeg_path()  # every run refuses it too: no silent fallback
    fresh_choice.setenv("FFMPEG_PATH", str(tmp_path / "missing"))
    ffmpeg.reset_ffmpeg_choice()
    with pytest.raises(FFmpegUnavailable, match="cannot be run"):
        check_ffmpeg()


def test_no_fitting_ffmpeg_anywhere_is_one_line(
    fresh_choice: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = fake_ffmpeg(tmp_path / "bin", "5.1.6-0+deb12u1")
    fresh_choice.setenv("PATH", f"{old.parent}:/usr/bin:/bin")
    fresh_choice.setattr(ffmpeg, "_bundled", lambda: None)
    with pytest.raises(FFmpegUnavailable) as none:
        check_ffmpeg()
    assert str(none.value).startswith("no usable ffmpeg: ffmpeg 5.1.6 at")
    assert "\n" not in str(none.value)
