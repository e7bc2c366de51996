"""Plotting primitives for the load test report: scales, ticks, number formats, and two kinds
of chart drawn as inline SVG text: lines over time, and a histogram on a log axis.

Nothing here knows about load tests. Colours are CSS classes (`c1`..`c7`, `bad`, `event`) that
the page styles, so a chart follows the page into dark mode and onto paper. Every time chart
uses the same width and margins, so charts stacked in one column share one time axis. Each
chart is `role="img"` with an `aria-label`; hovering a column of a time chart (or a bar of the
histogram) shows the exact values in a native tooltip (an SVG `<title>`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH = 960
LEFT = 76  # room for the y tick labels; the same in every chart, so time axes line up
RIGHT = 24
BADGE_ROW = 22  # the strip above the plot where event markers carry their numbers
LABEL_ROW = 15  # one row of event labels (only on the chart that shows them)
BOTTOM = 30
MAX_COLUMNS = 480  # hover columns per chart; longer timelines group samples per column


def esc(text: object) -> str:
    """Text made safe for HTML and SVG, in element content and in quoted attributes."""
    return escape(str(text), quote=True)


# -- numbers ---------------------------------------------------------------------------------

UNIT_SUFFIX = {"ms": " ms", "%": "%", "MiB": " MiB", "/s": "/s", "s": " s", "": ""}


def exact(value: float | None, unit: str = "") -> str:
    """A value as measured, for tables and hover text: `1,840.3 ms`, `5,000`, `42.5%`."""
    if value is None or not math.isfinite(value):
        return "—"
    if float(value).is_integer() and abs(value) < 1e15:
        text = f"{int(value):,}"
    else:  # at least a decimal, and four significant digits for small values
        decimals = min(max(1, 3 - math.floor(math.log10(abs(value)))), 6)
        text = f"{value:,.{decimals}f}".rstrip("0").rstrip(".")
    return text + UNIT_SUFFIX.get(unit, f" {unit}")


def compact(value: float) -> str:
    """A tick label: 2k, 1.5M, 250, 0.5."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}"


def tick_label(value: float, unit: str) -> str:
    """A y (or histogram x) tick: milliseconds turn into seconds past 1,000."""
    if unit == "ms":
        return f"{value / 1000:.3g} s" if value >= 1000 else f"{value:.3g} ms"
    if unit == "%":
        return f"{compact(value)}%"
    if unit == "MiB":
        return f"{compact(value)} MiB"
    if unit == "/s":
        return f"{compact(value)}/s"
    return compact(value)


def clock(seconds: float, span: float) -> str:
    """A time tick: `40 s` on short runs, `2:30` (or `1:02:30`) on long ones."""
    if span <= 300:
        return f"{seconds:g} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


# -- scales and ticks -------------------------------------------------------------------------


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about `count` intervals."""
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * magnitude >= raw * (1 - 1e-9):
            return multiple * magnitude
    return 10 * magnitude


def linear_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round ticks from `low` to `high` inclusive (both should be on the step)."""
    step = nice_step(high - low, count)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-6:
        ticks.append(round(value, 10))
        value += step
    return ticks


def zero_based(top: float, counts: Sequence[int] = (4, 5, 6)) -> tuple[float, float, float]:
    """(0, end, step): the lowest round end above `top` (at least 1) that one of `counts`
    round steps reach."""
    top = max(top, 1.0) * 1.04
    candidates = []
    for count in counts:
        step = nice_step(top, count)
        candidates.append((math.ceil(top / step - 1e-9) * step, count, step))
    end, _, step = min(candidates)
    return 0.0, end, step


def decades(low: float, high: float) -> tuple[float, float]:
    """A log domain: whole powers of ten around [low, high], at least one decade."""
    low_exp = math.floor(math.log10(low))
    high_exp = max(math.ceil(math.log10(high)), low_exp + 1)
    return 10.0**low_exp, 10.0**high_exp


def log_ticks(low: float, high: float, minor: bool = False) -> list[float]:
    """Labelled ticks on a log axis: 1-2-5 over up to two decades, powers of ten beyond; with
    `minor`, the 2s and 5s that are not labelled (for a fainter grid)."""
    few = math.log10(high / low) <= 2.01
    multiples = (2, 5) if minor else (1, 2, 5) if few else (1,)
    if minor and few:
        return []
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for multiple in multiples:
            value = multiple * 10.0**exponent
            if low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
                ticks.append(value)
    return ticks


@dataclass(frozen=True)
class Scale:
    """Maps a domain [low, high] onto pixels [start, end], linearly or on log10."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False
    step: float = 0.0  # linear ticks every `step` (0: about five round ones)

    def __call__(self, value: float) -> float:
        if self.log:
            value = max(value, self.low)
            low, high, value = math.log10(self.low), math.log10(self.high), math.log10(value)
        else:
            low, high = self.low, self.high
        if high == low:
            return (self.start + self.end) / 2
        fraction = min(max((value - low) / (high - low), 0.0), 1.0)
        return self.start + fraction * (self.end - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            return log_ticks(self.low, self.high)
        if self.step > 0:
            count = round((self.high - self.low) / self.step)
            return [self.low + i * self.step for i in range(count + 1)]
        return linear_ticks(self.low, self.high)

    def minor_ticks(self) -> list[float]:
        return log_ticks(self.low, self.high, minor=True) if self.log else []


# -- time charts ------------------------------------------------------------------------------


@dataclass
class Line:
    """One series over the chart's time points; None leaves a gap in the line."""

    key: str  # data-series attribute, e.g. "p99"
    label: str  # legend and hover text
    values: Sequence[float | None]
    color: str  # CSS class: c1..c7, bad
    dashed: bool = False
    area: bool = False  # shade below the line
    dots: bool = False  # a dot on every sample above zero, so that rare small counts show


@dataclass
class Marker:
    """A numbered vertical line at a moment: something the run did."""

    x: float
    number: int
    text: str


@dataclass
class Rule:
    """A horizontal reference line, such as a threshold."""

    y: float
    label: str
    color: str = "bad"


@dataclass
class TimeChart:
    key: str  # data-chart attribute
    description: str  # aria-label: one line saying what the chart shows
    xs: Sequence[float]  # seconds since the start, one per sample
    x_domain: tuple[float, float]
    lines: list[Line]
    unit: str = ""  # y unit: "ms", "%", "MiB", "/s" or "" for counts
    log_y: bool = False
    markers: Sequence[Marker] = ()
    rules: Sequence[Rule] = ()
    height: int = 210
    y_top_at_least: float = 0.0  # e.g. 100 for a CPU percentage
    label_markers: bool = False  # write each marker's text beside it (the top chart)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _label_rows(markers: Sequence[Marker], x: Scale, rows: int = 3) -> list[tuple[int, bool]]:
    """For each marker's label, a row where it overlaps no other label (-1: no room) and
    whether it sits left of its line (near the right edge)."""
    ends = [-math.inf] * rows
    placed = []
    for marker in markers:
        width = 6.6 * len(marker.text) + 10
        left = x(marker.x) + 5
        to_left = left + width > WIDTH - 4
        if to_left:
            left = x(marker.x) - 5 - width
        row = next((r for r in range(rows) if ends[r] < left), -1)
        if row >= 0:
            ends[row] = left + width + 6
        placed.append((row, to_left))
    return placed


def _segments(
    xs: Sequence[float], values: Sequence[float | None]
) -> list[list[tuple[float, float]]]:
    """Runs of consecutive samples that have a value."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for t, value in zip(xs, values, strict=False):
        if value is None or not math.isfinite(value):
            if current:
                runs.append(current)
            current = []
        else:
            current.append((t, value))
    if current:
        runs.append(current)
    return runs


def _y_scale(chart: TimeChart, top: float, bottom: float) -> Scale:
    values = [v for line in chart.lines for v in _finite(line.values)]
    values += [rule.y for rule in chart.rules]
    if chart.log_y:
        positive = [v for v in values if v > 0]
        low, high = decades(min(positive), max(positive)) if positive else (1.0, 10.0)
        return Scale(low, high, bottom, top, log=True)
    counts = (4, 5, 6) if bottom - top > 120 else (2, 3, 4)
    low, high, step = zero_based(max([*values, chart.y_top_at_least, 0.0]), counts)
    return Scale(low, high, bottom, top, step=step)


def time_chart(chart: TimeChart) -> str:
    """The chart as an `<svg>` element."""
    x = Scale(chart.x_domain[0], chart.x_domain[1], LEFT, WIDTH - RIGHT)
    rows = _label_rows(chart.markers, x) if chart.label_markers else []
    label_rows = max((row for row, _ in rows), default=-1) + 1
    top = BADGE_ROW + LABEL_ROW * label_rows
    bottom = chart.height + LABEL_ROW * label_rows - BOTTOM
    height = chart.height + LABEL_ROW * label_rows
    y = _y_scale(chart, top, bottom)
    span = chart.x_domain[1] - chart.x_domain[0]
    out = [
        f'<svg class="chart" data-chart="{esc(chart.key)}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{esc(chart.description)}">',
        f"<title>{esc(chart.description)}</title>",
    ]
    # grid and axes
    out.append('<g class="grid">')
    for tick in y.minor_ticks():
        py = y(tick)
        out.append(
            f'<line class="minor" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"/>'
        )
    for tick in y.ticks():
        py = y(tick)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"/>')
    out.append("</g>")
    out.append('<g class="axis y">')
    for tick in y.ticks():
        out.append(
            f'<text x="{LEFT - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">'
            f"{esc(tick_label(tick, chart.unit))}</text>"
        )
    out.append("</g>")
    out.append('<g class="axis x">')
    out.append(f'<line class="base" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    for tick in linear_ticks(chart.x_domain[0], chart.x_domain[1], 10):
        px = x(tick)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 5}"/>')
        out.append(
            f'<text x="{px:.1f}" y="{bottom + 19}" text-anchor="middle">'
            f"{esc(clock(tick, span))}</text>"
        )
    out.append("</g>")
    # reference lines
    for rule in chart.rules:
        py = y(rule.y)
        out.append(
            f'<g class="rule {esc(rule.color)}"><line x1="{LEFT}" x2="{WIDTH - RIGHT}" '
            f'y1="{py:.1f}" y2="{py:.1f}"/><text x="{WIDTH - RIGHT - 4}" y="{py - 5:.1f}" '
            f'text-anchor="end">{esc(rule.label)}</text></g>'
        )
    # event markers: a dashed line through the plot, a numbered badge above it
    for index, marker in enumerate(chart.markers):
        px = x(marker.x)
        title = f"{marker.number}. at {exact(marker.x, 's')}: {marker.text}"
        out.append(f'<g class="event" data-event="{marker.number}"><title>{esc(title)}</title>')
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{BADGE_ROW - 4}" y2="{bottom}"/>')
        out.append(f'<circle cx="{px:.1f}" cy="{BADGE_ROW - 11}" r="8"/>')
        out.append(
            f'<text class="badge" x="{px:.1f}" y="{BADGE_ROW - 7}" text-anchor="middle">'
            f"{marker.number}</text>"
        )
        if rows and rows[index][0] >= 0:
            row, to_left = rows[index]
            ly = BADGE_ROW + LABEL_ROW * row + 11
            lx, anchor = (px - 5, "end") if to_left else (px + 5, "start")
            out.append(
                f'<text class="label" x="{lx:.1f}" y="{ly}" text-anchor="{anchor}">'
                f"{esc(marker.text)}</text>"
            )
        out.append("</g>")
    # series: shaded areas first, lines over them
    for line in chart.lines:
        if not line.area:
            continue
        for run in _segments(chart.xs, line.values):
            if len(run) < 2:
                continue
            points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
            first, last = x(run[0][0]), x(run[-1][0])
            out.append(
                f'<path class="area {esc(line.color)}" '
                f'd="M{first:.1f},{bottom} L{points} L{last:.1f},{bottom} Z"/>'
            )
    for line in chart.lines:
        dashed = " dashed" if line.dashed else ""
        out.append(f'<g class="series {esc(line.color)}{dashed}" data-series="{esc(line.key)}">')
        for run in _segments(chart.xs, line.values):
            points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
            out.append(f'<polyline points="{points}"/>')
            # a lone sample has no line to show it; with `dots`, counts above zero stand out
            alone = run if len(run) == 1 else []
            for t, value in [(t, v) for t, v in run if v > 0] if line.dots else alone:
                out.append(f'<circle cx="{x(t):.1f}" cy="{y(value):.1f}" r="3"/>')
        out.append("</g>")
    out.extend(_columns(chart, x, y, top, bottom))
    out.append("</svg>")
    return "\n".join(out)


def _columns(chart: TimeChart, x: Scale, y: Scale, top: float, bottom: float) -> list[str]:
    """Hover targets: one column per sample (or per group of samples on long runs) whose
    tooltip gives every series' exact value there, with a guide line and dots on hover."""
    count = len(chart.xs)
    if not count:
        return []
    group = math.ceil(count / MAX_COLUMNS)
    out = ['<g class="columns">']
    for first in range(0, count, group):
        last = min(first + group, count) - 1
        left = (x(chart.xs[first - 1]) + x(chart.xs[first])) / 2 if first else float(LEFT)
        right = (
            (x(chart.xs[last]) + x(chart.xs[last + 1])) / 2
            if last + 1 < count
            else float(WIDTH - RIGHT)
        )
        t0, t1 = chart.xs[first], chart.xs[last]
        span = chart.x_domain[1] - chart.x_domain[0]
        when = clock(t0, span) if first == last else f"{clock(t0, span)} to {clock(t1, span)}"
        lines = [f"t = {when}"]
        dots = []
        for line in chart.lines:
            values = _finite(line.values[first : last + 1])
            if first == last:
                lines.append(f"{line.label}: {exact(values[0], chart.unit) if values else '—'}")
                if values:
                    dots.append(
                        f'<circle class="{esc(line.color)}" cx="{x(t0):.1f}" '
                        f'cy="{y(values[0]):.1f}" r="3.5"/>'
                    )
            elif values:
                low, high = exact(min(values), chart.unit), exact(max(values), chart.unit)
                lines.append(f"{line.label}: {low} to {high}")
            else:
                lines.append(f"{line.label}: —")
        out.append(f'<g class="col"><title>{esc(chr(10).join(lines))}</title>')
        out.append(
            f'<rect x="{left:.1f}" y="{top}" width="{max(right - left, 0.5):.1f}" '
            f'height="{bottom - top}"/>'
        )
        mid = x(t0) if first == last else (left + right) / 2
        out.append(f'<line x1="{mid:.1f}" x2="{mid:.1f}" y1="{top}" y2="{bottom}"/>')
        out.extend(dots)
        out.append("</g>")
    out.append("</g>")
    return out


# -- histogram --------------------------------------------------------------------------------


@dataclass
class Bar:
    """Counts of values in (low, high]; `open_ended` for the bucket past the last bound,
    `from_zero` for a first bucket that holds everything up to its bound (drawn from `low`)."""

    low: float
    high: float
    count: int
    open_ended: bool = False
    from_zero: bool = False


@dataclass
class Histogram:
    key: str
    description: str
    bars: list[Bar]
    unit: str = "ms"
    marks: list[tuple[float, str]] = field(default_factory=list)  # (value, label), e.g. p99
    height: int = 250


MARK_ROWS = (15, 31)  # baselines of the histogram's mark labels, above its bars


def _mark_labels(
    marks: list[tuple[float, str]], x: Scale, low: float, high: float
) -> list[tuple[float, tuple[float, int, str], str]]:
    """(line x, (label x, baseline, anchor), label) for each mark in range: its label right of
    its line, else left of it, on the first row where it overlaps no other label."""
    taken: list[tuple[int, float, float]] = []  # (baseline, left, right)
    placed = []
    for value, label in sorted(marks):
        if not low <= value <= high:
            continue
        px, width = x(value), 7.4 * len(label)
        spots = [
            (row, left, anchor)
            for row in MARK_ROWS
            for left, anchor in ((px + 5, "start"), (px - 5 - width, "end"))
        ]
        for row, left, anchor in spots:
            right = left + width
            inside = left >= 0 and right <= WIDTH
            if inside and all(r != row or right < a or left > b for r, a, b in taken):
                taken.append((row, left - 4, right + 4))
                placed.append((px, (px + 5 if anchor == "start" else px - 5, row, anchor), label))
                break
    return placed


def histogram_chart(chart: Histogram) -> str:
    """Bars on a log x axis (buckets of equal ratio get equal width) and a log y axis, so that
    a tail of a few hundred slow values shows beside a peak of millions."""
    top, bottom = MARK_ROWS[-1] + 12, chart.height - BOTTOM
    low = min(bar.low for bar in chart.bars)
    high = max(bar.high for bar in chart.bars)
    x = Scale(low, high, LEFT, WIDTH - RIGHT, log=True)
    counts = [bar.count for bar in chart.bars if bar.count > 0] or [1]
    y = Scale(*decades(min(counts), max(counts)), bottom, top, log=True)
    total = sum(bar.count for bar in chart.bars) or 1
    out = [
        f'<svg class="chart" data-chart="{esc(chart.key)}" viewBox="0 0 {WIDTH} {chart.height}" '
        f'role="img" aria-label="{esc(chart.description)}">',
        f"<title>{esc(chart.description)}</title>",
        '<g class="grid">',
    ]
    for tick in y.ticks():
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
        )
    out.append('</g><g class="axis y">')
    for tick in y.ticks():
        out.append(
            f'<text x="{LEFT - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">'
            f"{esc(compact(tick))}</text>"
        )
    out.append('</g><g class="axis x">')
    out.append(f'<line class="base" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{bottom}" y2="{bottom}"/>')
    for tick in log_ticks(*decades(low, high), minor=True):
        if low <= tick <= high:
            px = x(tick)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 3}"/>')
    for tick in log_ticks(*decades(low, high)):
        if not low * (1 - 1e-9) <= tick <= high * (1 + 1e-9):
            continue
        px = x(tick)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 6}"/>')
        out.append(
            f'<text x="{px:.1f}" y="{bottom + 19}" text-anchor="middle">'
            f"{esc(tick_label(tick, chart.unit))}</text>"
        )
    out.append('</g><g class="bars">')
    below = 0
    for bar in chart.bars:
        below += bar.count
        left, right = x(bar.low), x(bar.high)
        if bar.open_ended:
            where = f"over {exact(bar.low, chart.unit)}"
        elif bar.from_zero:
            where = f"up to {exact(bar.high, chart.unit)}"
        else:
            where = f"{exact(bar.low, chart.unit)} to {exact(bar.high, chart.unit)}"
        title = f"{where}: {bar.count:,} ({bar.count / total:.1%}; {below / total:.1%} at or below)"
        kind = "bar open" if bar.open_ended else "bar"
        out.append(f'<g class="{kind}"><title>{esc(title)}</title>')
        out.append(
            f'<rect class="hit" x="{left:.1f}" y="{top}" width="{right - left:.1f}" '
            f'height="{bottom - top}"/>'
        )
        if bar.count:
            py = min(y(bar.count), bottom - 2)
            out.append(
                f'<rect x="{left + 0.75:.1f}" y="{py:.1f}" '
                f'width="{max(right - left - 1.5, 0.5):.1f}" height="{max(bottom - py, 2):.1f}"/>'
            )
        out.append("</g>")
    out.append("</g>")
    for px, (lx, ly, anchor), label in _mark_labels(chart.marks, x, low, high):
        out.append(
            f'<g class="mark"><title>{esc(label)}</title>'
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{ly + 4}" y2="{bottom}"/>'
            f'<text x="{lx:.1f}" y="{ly}" text-anchor="{anchor}">{esc(label)}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)
