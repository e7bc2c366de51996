"""The live progress line: one line rewritten every second on stderr (a new line every five
seconds when stderr is not a terminal), with a bar while the viewers ramp up."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from loadtest.histogram import Histogram

BAR = 20


class Progress:
    """What the load processes reported last, folded into one line."""

    def __init__(
        self,
        viewers: int,
        ramp: float,
        player: bool,
        scenario: str = "steady",
        stream: TextIO = sys.stderr,
    ) -> None:
        self.viewers = viewers
        self.scenario = scenario
        self.ramp = ramp
        self.player = player
        self.stream = stream
        self.latest: dict[int, dict[str, Any]] = {}
        self.latency = Histogram()
        self.ttfb = Histogram()
        self.reconnects = 0
        self.gaps = [0, 0]
        self.stalls = 0
        self.server: dict[str, Any] | None = None
        self.ticks = 0
        self.tty = stream.isatty()

    def add(self, worker: int, sample: dict[str, Any]) -> None:
        """One second of one load process."""
        self.latest[worker] = sample
        self.latency.merge(Histogram.from_json(sample["latency"]))
        self.ttfb.merge(Histogram.from_json(sample["ttfb"]))
        self.reconnects += sample["reconnects"]
        self.gaps[0] += sample["gaps_recovered"]
        self.gaps[1] += sample["gaps_lost"]
        self.stalls += sample["stalls"]

    def line(self, at: float) -> str:
        """The line for `at` seconds into the run."""
        latest = self.latest.values()
        live = sum(s["live"] for s in latest)
        connected = sum(s["connected"] for s in latest)
        failed = sum(s["failed"] for s in latest)
        rate = sum(s["messages"] / s["length"] for s in latest)
        parts = [f"[{at:6.1f}s]"]
        if at < self.ramp or connected + failed < self.viewers:
            done = (connected + failed) / max(1, self.viewers)
            filled = min(BAR, int(done * BAR))
            parts.append(f"ramp [{'#' * filled}{'.' * (BAR - filled)}] {done * 100:3.0f}%")
        else:
            parts.append(self.scenario)
        parts.append(f"live {live}/{self.viewers} failed {failed}")
        parts.append(f"| {rate:,.0f} msg/s")
        if self.latency.samples:
            p50, p99 = self.latency.percentiles(50, 99)
            parts.append(f"p50 {p50:.1f} p99 {p99:.1f} ms")
        parts.append(f"| reconnects {self.reconnects} gaps {self.gaps[0]}/{self.gaps[1]}")
        if self.player:
            p95 = self.ttfb.percentile(95)
            parts.append(f"| ttfb p95 {p95:.1f} ms stalls {self.stalls}")
        if self.server is not None and self.server.get("cpu_percent") is not None:
            parts.append(
                f"| server cpu {self.server['cpu_percent']:.0f}% "
                f"rss {self.server.get('rss_mib') or 0:.0f} MiB"
            )
        return " ".join(parts)

    def show(self, at: float) -> None:
        """Print the line (rewritten in place on a terminal)."""
        self.ticks += 1
        if self.tty:
            print(f"\r{self.line(at)}   ", end="", file=self.stream, flush=True)
        elif self.ticks % 5 == 0:
            print(self.line(at), file=self.stream, flush=True)

    def done(self) -> None:
        """End the line."""
        if self.tty:
            print(file=self.stream, flush=True)
