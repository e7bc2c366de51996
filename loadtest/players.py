"""Player viewers: HLS playback at playback pace, as hls.js does it.

A player fetches the master playlist of the video it watches, picks a rung (the lowest, or the
highest that fits its simulated bandwidth), fetches that rung's media playlist, then a segment
(and the audio rendition's segment of the same index) whenever the buffer ahead of the playhead
falls below the target. With ABR on, each segment's measured throughput (capped by the simulated
bandwidth) moves it up or down the ladder; the rungs' segments line up, so it switches at the
next index. A stall is the buffer running dry before the video ended. At the end it plays the
video again from the start (a short-video feed loops).

Every player of a process shares one HTTP connection pool per source address: the segment
requests of thousands of players need tens of sockets, not thousands. TTFB is the time from
sending the request to having the response headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp

from loadtest.histogram import Histogram

SAFETY = 0.8  # a rung is chosen when its BANDWIDTH is at most this share of the estimate
EWMA = 0.3  # weight of the newest segment in the throughput estimate
RETRIES = 3


@dataclass(frozen=True)
class Variant:
    """One rung of the master playlist."""

    bandwidth: int  # bits/s
    uri: str  # absolute URL of its media playlist
    name: str  # its resolution, or the playlist's directory


@dataclass
class MediaPlaylist:
    """One media playlist: segment durations and absolute URLs."""

    segments: list[tuple[float, str]]
    ended: bool
    target: float


def parse_master(text: str, url: str) -> tuple[list[Variant], str | None]:
    """The variants (lowest BANDWIDTH first) and the audio rendition's playlist URL, if any."""
    variants: list[Variant] = []
    audio: str | None = None
    pending: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = _attributes(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA:"):
            attributes = _attributes(line.split(":", 1)[1])
            if attributes.get("TYPE") == "AUDIO" and "URI" in attributes and audio is None:
                audio = urljoin(url, attributes["URI"])
        elif line and not line.startswith("#") and pending is not None:
            parts = line.split("?", 1)[0].split("/")
            name = parts[-2] if len(parts) > 1 else pending.get("RESOLUTION", line)
            variants.append(Variant(int(pending.get("BANDWIDTH", "0")), urljoin(url, line), name))
            pending = None
    variants.sort(key=lambda v: v.bandwidth)
    return variants, audio


def parse_media(text: str, url: str) -> MediaPlaylist:
    """Segments (duration, URL) of a media playlist, and whether it has ended."""
    segments: list[tuple[float, str]] = []
    duration, target, ended = None, 4.0, False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",", 1)[0])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif line and not line.startswith("#") and duration is not None:
            segments.append((duration, urljoin(url, line)))
            duration = None
    return MediaPlaylist(segments, ended, target)


def _attributes(text: str) -> dict[str, str]:
    """`A=1,B="x,y"` as a dict (quotes removed)."""
    out: dict[str, str] = {}
    key, value, quoted, reading_key = "", "", False, True
    for char in text + ",":
        if reading_key:
            if char == "=":
                reading_key = False
            elif char != ",":
                key += char
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            out[key.strip()] = value
            key, value, reading_key = "", "", True
        else:
            value += char
    return out


def pick(variants: list[Variant], kbps: float | None) -> int:
    """The index of the rung to play: the highest whose BANDWIDTH fits SAFETY x `kbps`
    (the lowest when none fits, or when there is no estimate)."""
    if kbps is None:
        return 0
    chosen = 0
    for index, variant in enumerate(variants):
        if variant.bandwidth <= kbps * 1000 * SAFETY:
            chosen = index
    return chosen


@dataclass
class PlayerOptions:
    """How players play."""

    buffer_target: float = 30.0  # seconds of media kept ahead of the playhead (hls.js: 30)
    bandwidth: tuple[float, float] | None = None  # kbit/s, each player draws from the range
    abr: bool = False


@dataclass
class PlayStats:
    """What the players of one process add to."""

    plays: int = 0  # playbacks started (a loop counts again)
    started: int = 0  # players that played their first segment
    segments: int = 0
    bytes: int = 0
    http_errors: int = 0
    stalls: int = 0
    stalled_players: int = 0
    stall_seconds: float = 0.0
    switches_up: int = 0
    switches_down: int = 0
    rung_segments: dict[str, int] = field(default_factory=dict)
    ttfb: Histogram = field(default_factory=Histogram)  # ms, every segment
    ttfb_second: Histogram = field(default_factory=Histogram)  # ms, this second's segments
    kbps: Histogram = field(default_factory=Histogram)  # throughput of each segment, kbit/s
    startup: Histogram = field(default_factory=Histogram)  # ms, master playlist to 1st segment
    player_ttfb_mean: Histogram = field(default_factory=Histogram)  # ms, one value per player

    def summary(self) -> dict[str, Any]:
        """The figures a report shows."""
        return {
            "plays": self.plays,
            "started": self.started,
            "segments": self.segments,
            "megabytes": round(self.bytes / 1e6, 1),
            "http_errors": self.http_errors,
            "stalls": self.stalls,
            "stalled_players": self.stalled_players,
            "stall_seconds": round(self.stall_seconds, 2),
            "abr_switches": {"up": self.switches_up, "down": self.switches_down},
            "rung_segments": dict(sorted(self.rung_segments.items())),
            "segment_kbps": self.kbps.summary(),
            "startup_ms": self.startup.summary(),
            "per_player_mean_ttfb_ms": self.player_ttfb_mean.summary(),
        }


class Player:
    """One viewer's playback of one video."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        video: str,
        stats: PlayStats,
        options: PlayerOptions,
        rng: random.Random,
    ) -> None:
        self.http = http
        self.master = f"{base}/media/videos/{video}/hls/master.m3u8"
        self.stats = stats
        self.options = options
        self.rng = rng
        self.kbps_cap: float | None = None
        if options.bandwidth is not None:
            self.kbps_cap = rng.uniform(*options.bandwidth)
        self.estimate: float | None = None
        self.stalled = False
        self.started = False
        self.ttfb_sum = 0.0
        self.ttfb_count = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Play (and play again) until `stop` is set."""
        try:
            while not stop.is_set():
                if not await self._play_once(stop):
                    await _sleep_or_stop(stop, 1.0)
        finally:
            if self.ttfb_count:
                self.stats.player_ttfb_mean.add(self.ttfb_sum / self.ttfb_count)

    async def _play_once(self, stop: asyncio.Event) -> bool:
        stats, options = self.stats, self.options
        began = time.monotonic()
        text = await self._text(self.master)
        if text is None:
            return False
        variants, audio_url = parse_master(text, self.master)
        if not variants:
            stats.http_errors += 1
            return False
        level = pick(variants, self.kbps_cap)
        playlists: dict[int, MediaPlaylist] = {}
        audio = None
        if audio_url is not None:
            audio_text = await self._text(audio_url)
            audio = parse_media(audio_text, audio_url) if audio_text is not None else None
        stats.plays += 1
        index, playing = 0, False
        ahead, ahead_at = 0.0, time.monotonic()  # media buffered past the playhead, and when
        while not stop.is_set():
            media = playlists.get(level)
            if media is None:
                media_text = await self._text(variants[level].uri)
                if media_text is None:
                    return False
                media = playlists[level] = parse_media(media_text, variants[level].uri)
            if index >= len(media.segments):
                if not media.ended:  # still being transcoded: look again
                    await _sleep_or_stop(stop, media.target / 2)
                    playlists.pop(level)
                    continue
                left = max(0.0, ahead - (time.monotonic() - ahead_at)) if playing else 0.0
                await _sleep_or_stop(stop, left)  # play out what is buffered
                return True
            if playing:
                left = ahead - (time.monotonic() - ahead_at)
                if left > options.buffer_target:
                    await _sleep_or_stop(stop, left - options.buffer_target)
                    continue
            duration, url = media.segments[index]
            fetches = [self._segment(url, variants[level].name)]
            if audio is not None and index < len(audio.segments):
                fetches.append(self._segment(audio.segments[index][1], None))
            asked = time.monotonic()
            results = await asyncio.gather(*fetches)
            now = time.monotonic()
            if not all(ok for ok, _ in results):
                await _sleep_or_stop(stop, 0.5)
                continue
            if playing:
                left = ahead - (now - ahead_at)
                if left < 0:
                    stats.stalls += 1
                    stats.stall_seconds -= left
                    if not self.stalled:
                        self.stalled = True
                        stats.stalled_players += 1
                    left = 0.0
            else:
                left = 0.0
                playing = True
                stats.startup.add((now - began) * 1000)
                if not self.started:
                    self.started = True
                    stats.started += 1
            ahead, ahead_at = left + duration, now
            index += 1
            if options.abr:
                bits = sum(size for _, size in results) * 8
                measured = bits / max(now - asked, 1e-6) / 1000
                self.estimate = (
                    measured
                    if self.estimate is None
                    else EWMA * measured + (1 - EWMA) * self.estimate
                )
                estimate = self.estimate
                if self.kbps_cap is not None:
                    estimate = min(estimate, self.kbps_cap)
                wanted = pick(variants, estimate)
                if wanted > level:
                    stats.switches_up += 1
                elif wanted < level:
                    stats.switches_down += 1
                level = wanted
        return True

    async def _text(self, url: str) -> str | None:
        for attempt in range(RETRIES):
            try:
                async with self.http.get(url) as response:
                    if response.status == 200:
                        return await response.text()
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.stats.http_errors += 1
            await asyncio.sleep(0.2 * (attempt + 1))
        return None

    async def _segment(self, url: str, rung: str | None) -> tuple[bool, int]:
        """Fetch one segment, reading and discarding its body; (ok, bytes)."""
        stats = self.stats
        asked = time.monotonic()
        size = 0
        try:
            async with self.http.get(url) as response:
                ttfb = (time.monotonic() - asked) * 1000
                if response.status != 200:
                    stats.http_errors += 1
                    await response.read()
                    return False, 0
                async for chunk in response.content.iter_chunked(1 << 16):
                    size += len(chunk)
        except (aiohttp.ClientError, TimeoutError):
            stats.http_errors += 1
            return False, 0
        elapsed = time.monotonic() - asked
        stats.segments += 1
        stats.bytes += size
        stats.ttfb.add(ttfb)
        stats.ttfb_second.add(ttfb)
        stats.kbps.add(size * 8 / max(elapsed, 1e-6) / 1000)
        self.ttfb_sum += ttfb
        self.ttfb_count += 1
        if rung is not None:
            stats.rung_segments[rung] = stats.rung_segments.get(rung, 0) + 1
        return True, size


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
