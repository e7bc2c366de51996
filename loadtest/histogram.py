"""A sparse histogram of latencies (or any positive figure) that merges exactly.

Values go into fixed buckets: 0.1 below 100, 1 from 100 to 10,000, 100 above (a relative error
of at most 1% past 100 ms), so histograms recorded by different processes or in different
seconds add up bucket by bucket, and the percentiles of a merge are those of one histogram that
had seen every value. A percentile is the upper edge of its bucket (never above the maximum),
which errs on the side of a threshold failing.
"""

from __future__ import annotations

from typing import Any

FINE_END = 100.0  # below: 0.1 steps (keys 0-999)
MEDIUM_END = 10_000.0  # below: steps of 1 (keys 1000-10899); above: steps of 100
_MEDIUM_BASE = 900  # key = 900 + int(value) for 100 <= value < 10,000
_COARSE_BASE = 10_800  # key = 10,800 + int(value / 100) from 10,000 on

# Upper bounds (ms) the report's histogram is shown in; all of them are bucket edges.
REPORT_BOUNDS = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 20_000, 60_000,
)  # fmt: skip


def bucket_of(value: float) -> int:
    """The bucket key of a value (negative values count as 0)."""
    if value < FINE_END:
        return int(value * 10) if value > 0 else 0
    if value < MEDIUM_END:
        return _MEDIUM_BASE + int(value)
    return _COARSE_BASE + int(value / 100)


def lower_edge(key: int) -> float:
    """The smallest value a bucket holds."""
    if key < 1000:
        return key / 10
    if key < _MEDIUM_BASE + int(MEDIUM_END):
        return float(key - _MEDIUM_BASE)
    return float((key - _COARSE_BASE) * 100)


def upper_edge(key: int) -> float:
    """The bound every value of a bucket is below."""
    return lower_edge(key + 1)


class Histogram:
    """Counts per bucket, plus the exact count, sum and maximum."""

    __slots__ = ("counts", "samples", "total", "worst")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.samples = 0
        self.total = 0.0
        self.worst = 0.0

    def add(self, value: float) -> None:
        """Record one value."""
        self.samples += 1
        self.total += value
        if value > self.worst:
            self.worst = value
        counts = self.counts
        if value < FINE_END:
            key = int(value * 10) if value > 0 else 0
        elif value < MEDIUM_END:
            key = _MEDIUM_BASE + int(value)
        else:
            key = _COARSE_BASE + int(value / 100)
        counts[key] = counts.get(key, 0) + 1

    def merge(self, other: Histogram) -> Histogram:
        """Add `other`'s values to this one (returns self)."""
        counts = self.counts
        for key, count in other.counts.items():
            counts[key] = counts.get(key, 0) + count
        self.samples += other.samples
        self.total += other.total
        self.worst = max(self.worst, other.worst)
        return self

    def percentile(self, p: float) -> float:
        """The p-th percentile (0 when empty): the upper edge of the bucket holding the
        ceil(samples * p / 100)-th smallest value, capped at the maximum."""
        if not self.samples:
            return 0.0
        wanted, seen = self.samples * p / 100, 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= wanted:
                return min(upper_edge(key), self.worst)
        return self.worst

    def percentiles(self, *ps: float) -> list[float]:
        """Several percentiles in one pass over the buckets."""
        if not self.samples:
            return [0.0 for _ in ps]
        order = sorted(range(len(ps)), key=lambda i: ps[i])
        found = [self.worst] * len(ps)
        keys = sorted(self.counts)
        seen, at = 0, 0
        for i in order:
            wanted = self.samples * ps[i] / 100
            while at < len(keys) and seen < wanted:
                seen += self.counts[keys[at]]
                at += 1
            if at and seen >= wanted:
                found[i] = min(upper_edge(keys[at - 1]), self.worst)
        return found

    @property
    def mean(self) -> float:
        """The exact mean (0 when empty)."""
        return self.total / self.samples if self.samples else 0.0

    def summary(self) -> dict[str, float]:
        """p50/p95/p99/max/mean rounded to 0.1, and the count."""
        p50, p95, p99 = self.percentiles(50, 95, 99)
        return {
            "p50": round(p50, 1),
            "p95": round(p95, 1),
            "p99": round(p99, 1),
            "max": round(self.worst, 1),
            "mean": round(self.mean, 1),
            "count": self.samples,
        }

    def brief(self, *names: str) -> dict[str, float] | None:
        """Only the named figures (`p50`, `p95`, `p99`, `max`), or None when empty."""
        if not self.samples:
            return None
        ps = [float(n[1:]) for n in names if n != "max"]
        values = iter(self.percentiles(*ps))
        return {n: round(self.worst if n == "max" else next(values), 1) for n in names}

    def report_buckets(self) -> dict[str, list[float] | list[int]]:
        """`{"bounds_ms": [...], "counts": [...]}`: counts of values below each upper bound
        (and at or above the previous one); the last bound is the maximum seen."""
        if not self.samples:
            return {"bounds_ms": [], "counts": []}
        top = self.worst
        bounds: list[float] = [b for b in REPORT_BOUNDS if b < top]
        bounds.append(round(top, 1) if round(top, 1) >= top else round(top + 0.05, 1))
        counts = [0] * len(bounds)
        for key, count in self.counts.items():
            edge = upper_edge(key)
            index = next((i for i, b in enumerate(bounds) if edge <= b), len(bounds) - 1)
            counts[index] += count
        return {"bounds_ms": bounds, "counts": counts}

    def to_json(self) -> dict[str, Any]:
        """A compact JSON form (keys and counts as two lists)."""
        keys = sorted(self.counts)
        return {
            "k": keys,
            "n": [self.counts[k] for k in keys],
            "samples": self.samples,
            "total": self.total,
            "worst": self.worst,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Histogram:
        """The inverse of to_json (an empty histogram for None)."""
        made = cls()
        if not data:
            return made
        made.counts = dict(zip(data["k"], data["n"], strict=True))
        made.samples = int(data["samples"])
        made.total = float(data["total"])
        made.worst = float(data["worst"])
        return made


def merged(histograms: list[Histogram]) -> Histogram:
    """One histogram holding every value of `histograms`."""
    out = Histogram()
    for histogram in histograms:
        out.merge(histogram)
    return out


# The name the fan-out benchmarks know it by.
Latency = Histogram
