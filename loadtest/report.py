"""The load test report: one self-contained HTML file to look at a run and to pass around.

`write_report(path, run)` writes it. The file needs nothing at view time: the CSS is inline,
the charts are inline SVG drawn here (see `loadtest/svgplot.py`), there is no script, and a
Content-Security-Policy forbids the page any network request. It follows the reader's light or
dark setting and prints on white.

The run is a plain dict (the load tester builds it); every part but the scenario's name may be
missing or None and the report shows what there is:

    scenario, started_at (ISO 8601), machine {cores, load_before, load_after}, options {...},
    summary {viewers, connected, failed, messages, messages_per_second, latency_ms {p50, p95,
        p99, max, mean, count}, reconnects, gaps_recovered, gaps_lost, segment_ttfb_ms {...},
        stalls, seconds, ...},
    slo {thresholds: [{metric, op, limit, unit, measured, ok}], verdict: pass | fail | none},
    timeline [{t, connected, deliveries_per_s, latency_ms {p50, p95, p99, max} | None,
        reconnects, gaps_recovered, gaps_lost, segment_ttfb_ms {p50, p95} | None, stalls,
        server {cpu_percent, rss_mib, sockets, queue_depth} | None}],
    latency_histogram {bounds_ms: [upper bounds], counts: [...] (one more: past the last)},
    events [{t, what}]

Counts in the timeline (reconnects, gaps, stalls) are read as per sample; a series that only
ever grows and ends at the summary's total is taken as a running total and differenced.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.svgplot import (
    Bar,
    Histogram,
    Line,
    Marker,
    Rule,
    TimeChart,
    clock,
    esc,
    exact,
    histogram_chart,
    time_chart,
)

LATENCY_METRICS = ("p50", "p90", "p95", "p99", "max", "mean")  # threshold names of percentiles
PERCENTILES = ("p50", "p90", "p95", "p99", "p999", "max", "mean", "count")
LATENCY_LINES = (
    ("p50", "c1", False),
    ("p95", "c2", False),
    ("p99", "c5", False),
    ("max", "c7", True),
)
MAX_REBINNED = 60  # histograms with more buckets are regrouped into 5 per decade
LABELS = {
    "viewers": "Viewers asked for",
    "videos": "Videos watched",
    "connected": "Connected",
    "live_peak": "Connected at once (peak)",
    "failed": "Failed to connect",
    "messages": "Messages received",
    "video_updates": "video_update messages",
    "messages_per_second": "Messages per second",
    "reconnects": "Reconnects",
    "gaps_recovered": "Gaps recovered",
    "gaps_lost": "Gaps lost",
    "stalls": "Playback stalls",
    "seconds": "Duration",
    "latency_ms": "Event latency",
    "video_update_latency_ms": "video_update latency",
    "replay_latency_ms": "Replayed after a reconnect, latency",
    "segment_ttfb_ms": "Segment time to first byte",
    "server_closes": "Server closes, by code",
    "actions": "REST actions",
    "events": "Events received",
    "viewer": "Viewer kind",
    "workers": "Load processes",
    "lost": "Lost (gaps and viewers not back)",
    "server": "Server",
    "loader_lag_ms": "Load processes: how late their loops ran",
    "loader_cpu": "Load processes: CPU",
    "server_metrics": "Server metrics",
    "players": "Players",
    "incident": "Incident",
    "burst": "Burst",
    "ramp_quarters": "Latency by quarter of the ramp",
    "before_event": "Before the event",
    "during_event": "During the event",
}
UNITS = {"messages_per_second": "/s", "seconds": "s", "stall_seconds": "s"}
BAD_WHEN_ANY = ("failed", "gaps_lost", "lost", "stalls", "stalled_players", "errors", "http_errors")
METRIC_HINTS = {
    "": "event latency",
    "update_": "video_update latency",
    "ttfb_": "segment time to first byte",
    "startup_": "player start-up",
    "connected": "viewers connected",
    "failed": "viewers that never connected",
    "lost": "gaps not recovered and viewers not back",
    "gaps_lost": "gaps not recovered",
    "reconnects": "viewer reconnects",
    "stalls": "player buffer ran dry",
    "stalled": "players that stalled",
    "stall_seconds": "time players stalled",
    "http_errors": "player HTTP errors",
    "errors": "REST actions refused",
    "recovery_s": "until every viewer was back",
    "rate": "deliveries per second",
}
OPS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠"}


def write_report(path: Path, run: dict[str, Any]) -> None:
    """Write the run's report to `path` (one HTML file; its folder is made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(run), encoding="utf-8")


def render_report(run: dict[str, Any]) -> str:
    """The report as one HTML document."""
    run = _dict(run)
    summary = _dict(run.get("summary"))
    slo = _dict(run.get("slo"))
    timeline = sorted(
        (
            s
            for s in _list(run.get("timeline"))
            if isinstance(s, dict) and _num(s.get("t")) is not None
        ),
        key=lambda s: _num(s.get("t")) or 0.0,
    )
    events = sorted(
        (
            (t, str(e.get("what") or "event"))
            for e in _list(run.get("events"))
            if isinstance(e, dict) and (t := _num(e.get("t"))) is not None
        ),
        key=lambda pair: pair[0],
    )
    scenario = str(run.get("scenario") or "Unnamed scenario")
    sections = [
        _header(scenario, run, summary, slo),
        _nav(),
        _summary_section(summary),
        _timeline_section(timeline, events, summary, slo),
        _histogram_section(_dict(run.get("latency_histogram")), summary),
        _options_section(_dict(run.get("options"))),
    ]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            # Nothing may be fetched: the report is whole in itself, also when opened offline.
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="color-scheme" content="light dark">',
            f"<title>{esc(scenario)} · load test report</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            "<main>",
            *sections,
            "<footer><p>Written by <code>reelwire loadtest</code>. This file is complete in "
            "itself: it loads nothing and works offline.</p></footer>",
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )


# -- reading the run --------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A finite number, or None for anything else (bools, strings, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _at(sample: dict[str, Any], *path: str) -> float | None:
    """A number inside nested dicts, None where any step is missing."""
    value: Any = sample
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return _num(value)


def _per_sample(values: list[float | None], total: float | None) -> list[float | None]:
    """Counts per sample: a running total (never falls, ends at the summary's total, which the
    plain sum is not) is differenced."""
    present = [v for v in values if v is not None]
    if (
        total
        and present
        and present[-1] == total
        and sum(present) != total
        and all(b >= a for a, b in itertools.pairwise(present))
    ):
        out: list[float | None] = []
        previous = 0.0
        for value in values:
            out.append(None if value is None else value - previous)
            previous = previous if value is None else value
        return out
    return values


def _peak(xs: list[float], values: list[float | None]) -> tuple[float, float] | None:
    """(value, t) of the highest value."""
    pairs = [(v, t) for t, v in zip(xs, values, strict=False) if v is not None]
    return max(pairs, key=lambda pair: pair[0]) if pairs else None


# -- header and verdict -----------------------------------------------------------------------


def _when(started: Any) -> str:
    if not started:
        return "—"
    try:
        moment = datetime.fromisoformat(str(started))
    except ValueError:
        return str(started)
    if moment.tzinfo is not None and moment.utcoffset() == UTC.utcoffset(None):
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.isoformat(sep=" ", timespec="seconds")


def _loads(values: Any) -> str:
    numbers = [_num(v) for v in _list(values)]
    return " / ".join(f"{n:.2f}" for n in numbers if n is not None) or "—"


def _header(
    scenario: str, run: dict[str, Any], summary: dict[str, Any], slo: dict[str, Any]
) -> str:
    machine = _dict(run.get("machine"))
    cores = _num(machine.get("cores"))
    seconds = _num(summary.get("seconds"))
    meta = [
        ("Started", _when(run.get("started_at"))),
        ("Duration", exact(seconds, "s") if seconds is not None else "—"),
        ("Machine", f"{int(cores)} cores" if cores else "—"),
        (
            "Load 1 / 5 / 15 min",
            f"{_loads(machine.get('load_before'))} before → "
            f"{_loads(machine.get('load_after'))} after",
        ),
    ]
    items = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in meta)
    note = ""
    before = [_num(v) for v in _list(machine.get("load_before"))]
    if cores and before and before[0] is not None and before[0] >= cores * 0.5:
        note = (
            f'<p class="note">The machine was already busy when the run started (1-minute load '
            f"{before[0]:.2f} on {int(cores)} cores): other work shared the CPU, so the figures "
            "may be worse than the server alone would give.</p>"
        )
    return (
        '<header class="head">'
        '<div class="title"><p class="kicker">Reelwire load test report</p>'
        f'<h1>{esc(scenario)}</h1><dl class="meta">{items}</dl>{note}</div>'
        f"{_verdict_badge(slo)}</header>{_thresholds(slo)}"
    )


def _thresholds_of(slo: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in _list(slo.get("thresholds")) if isinstance(t, dict)]


def _verdict_badge(slo: dict[str, Any]) -> str:
    verdict = str(slo.get("verdict") or "none").lower()
    thresholds = _thresholds_of(slo)
    breached = sum(1 for t in thresholds if t.get("ok") is False)
    if verdict == "pass":
        kind, word = "pass", "PASS"
        sub = f"all {len(thresholds)} thresholds met" if thresholds else "no threshold breached"
    elif verdict == "fail":
        kind, word = "fail", "FAIL"
        sub = f"{breached} of {len(thresholds)} thresholds breached"
    elif verdict == "none":
        kind, word, sub = "none", "NO SLO", "no thresholds were set"
    else:
        kind, word, sub = "none", verdict.upper(), "verdict as reported"
    return (
        f'<div class="verdict {kind}" id="verdict" role="status">'
        f'<span class="word">{esc(word)}</span><span class="sub">{esc(sub)}</span></div>'
    )


def _metric_hint(metric: str) -> str:
    """What a threshold's metric measures, for people who did not write the --slo."""
    for prefix in ("update_", "ttfb_", "startup_", ""):
        if metric.removeprefix(prefix) in LATENCY_METRICS and metric.startswith(prefix):
            return f"{METRIC_HINTS[prefix]} {metric.removeprefix(prefix)}"
    return METRIC_HINTS.get(metric, "")


def _threshold_text(threshold: dict[str, Any]) -> str:
    op = str(threshold.get("op") or "")
    limit = _num(threshold.get("limit"))
    unit = str(threshold.get("unit") or "")
    return f"{OPS.get(op, op)} {exact(limit, unit)}"


def _thresholds(slo: dict[str, Any]) -> str:
    thresholds = _thresholds_of(slo)
    if not thresholds:
        return ""
    rows = []
    for threshold in thresholds:
        unit = str(threshold.get("unit") or "")
        measured, limit = _num(threshold.get("measured")), _num(threshold.get("limit"))
        ok = threshold.get("ok")
        result = "met" if ok is True else "breached" if ok is False else "not judged"
        if measured is None and ok is not True:
            result = "not measured"
        ratio = f"{measured / limit:.0%} of the limit" if measured is not None and limit else ""
        kind = "good" if ok is True else "bad" if ok is False else ""
        mark = "✓" if ok is True else "✗" if ok is False else "·"
        metric = str(threshold.get("metric") or "?")
        hint = _metric_hint(metric)
        rows.append(
            f'<tr class="{kind}"><th scope="row">{esc(metric)}'
            + (f' <span class="hint">{esc(hint)}</span>' if hint else "")
            + "</th>"
            + f'<td class="num">{esc(_threshold_text(threshold))}</td>'
            f'<td class="num strong">{esc(exact(measured, unit))}</td>'
            f'<td class="num muted ratio">{esc(ratio)}</td>'
            f'<td class="result"><span class="pill {kind}">{mark} {esc(result)}</span></td></tr>'
        )
    return (
        '<section class="slo scroll" aria-label="Thresholds"><table class="thresholds">'
        '<thead><tr><th>Threshold</th><th class="num">Limit</th><th class="num">Measured</th>'
        '<th class="num ratio">vs limit</th><th>Result</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _nav() -> str:
    links = [
        ("summary", "Summary"),
        ("timeline", "Over time"),
        ("histogram", "Latency histogram"),
        ("options", "Options"),
    ]
    return (
        '<nav class="toc" aria-label="Sections">'
        + "".join(f'<a href="#{key}">{esc(text)}</a>' for key, text in links)
        + "</nav>"
    )


# -- summary ----------------------------------------------------------------------------------


def _label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " ").capitalize())


def _unit_of(key: str) -> str:
    """The unit a figure's name implies: `latency_ms`, `rss_mib_max`, `cpu_percent_mean`,
    `deliveries_per_s`, `recovery_s`."""
    if key in UNITS:
        return UNITS[key]
    words = key.lower().split("_")
    if words[-2:] == ["per", "s"]:
        return "/s"
    for word, unit in (("ms", "ms"), ("mib", "MiB"), ("percent", "%"), ("seconds", "s")):
        if word in words:
            return unit
    return "s" if words[-1] == "s" else ""


def _is_percentiles(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in ("p50", "p95", "p99", "max"))


def _plain(value: Any, unit: str = "") -> str:
    """Any summary value as text."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return exact(_num(value), unit)
    if isinstance(value, dict):
        return " · ".join(f"{k} {_plain(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "none"
    return str(value)


@dataclass
class _Tile:
    label: str
    value: str
    sub: str
    kind: str = ""  # good, bad or neutral


def _tiles(summary: dict[str, Any]) -> list[_Tile]:
    tiles = []
    viewers, connected = _num(summary.get("viewers")), _num(summary.get("connected"))
    failed = _num(summary.get("failed")) or 0
    if connected is not None:
        peak = _num(summary.get("live_peak"))
        together = peak is None or peak >= connected
        short = failed > 0 or (viewers is not None and connected < viewers) or not together
        of = f"of {exact(viewers)} · " if viewers is not None else ""
        at_once = "" if together else f" · at most {exact(peak)} at once"
        tiles.append(
            _Tile(
                "Connected",
                exact(connected),
                f"{of}{exact(failed)} failed{at_once}",
                "bad" if short else "good",
            )
        )
    rate, messages = _num(summary.get("messages_per_second")), _num(summary.get("messages"))
    if rate is not None or messages is not None:
        tiles.append(_Tile("Messages per second", exact(rate), f"{exact(messages)} received"))
    latency = _dict(summary.get("latency_ms"))
    if _num(latency.get("p99")) is not None:
        tiles.append(
            _Tile(
                "Latency p99",
                exact(_num(latency.get("p99")), "ms"),
                f"p50 {exact(_num(latency.get('p50')), 'ms')} · "
                f"max {exact(_num(latency.get('max')), 'ms')}",
            )
        )
    lost = _num(summary.get("gaps_lost"))
    if lost is not None:
        tiles.append(
            _Tile(
                "Gaps lost",
                exact(lost),
                f"{exact(_num(summary.get('gaps_recovered')) or 0)} recovered · "
                f"{exact(_num(summary.get('reconnects')) or 0)} reconnects",
                "bad" if lost else "good",
            )
        )
    ttfb = _dict(summary.get("segment_ttfb_ms"))
    if _num(ttfb.get("p95")) is not None:
        stalls = _num(summary.get("stalls"))
        tiles.append(
            _Tile(
                "Segment TTFB p95",
                exact(_num(ttfb.get("p95")), "ms"),
                f"p50 {exact(_num(ttfb.get('p50')), 'ms')}"
                + (f" · {exact(stalls)} stalls" if stalls is not None else ""),
                "bad" if stalls else "",
            )
        )
    return tiles


def _flattened(summary: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(label, key, value) for every figure; a group of figures (players, actions, closes by
    code) is opened one level, its figures labelled "Group · figure"."""
    out = []
    for key, value in summary.items():
        key = str(key)
        if isinstance(value, dict) and value and not _is_percentiles(value):
            for inner_key, inner in value.items():
                inner_key = str(inner_key)
                words = LABELS.get(inner_key, inner_key.removesuffix("_ms").replace("_", " "))
                if words[1:2].islower():
                    words = words[0].lower() + words[1:]
                out.append((f"{_label(key)} · {words}", inner_key, inner))
        else:
            out.append((_label(key), key, value))
    return out


def _cells(percentiles: dict[str, Any], columns: list[str], key: str) -> str:
    unit = _unit_of(key)
    if percentiles.get("count") == 0:  # nothing of the kind arrived: no figures, not zeros
        return "".join(
            f'<td class="num">{"0" if c == "count" else "&mdash;"}</td>' for c in columns
        )
    return "".join(
        f'<td class="num">{esc(exact(_num(percentiles.get(c)), "" if c == "count" else unit))}</td>'
        for c in columns
    )


def _records(label: str, records: list[dict[str, Any]]) -> str:
    """A list of like figures (latency by quarter of the ramp) as a table of its own; a column
    of percentiles opens into one column per percentile."""
    columns: list[tuple[str, str | None]] = []  # (key, percentile)
    for key in dict.fromkeys(k for record in records for k in record):
        values = [r.get(key) for r in records]
        if any(_is_percentiles(v) for v in values):
            shown = [p for p in PERCENTILES if p != "count" and any(p in _dict(v) for v in values)]
            columns.extend((key, p) for p in shown)
        else:
            columns.append((key, None))
    head = "".join(
        f'<th class="num">{esc(LABELS.get(k, k.replace("_", " ")) if p is None else p)}</th>'
        for k, p in columns
    )
    body = []
    for record in records:
        cells = "".join(
            f'<td class="num">{esc(_plain(record.get(k), _unit_of(k)))}</td>'
            if p is None
            else _cells(_dict(record.get(k)), [p], k)
            for k, p in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table class="records"><caption>{esc(label)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _summary_section(summary: dict[str, Any]) -> str:
    if not summary:
        return (
            '<section id="summary"><h2>Summary</h2>'
            '<p class="empty">No summary was recorded.</p></section>'
        )
    tiles = "".join(
        f'<div class="tile {t.kind}"><div class="k">{esc(t.label)}</div>'
        f'<div class="v">{esc(t.value)}</div><div class="s">{esc(t.sub)}</div></div>'
        for t in _tiles(summary)
    )
    rows, records = [], []
    percentile_rows: list[tuple[str, str, dict[str, Any]]] = []
    for label, key, value in _flattened(summary):
        if value is None:
            continue  # not measured in this run
        if _is_percentiles(value):
            percentile_rows.append((label, key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            records.append(_records(label, value))
        else:
            bad = key in BAD_WHEN_ANY and bool(_num(value))
            rows.append((label, _plain(value, _unit_of(key)), bad))
    tables = []
    if percentile_rows:
        columns = [c for c in PERCENTILES if any(c in v for _, _, v in percentile_rows)]
        head = "".join(f'<th class="num">{esc(c)}</th>' for c in columns)
        body = []
        for label, key, value in percentile_rows:
            body.append(f'<tr><th scope="row">{esc(label)}</th>{_cells(value, columns, key)}</tr>')
        tables.append(
            '<div class="scroll"><table class="pct"><caption>Percentiles</caption>'
            f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )
    if rows:
        tables.append(f'<h3 class="caption">All figures</h3>{_figures(rows)}')
    tables.extend(records)
    return (
        f'<section id="summary"><h2>Summary</h2><div class="tiles">{tiles}</div>'
        f"{''.join(tables)}</section>"
    )


BAD_ATTRIBUTE = ' class="bad"'
LONG_ATTRIBUTE = ' class="long"'  # ids and lists may wrap; numbers never do


def _figures(rows: list[tuple[str, str, bool]]) -> str:
    """Name and value pairs, flowing into as many columns as fit."""
    items = "".join(
        f"<div{BAD_ATTRIBUTE if bad else ''}><dt>{esc(label)}</dt>"
        f"<dd{LONG_ATTRIBUTE if len(value) > 16 else ''}>{esc(value)}</dd></div>"
        for label, value, bad in rows
    )
    return f'<dl class="figures">{items}</dl>'


# -- charts over time -------------------------------------------------------------------------


@dataclass
class _Figure:
    title: str
    hint: str
    chart: TimeChart


def _legend(lines: Iterable[Line], xs: list[float], unit: str) -> str:
    items = []
    for line in lines:
        peak = _peak(xs, list(line.values))
        extra = f" · peak {exact(peak[0], unit)}" if peak else ""
        dashed = " dashed" if line.dashed else ""
        items.append(
            f'<li class="{esc(line.color)}"><span class="sw{dashed}"></span>'
            f'{esc(line.label)}<span class="muted">{esc(extra)}</span></li>'
        )
    return f'<ul class="legend">{"".join(items)}</ul>'


def _figure(figure: _Figure, small: bool = False) -> str:
    chart = figure.chart
    hint = f'<p class="hint">{esc(figure.hint)}</p>' if figure.hint else ""
    return (
        f'<figure class="chart-block{" small" if small else ""}" id="chart-{esc(chart.key)}">'
        f"<figcaption><h3>{esc(figure.title)}</h3>{hint}"
        f"{_legend(chart.lines, list(chart.xs), chart.unit)}</figcaption>"
        f'<div class="plot">{time_chart(chart)}</div></figure>'
    )


def _over(xs: list[float]) -> str:
    span = xs[-1] - xs[0] if xs else 0
    return f"over {clock(xs[0], span)} to {clock(xs[-1], span)}" if xs else ""


def _peak_phrase(label: str, xs: list[float], values: list[float | None], unit: str) -> str:
    peak = _peak(xs, values)
    return (
        f"{label} peaks at {exact(peak[0], unit)} at {exact(peak[1], 's')}"
        if peak
        else f"no {label}"
    )


def _rules_for(slo: dict[str, Any], chart: str) -> list[Rule]:
    """Time thresholds as lines on the chart of their figure: p50..max (the run's event
    latency) on the latency chart, ttfb_* on the TTFB chart; red when breached."""
    rules = []
    for threshold in _thresholds_of(slo):
        metric = str(threshold.get("metric") or "")
        limit, unit = _num(threshold.get("limit")), str(threshold.get("unit") or "")
        if limit is None or limit <= 0 or unit not in ("ms", "s"):
            continue
        figure = metric.removeprefix("latency_").removeprefix("ttfb_")
        on = "ttfb" if metric.startswith("ttfb_") else "latency"
        if figure not in LATENCY_METRICS or on != chart:
            continue
        kind = "bad" if threshold.get("ok") is False else "ref"
        rules.append(
            Rule(
                limit * 1000 if unit == "s" else limit,
                f"{metric} {_threshold_text(threshold)}",
                kind,
            )
        )
    return rules


def _series(timeline: list[dict[str, Any]], *path: str) -> list[float | None]:
    return [_at(sample, *path) for sample in timeline]


def _has(values: list[float | None]) -> bool:
    return any(v is not None for v in values)


def _time_figures(
    timeline: list[dict[str, Any]],
    events: list[tuple[float, str]],
    summary: dict[str, Any],
    slo: dict[str, Any],
) -> tuple[list[_Figure], list[_Figure]]:
    """The main charts and the server's small ones, all on the same time axis."""
    xs = [_num(s.get("t")) or 0.0 for s in timeline]
    end = max([*xs, *(t for t, _ in events), 1.0])
    start = min([0.0, *xs])
    markers = [Marker(t, i + 1, what) for i, (t, what) in enumerate(events)]
    over = _over(xs)

    def chart(key: str, description: str, lines: list[Line], **options: Any) -> TimeChart:
        return TimeChart(key, description, xs, (start, end), lines, markers=markers, **options)

    figures: list[_Figure] = []
    connected = _series(timeline, "connected")
    if _has(connected):
        viewers = _num(summary.get("viewers"))
        rules = [Rule(viewers, f"{exact(viewers)} asked for", "ref")] if viewers else []
        last = next((v for v in reversed(connected) if v is not None), None)
        description = (
            f"Connected viewers {over}: {_peak_phrase('connected', xs, connected, '')}"
            f", {exact(last)} at the end."
        )
        figures.append(
            _Figure(
                "Connected viewers",
                "sockets open, second by second",
                chart(
                    "connected",
                    description,
                    [Line("connected", "connected", connected, "c1", area=True)],
                    rules=rules,
                    label_markers=True,
                ),
            )
        )
    deliveries = _series(timeline, "deliveries_per_s")
    if _has(deliveries):
        present = [v for v in deliveries if v is not None]
        description = (
            f"Deliveries per second {over}: "
            f"{_peak_phrase('deliveries', xs, deliveries, '/s')}, "
            f"mean {exact(round(sum(present) / len(present), 1), '/s')}."
        )
        figures.append(
            _Figure(
                "Deliveries per second",
                "messages received by all viewers together",
                chart(
                    "deliveries",
                    description,
                    [Line("deliveries_per_s", "deliveries/s", deliveries, "c3", area=True)],
                    unit="/s",
                ),
            )
        )
    latency_lines = [
        Line(key, key, _series(timeline, "latency_ms", key), color, dashed)
        for key, color, dashed in LATENCY_LINES
    ]
    if any(_has(list(line.values)) for line in latency_lines):
        rules = _rules_for(slo, "latency")
        p99 = list(latency_lines[2].values)
        limits = "; limits: " + ", ".join(r.label for r in rules) if rules else ""
        description = (
            f"Latency percentiles p50, p95, p99 and max each second {over}, log scale: "
            f"{_peak_phrase('p99', xs, p99, 'ms')}{limits}."
        )
        figures.append(
            _Figure(
                "Latency",
                "publish to receipt, each second; log scale",
                chart(
                    "latency",
                    description,
                    latency_lines,
                    unit="ms",
                    log_y=True,
                    rules=rules,
                    height=270,
                ),
            )
        )
    count_lines = [
        Line(
            key,
            label,
            _per_sample(_series(timeline, key), _num(summary.get(key))),
            color,
            dots=dots,
        )
        for key, label, color, dots in (
            ("reconnects", "reconnects", "c2", False),
            ("gaps_recovered", "gaps recovered", "c3", False),
            ("stalls", "stalls", "c5", True),
            ("gaps_lost", "gaps lost", "bad", True),  # rare and small, never to be missed
        )
        if key != "stalls" or any("stalls" in sample for sample in timeline)
    ]
    if any(_has(list(line.values)) for line in count_lines):
        totals = ", ".join(
            f"{exact(sum(v for v in line.values if v is not None))} {line.label}"
            for line in count_lines
        )
        figures.append(
            _Figure(
                "Reconnects and gaps",
                "each second; a gap is recovered when the resubscribe replays it",
                chart(
                    "reconnects",
                    f"Reconnects, gaps recovered and lost each second {over}: {totals} in all.",
                    count_lines,
                ),
            )
        )
    ttfb_lines = [
        Line(key, key, _series(timeline, "segment_ttfb_ms", key), color)
        for key, color in (("p50", "c1"), ("p95", "c2"))
    ]
    if any(_has(list(line.values)) for line in ttfb_lines):
        rules = _rules_for(slo, "ttfb")
        description = (
            f"Segment time to first byte p50 and p95 {over}, log scale: "
            f"{_peak_phrase('p95', xs, list(ttfb_lines[1].values), 'ms')}."
        )
        figures.append(
            _Figure(
                "Segment time to first byte",
                "HLS segment requests, each second; log scale",
                chart("ttfb", description, ttfb_lines, unit="ms", log_y=True, rules=rules),
            )
        )
    server: list[_Figure] = []
    for key, title, unit, color, floor in (
        ("cpu_percent", "CPU", "%", "c6", 100.0),
        ("rss_mib", "Memory (RSS)", "MiB", "c5", 0.0),
        ("sockets", "Sockets", "", "c1", 0.0),
        ("queue_depth", "Queue depth", "", "c2", 0.0),
    ):
        values = _series(timeline, "server", key)
        if not _has(values):
            continue
        description = f"Server {title} {over}: {_peak_phrase(title, xs, values, unit)}."
        server.append(
            _Figure(
                title,
                "",
                chart(
                    f"server-{key.replace('_', '-')}",
                    description,
                    [Line(key, title, values, color, area=True)],
                    unit=unit,
                    height=150,
                    y_top_at_least=floor,
                ),
            )
        )
    return figures, server


def _timeline_section(
    timeline: list[dict[str, Any]],
    events: list[tuple[float, str]],
    summary: dict[str, Any],
    slo: dict[str, Any],
) -> str:
    head = '<section id="timeline"><h2>Over time</h2>'
    if not timeline:
        return head + '<p class="empty">No timeline was recorded for this run.</p></section>'
    figures, server = _time_figures(timeline, events, summary, slo)
    span = max([_num(s.get("t")) or 0.0 for s in timeline] + [t for t, _ in events])
    event_list = ""
    if events:
        event_list = (
            '<ol class="events" aria-label="Events">'
            + "".join(
                f'<li><span class="num">{i}</span><span class="at">{esc(clock(t, span))}</span>'
                f"{esc(what)}</li>"
                for i, (t, what) in enumerate(events, 1)
            )
            + "</ol>"
        )
    server_part = ""
    if server:
        server_part = '<h3 class="group">Server, from its /metrics</h3>' + "".join(
            _figure(f, small=True) for f in server
        )
    intro = (
        '<p class="intro">Every chart runs on the same time axis, seconds from the start. '
        + ("Numbered dashed lines mark what the run did. " if events else "")
        + '<span class="screen">Hover a chart for the exact values at that second.</span></p>'
    )
    return (
        head
        + intro
        + event_list
        + "".join(_figure(f) for f in figures)
        + server_part
        + "</section>"
    )


# -- histogram --------------------------------------------------------------------------------


def _histogram_bars(histogram: dict[str, Any]) -> list[Bar]:
    """Bars on log-spaced buckets: as given when there are few, else regrouped five per decade.
    Empty buckets at either end are left out."""
    bounds = [_num(b) for b in _list(histogram.get("bounds_ms"))]
    counts = [
        int(c) if (c := _num(v)) is not None and c > 0 else 0
        for v in _list(histogram.get("counts"))
    ]
    if not bounds or any(b is None for b in bounds) or not counts:
        return []
    edges = [float(b) for b in bounds if b is not None]
    if any(b <= a for a, b in itertools.pairwise(edges)):
        return []
    overflow = counts[len(edges)] if len(counts) > len(edges) else 0
    counts = counts[: len(edges)] + [0] * (len(edges) - len(counts))
    # buckets ending at or below zero cannot sit on a log axis: they join the first one above
    first = next((i for i, b in enumerate(edges) if b > 0), None)
    if first is None:
        return []
    counts = [sum(counts[: first + 1]), *counts[first + 1 :]]
    edges = edges[first:]
    if len(edges) > MAX_REBINNED:
        bars = _regrouped(edges, counts)
        ratio = 10**0.2
    else:
        first_ratio = edges[1] / edges[0] if len(edges) > 1 else 10.0
        ratio = edges[-1] / edges[-2] if len(edges) > 1 else 10.0
        lows = [edges[0] / first_ratio, *edges[:-1]]
        bars = [Bar(low, high, count) for low, high, count in zip(lows, edges, counts, strict=True)]
        bars[0].from_zero = True
    if overflow:
        bars.append(Bar(edges[-1], edges[-1] * ratio, overflow, open_ended=True))
    while bars and not bars[0].count:
        bars.pop(0)
    while bars and not bars[-1].count:
        bars.pop()
    return bars


def _regrouped(edges: list[float], counts: list[int]) -> list[Bar]:
    """Buckets regrouped five per decade (by each bucket's upper bound)."""
    grouped: dict[int, int] = {}
    for edge, count in zip(edges, counts, strict=True):
        if count:
            step = math.ceil(5 * math.log10(edge) - 1e-9)
            grouped[step] = grouped.get(step, 0) + count
    if not grouped:
        return []
    steps = range(min(grouped), max(grouped) + 1)
    bars = [Bar(10 ** ((s - 1) / 5), 10 ** (s / 5), grouped.get(s, 0)) for s in steps]
    bars[0].from_zero = steps[0] == math.ceil(5 * math.log10(edges[0]) - 1e-9)
    return bars


def _histogram_section(histogram: dict[str, Any], summary: dict[str, Any]) -> str:
    head = '<section id="histogram"><h2>Latency histogram</h2>'
    bars = _histogram_bars(histogram)
    if not bars:
        return head + '<p class="empty">No latency histogram was recorded.</p></section>'
    latency = _dict(summary.get("latency_ms"))
    marks = [
        (value, f"{key} {exact(value, 'ms')}")
        for key in ("p50", "p99")
        if (value := _num(latency.get(key))) is not None and value > 0
    ]
    total = sum(bar.count for bar in bars)
    description = (
        f"Latency histogram of {exact(total)} deliveries in {len(bars)} log-spaced buckets from "
        f"{exact(round(bars[0].low, 2), 'ms')} to {exact(round(bars[-1].high, 2), 'ms')}"
        + ("; " + ", ".join(label for _, label in marks) if marks else "")
        + "."
    )
    chart = Histogram("histogram", description, bars, marks=marks)
    legend = (
        '<ul class="legend"><li class="c1"><span class="sw box"></span>deliveries per bucket</li>'
        + (
            '<li class="c7"><span class="sw box"></span>past the last bound</li>'
            if bars[-1].open_ended
            else ""
        )
        + '<li class="fg"><span class="sw rule"></span>p50 and p99 of the run</li></ul>'
    )
    return (
        head
        + '<figure class="chart-block" id="chart-histogram"><figcaption><h3>All deliveries</h3>'
        '<p class="hint">publish to receipt; log-spaced buckets, counts on a log scale</p>'
        f'{legend}</figcaption><div class="plot">{histogram_chart(chart)}</div></figure></section>'
    )


# -- options ----------------------------------------------------------------------------------


def _options_section(options: dict[str, Any]) -> str:
    head = '<section id="options"><h2>Options</h2>'
    if not options:
        return head + '<p class="empty">The run recorded no options.</p></section>'
    rows = [(str(key), _plain(value), False) for key, value in options.items()]
    return (
        head + _figures(rows).replace('class="figures"', 'class="figures options"') + "</section>"
    )


# -- style ------------------------------------------------------------------------------------

LIGHT = (
    "--bg:#ffffff;--fg:#1b2130;--muted:#5d6778;--faint:#8b94a4;--line:#e2e5eb;--panel:#f6f7f9;"
    "--grid:#eceef2;--axis:#a7afbd;--c1:#2563eb;--c2:#d97706;--c3:#059669;--c4:#0891b2;"
    "--c5:#9333ea;--c6:#db2777;--c7:#6b7280;--good:#15803d;--good-bg:#e7f8ec;--bad:#dc2626;"
    "--bad-bg:#fdecec;--none-bg:#eef0f3;--event:#475569;--hover:rgba(37,99,235,.08)"
)
DARK = (
    "--bg:#0f1217;--fg:#e6e9ef;--muted:#9ba5b6;--faint:#6e7788;--line:#262c37;--panel:#161a21;"
    "--grid:#1f242d;--axis:#4a5263;--c1:#60a5fa;--c2:#fbbf24;--c3:#34d399;--c4:#22d3ee;"
    "--c5:#c084fc;--c6:#f472b6;--c7:#9ca3af;--good:#4ade80;--good-bg:#10291a;--bad:#f87171;"
    "--bad-bg:#341617;--none-bg:#232833;--event:#94a3b8;--hover:rgba(96,165,250,.12)"
)
CSS = (
    f":root{{color-scheme:light dark;{LIGHT}}}"
    f"@media (prefers-color-scheme:dark){{:root{{{DARK}}}}}"
    """
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,
 "Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;font-variant-numeric:tabular-nums}
main{max-width:1060px;margin:0 auto;padding:28px 24px 40px}
h1{font-size:28px;line-height:1.2;margin:2px 0 12px;overflow-wrap:anywhere;text-wrap:balance}
h2{font-size:19px;margin:34px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:0}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.muted{color:var(--muted)}
.kicker{margin:0;color:var(--muted);font-size:13px;text-transform:uppercase;letter-spacing:.08em}
.head{display:flex;gap:24px;align-items:flex-start;justify-content:space-between;flex-wrap:wrap}
.title{flex:1 1 520px;min-width:0}
.meta{display:flex;flex-wrap:wrap;gap:6px 28px;margin:0}
.meta div{min-width:0}
.meta dt{font-size:12px;color:var(--muted)}
.meta dd{margin:0;font-weight:600}
.note{margin:12px 0 0;padding:8px 12px;border-left:3px solid var(--c2);background:var(--panel);
 font-size:14px}
.verdict{--c:var(--muted);--vbg:var(--none-bg);flex:0 0 auto;min-width:190px;text-align:center;
 padding:12px 24px 14px;border:2px solid var(--c);border-radius:14px;background:var(--vbg);
 color:var(--c)}
.verdict.pass{--c:var(--good);--vbg:var(--good-bg)}
.verdict.fail{--c:var(--bad);--vbg:var(--bad-bg)}
.verdict .word{display:block;font-size:46px;font-weight:800;letter-spacing:.06em;line-height:1.1}
.verdict .sub{display:block;font-size:13px;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;color:var(--muted);font-weight:600}
tbody th{font-weight:500}
.num{text-align:right;white-space:nowrap}
.strong{font-weight:700}
.slo{margin-top:18px}
.thresholds th .hint{color:var(--muted);font-size:13px;font-weight:400;margin-left:6px}
.thresholds tbody th{font-weight:600}
.pill{display:inline-block;white-space:nowrap;padding:1px 10px;border-radius:99px;
 font-size:13px;font-weight:600;background:var(--none-bg);color:var(--muted)}
.pill.good{background:var(--good-bg);color:var(--good)}
.pill.bad{background:var(--bad-bg);color:var(--bad)}
.toc{display:flex;gap:6px 18px;flex-wrap:wrap;margin:22px 0 0;font-size:14px}
.toc a{color:var(--c1);text-decoration:none}
.toc a:hover{text-decoration:underline}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:12px;
 margin-bottom:16px}
.tile{--edge:var(--line);background:var(--panel);border:1px solid var(--line);
 border-left:4px solid var(--edge);border-radius:10px;padding:10px 14px}
.tile.good{--edge:var(--good)}
.tile.bad{--edge:var(--bad)}
.tile .k{font-size:12px;color:var(--muted)}
.tile .v{font-size:26px;font-weight:700;line-height:1.25}
.tile.bad .v{color:var(--bad)}
.tile .s{font-size:13px;color:var(--muted)}
caption,h3.caption{text-align:left;font-size:14px;font-weight:600;padding:0 10px 4px;margin:0}
.scroll{overflow-x:auto;margin-bottom:18px}
.figures{column-width:290px;column-gap:32px;margin:0 0 18px;font-size:14px}
.figures div{display:flex;justify-content:space-between;align-items:baseline;gap:12px;
 padding:5px 10px;border-bottom:1px solid var(--line);break-inside:avoid}
.figures dt{color:var(--fg)}
.figures dd{margin:0;text-align:right;font-weight:600;white-space:nowrap}
.figures dd.long{white-space:normal;overflow-wrap:anywhere;min-width:0}
.figures div.bad dt,.figures div.bad dd{color:var(--bad);font-weight:700}
.options dt{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
tr.bad th,tr.bad td{color:var(--bad);font-weight:600}
.empty{color:var(--muted);font-style:italic}
.intro{margin:0 0 10px;color:var(--muted);font-size:14px}
.events{list-style:none;margin:0 0 16px;padding:0;display:grid;gap:4px;font-size:14px}
.events li{display:flex;gap:10px;align-items:baseline}
.events .num{display:inline-grid;place-items:center;min-width:20px;height:20px;border-radius:10px;
 background:var(--event);color:var(--bg);font-size:12px;font-weight:700}
.events .at{color:var(--muted);min-width:54px}
.chart-block{margin:0 0 14px;padding:12px 14px 6px;border:1px solid var(--line);
 border-radius:12px}
.chart-block.small{padding-top:8px;margin-bottom:10px}
figcaption{display:flex;flex-wrap:wrap;align-items:baseline;gap:2px 12px}
figcaption .hint{margin:0;color:var(--muted);font-size:13px}
h3.group{margin:22px 0 10px;font-size:16px}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:2px 16px;margin:0 0 0 auto;padding:0;
 font-size:13px}
.legend li{display:flex;align-items:center;gap:6px;white-space:nowrap}
.sw{display:inline-block;width:20px;border-top:3px solid var(--c)}
.sw.dashed{border-top-style:dotted}
.sw.rule{border-top:2px dashed var(--c)}
.sw.box{width:12px;height:12px;border:0;border-radius:2px;background:var(--c)}
.plot{overflow-x:auto}
svg.chart{display:block;width:100%;height:auto;min-width:600px;font-size:12px}
svg.chart line,svg.chart polyline{vector-effect:non-scaling-stroke}
.c1{--c:var(--c1)}.c2{--c:var(--c2)}.c3{--c:var(--c3)}.c4{--c:var(--c4)}.c5{--c:var(--c5)}
.c6{--c:var(--c6)}.c7{--c:var(--c7)}.bad{--c:var(--bad)}.ref{--c:var(--faint)}.fg{--c:var(--fg)}
.grid line{stroke:var(--grid);stroke-width:1}
.grid line.minor{stroke-dasharray:2 3}
.axis text{fill:var(--muted)}
.axis line{stroke:var(--axis)}
.series polyline{fill:none;stroke:var(--c);stroke-width:2;stroke-linejoin:round;
 stroke-linecap:round}
.series circle{fill:var(--c)}
.series.dashed polyline{stroke-width:1.6;stroke-dasharray:1 4}
.area{fill:var(--c);opacity:.13}
.rule line{stroke:var(--c);stroke-width:1.5;stroke-dasharray:7 5}
.rule text{fill:var(--c);font-weight:600;paint-order:stroke;stroke:var(--bg);stroke-width:4px}
.event line{stroke:var(--event);stroke-width:1.2;stroke-dasharray:3 3}
.event circle{fill:var(--event)}
.event .badge{fill:var(--bg);font-size:11px;font-weight:700}
.event .label{fill:var(--fg);font-size:12px;font-weight:600;paint-order:stroke;
 stroke:var(--bg);stroke-width:4px}
.columns rect{fill:transparent;pointer-events:all}
.col:hover rect{fill:var(--hover)}
.col line,.col circle{visibility:hidden}
.col:hover line{visibility:visible;stroke:var(--axis)}
.col:hover circle{visibility:visible;fill:var(--c);stroke:var(--bg);stroke-width:1.5}
.bar rect{fill:var(--c1)}
.bar.open rect{fill:var(--c7)}
.bar rect.hit{fill:transparent;pointer-events:all}
.bar:hover rect:not(.hit){opacity:.75}
.mark line{stroke:var(--fg);stroke-width:1.5;stroke-dasharray:5 4}
.mark text{fill:var(--fg);font-weight:700;paint-order:stroke;stroke:var(--bg);stroke-width:4px}
footer{margin-top:36px;color:var(--muted);font-size:13px}
@media (max-width:640px){main{padding:18px 14px}.verdict{width:100%}h1{font-size:23px}
.chart-block{padding:10px 8px 4px}
.thresholds th .hint{display:block;margin:0}th,td{padding:6px}.thresholds .ratio{display:none}}
"""
    f"@media print{{:root{{{LIGHT}}}"
    """
body{font-size:10.5pt}main{max-width:none;padding:0}.toc{display:none}
h2{break-after:avoid}.chart-block,.tile,tr{break-inside:avoid}
svg.chart{min-width:0}.plot{overflow:visible}.columns,.screen{display:none}
.verdict,.tile,.pill,.events .num{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""
)
