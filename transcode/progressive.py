"""Publishing a ladder while FFmpeg makes it: HLS EVENT playlists that grow segment by segment.

FFmpeg's hls muxer rewrites each rendition's playlist in the scratch directory as a segment
closes (segments and playlists are renamed into place, never seen half-written). A Publisher
polls those playlists while the pass runs, stores each newly closed segment under its final
key, then the rendition's EVENT playlist listing what is stored so far; once every rendition
has a segment it stores the master playlist, and the video is playable. `complete` stores what
is left once `transcode.hls.finalize` has ended the playlists, the master playlist last.

A stored segment never changes: the one segment that may still be merged with a sub-second
tail (the one ending within MIN_TAIL_SECONDS + HOLD_MARGIN of the end) is held back until the
pass is over, and finalize never merges into a published one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from reelwire import telemetry
from storage import blob_keys
from storage.blobs import BlobStore
from transcode import hls
from transcode.ladder import AUDIO_KBPS, FIRST_SEGMENT_SECONDS, SEGMENT_SECONDS, Rung

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
HOLD_MARGIN = 0.5  # slack on the probed duration when holding back the last full segment
# Fixed for the life of a playlist (RFC 8216 6.2.1): segments are 4 s, and the last one runs
# up to a second longer (no keyframe is forced in the last second).
TARGET_DURATION = SEGMENT_SECONDS + 1
UPLOADS_AT_ONCE = 8


@dataclass(frozen=True)
class Publication:
    """Where a ladder is published and who hears of it."""

    blobs: BlobStore
    prefix: str  # the video's outputs prefix
    # a rung's playlist is stored with its first segment: (rung name, WIDTHxHEIGHT)
    on_rendition: Callable[[str, str], Awaitable[None]]
    # the master playlist is stored: the video can be played from the start
    on_playable: Callable[[], Awaitable[None]]


class Publisher:
    """Publishes the renditions FFmpeg is writing into `out/` (see the module's text)."""

    def __init__(
        self,
        publication: Publication,
        out: Path,
        rungs: list[Rung],
        *,
        has_audio: bool,
        duration: float | None,
        fps: float | None,
    ) -> None:
        self.publication = publication
        self.out = out
        self.rungs = rungs
        self.duration = duration
        self.fps = fps
        names = [r.name for r in rungs] + ([hls.AUDIO_DIR] if has_audio else [])
        self.segments: dict[str, list[hls.Segment]] = {name: [] for name in names}
        self.master_published = False
        self._stop = asyncio.Event()
        self._gate = asyncio.Semaphore(UPLOADS_AT_ONCE)
        self._started = time.perf_counter()

    @property
    def published(self) -> frozenset[str]:
        """Every stored segment, as `<rendition>/<file>`."""
        return frozenset(f"{name}/{s.uri}" for name, segs in self.segments.items() for s in segs)

    @property
    def playable(self) -> bool:
        """The master playlist is stored."""
        return self.master_published

    async def run(self) -> None:
        """Poll until `stop` (call it once FFmpeg has exited)."""
        while not self._stop.is_set():
            await self.poll()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), POLL_SECONDS)

    def stop(self) -> None:
        """FFmpeg is done: stop polling (finalize and `complete` take over)."""
        self._stop.set()

    async def poll(self) -> None:
        """Store what FFmpeg has closed since the last poll."""
        for name, stored in self.segments.items():
            fresh = self._closed(name)[len(stored) :]
            fresh = self._publishable(stored, fresh)
            if not fresh:
                continue
            await asyncio.gather(*(self._put(f"{name}/{s.uri}") for s in fresh))
            first = not stored
            stored.extend(fresh)
            playlist = hls.render_media_playlist(stored, ended=False, target=TARGET_DURATION)
            await self._put_text(f"{name}/{hls.PLAYLIST}", playlist)
            rung = next((r for r in self.rungs if r.name == name), None)
            if first and rung is not None:
                await self.publication.on_rendition(rung.name, rung.resolution)
        if not self.master_published and all(self.segments.values()):
            await self._put_text(hls.MASTER, self._provisional_master())
            self.master_published = True
            if self.rungs:
                elapsed = time.perf_counter() - self._started
                telemetry.transcode_first_playable_seconds.labels(self.rungs[-1].name).observe(
                    elapsed
                )
            await self.publication.on_playable()

    async def complete(self) -> None:
        """Store everything not yet stored: segments, pictures, then the ended playlists, the
        master playlist last (a player that reads it finds everything it names)."""
        files = sorted(p for p in self.out.rglob("*") if p.is_file())
        names = [p.relative_to(self.out).as_posix() for p in files]
        published = self.published
        playlists = [n for n in names if n.endswith(".m3u8") and n != hls.MASTER]
        rest = [n for n in names if n not in published and n not in playlists and n != hls.MASTER]
        await asyncio.gather(*(self._put(n, consume=True) for n in rest))
        await asyncio.gather(*(self._put(n, consume=True) for n in playlists))
        await self._put(hls.MASTER, consume=True)

    def _closed(self, name: str) -> list[hls.Segment]:
        """The segments FFmpeg has closed, from its playlist (none yet, or mid-rename: [])."""
        try:
            text = (self.out / name / hls.PLAYLIST).read_text()
            return hls.parse_media_playlist(text).segments
        except (OSError, ValueError):
            return []

    def _publishable(
        self, stored: list[hls.Segment], fresh: list[hls.Segment]
    ) -> list[hls.Segment]:
        """`fresh` up to the segment that may yet be merged with a short tail."""
        if not self.duration:
            return []  # unknown length: everything waits for the end
        end = sum(s.duration for s in stored)
        taken = []
        for segment in fresh:
            end += segment.duration
            if end > self.duration - (hls.MIN_TAIL_SECONDS + HOLD_MARGIN):
                break
            taken.append(segment)
        return taken

    def _provisional_master(self) -> str:
        first_bound = 1.07 + 1.5 / FIRST_SEGMENT_SECONDS  # maxrate + bufsize over a 2 s segment

        def nominal(rung: Rung) -> hls.Nominal:
            path = self.out / rung.name / self.segments[rung.name][0].uri
            kbps = rung.video_kbps
            return hls.Nominal(rung.name, path, round(kbps * 1000 * first_bound), kbps * 1000)

        audio = None
        if hls.AUDIO_DIR in self.segments:
            path = self.out / hls.AUDIO_DIR / self.segments[hls.AUDIO_DIR][0].uri
            audio = hls.Nominal(hls.AUDIO_DIR, path, AUDIO_KBPS * 1200, AUDIO_KBPS * 1000)
        return hls.provisional_master(
            [nominal(r) for r in self.rungs], audio, fallback_fps=self.fps
        )

    async def _put(self, name: str, *, consume: bool = False) -> None:
        async with self._gate:
            key = blob_keys.child(self.publication.prefix, name)
            await self.publication.blobs.put_file(key, self.out / name, consume=consume)

    async def _put_text(self, name: str, text: str) -> None:
        key = blob_keys.child(self.publication.prefix, name)
        await self.publication.blobs.put_bytes(key, text.encode())
