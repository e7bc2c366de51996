"""The server's side of a run: its `/metrics`, scraped once a second.

Under `reelwire serve --processes N` any process answers with the sum over all of them, so one
scrape covers the machine's server. CPU is the rise of `process_cpu_seconds_total` over the
wall time since a scrape at least CPU_WINDOW seconds before (100 = one core busy): each process
publishes its CPU time once a second, so the rate between two scrapes a second apart would jump
between half and double the truth. A counter that went backwards (a server restarted without a
supervisor) starts the window again.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CPU = "process_cpu_seconds_total"
RSS = "process_resident_memory_bytes"
SOCKETS = "reelwire_ws_connections"
QUEUE = "reelwire_transcode_queue_depth"
WANTED = (CPU, RSS, SOCKETS, QUEUE)
CPU_WINDOW = 3.0  # seconds the CPU rate is taken over
TIMEOUT = 2.0  # a scrape slower than this gives no figures for its second


def parse(text: str, wanted: tuple[str, ...] = WANTED) -> dict[str, float]:
    """The sum over label sets of each wanted series in Prometheus's text format."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace, space = line.find("{"), line.find(" ")
        name = line[: brace if 0 <= brace < space else space]
        if name not in wanted:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        found[name] = found.get(name, 0.0) + value
    return found


@dataclass
class Scraper:
    """Reads the series a run's timeline shows."""

    http: aiohttp.ClientSession
    url: str  # the server's base URL
    token: str | None = None
    # (monotonic, cpu seconds) of recent scrapes, oldest first
    history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=16))
    problem: str | None = None  # why there are no figures, when there are none

    async def sample(self) -> dict[str, Any] | None:
        """`{"cpu_percent", "rss_mib", "sockets", "queue_depth"}` (a figure the server does
        not expose is None), or None when /metrics did not answer."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with self.http.get(
                f"{self.url}/metrics", headers=headers, timeout=aiohttp.ClientTimeout(total=TIMEOUT)
            ) as response:
                if response.status != 200:
                    self.problem = f"/metrics answered {response.status}"
                    await response.read()
                    return None
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.problem = f"/metrics unreachable ({type(exc).__name__})"
            return None
        now = time.monotonic()
        values = parse(text)
        cpu_percent = None
        if CPU in values:
            cpu_percent = self._cpu_rate(now, values[CPU])
        rss = values.get(RSS)
        sockets = values.get(SOCKETS)
        queue = values.get(QUEUE)
        return {
            "cpu_percent": cpu_percent,
            "rss_mib": None if rss is None else round(rss / 2**20, 1),
            "sockets": None if sockets is None else int(sockets),
            "queue_depth": None if queue is None else int(queue),
        }

    def _cpu_rate(self, now: float, seconds: float) -> float | None:
        history = self.history
        if history and seconds < history[-1][1]:
            history.clear()  # the counter started again
        history.append((now, seconds))
        base = None
        for at, value in history:
            if now - at >= CPU_WINDOW:
                base = (at, value)  # the latest scrape a whole window back
        if base is None and len(history) > 1:
            base = history[0]  # the run's first seconds: what there is
        if base is None or now - base[0] < 0.5:
            return None
        return round((seconds - base[1]) / (now - base[0]) * 100, 1)


def summarise(samples: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Mean and peak CPU, peak RSS and sockets over a run (None with no samples)."""
    present = [s for s in samples if s is not None]
    if not present:
        return None
    cpu = [s["cpu_percent"] for s in present if s["cpu_percent"] is not None]
    rss = [s["rss_mib"] for s in present if s["rss_mib"] is not None]
    sockets = [s["sockets"] for s in present if s["sockets"] is not None]
    return {
        "cpu_percent_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
        "cpu_percent_max": max(cpu) if cpu else None,
        "rss_mib_max": max(rss) if rss else None,
        "sockets_max": max(sockets) if sockets else None,
    }
