"""The load test report: one self-contained HTML file with the verdict, the summary and the
run's charts, read back as markup and then looked at in a real Chromium, offline.

The run here is made up but shaped like a real one: 5,000 viewers ramped over 20 s, a storm at
40 s that drops a fifth of the sockets (they reconnect and mostly recover their gaps), latency
that spikes with it past the p99 threshold, the server's own figures, a latency histogram.
"""

from __future__ import annotations

import copy
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from loadtest.report import render_report, write_report
from tests.browser import CHROMIUM_ARGS, DESKTOP, PHONE, require_chromium

ARTIFACTS = Path(os.environ.get("REELWIRE_ARTIFACTS", "test-artifacts")) / "loadtest"
SECONDS = 120
STORM = 40
TIME_CHARTS = {
    "connected": {"connected"},
    "deliveries": {"deliveries_per_s"},
    "latency": {"p50", "p95", "p99", "max"},
    "reconnects": {"reconnects", "gaps_recovered", "gaps_lost", "stalls"},
    "ttfb": {"p50", "p95"},
    "server-cpu-percent": {"cpu_percent"},
    "server-rss-mib": {"rss_mib"},
    "server-sockets": {"sockets"},
    "server-queue-depth": {"queue_depth"},
}


def _wave(t: int, size: float) -> float:
    """A little deterministic jitter so lines look measured."""
    return size * (math.sin(t * 1.7) + math.sin(t * 0.37)) / 2


def threshold(
    metric: str, op: str, limit: float, unit: str, measured: float, ok: bool
) -> dict[str, Any]:
    return {
        "metric": metric,
        "op": op,
        "limit": limit,
        "unit": unit,
        "measured": measured,
        "ok": ok,
    }


def synthetic_run() -> dict[str, Any]:
    timeline = []
    reconnects = {41: 180, 42: 260, 43: 290, 44: 180, 45: 90}
    lost = {42: 2, 43: 1}
    for t in range(SECONDS + 1):
        connected = min(5000, t * 250)
        if STORM <= t < STORM + 6:
            connected = 4000 + sum(v for s, v in reconnects.items() if s <= t)
        storm = STORM <= t <= STORM + 8
        calm = 1.0 + (6.0 if storm else 0.0) * (1 - abs(t - 43) / 9)
        timeline.append(
            {
                "t": t,
                "connected": connected,
                "deliveries_per_s": round(connected * 20 * (0.8 if storm else 1.0) + _wave(t, 900)),
                "latency_ms": None
                if t == 0
                else {
                    "p50": round(38 * calm + _wave(t, 4), 1),
                    "p95": round(74 * calm**1.4 + _wave(t, 8), 1),
                    "p99": round(104 * calm**1.7 + _wave(t, 10), 1),
                    "max": round(210 * calm**1.6 + abs(_wave(t, 60)), 1),
                },
                "reconnects": reconnects.get(t, 0),
                "gaps_recovered": reconnects.get(t, 0) - lost.get(t, 0) - (5 if t == 43 else 0),
                "gaps_lost": lost.get(t, 0),
                "segment_ttfb_ms": None
                if t < 2
                else {
                    "p50": round(11 * calm + _wave(t, 1.5), 1),
                    "p95": round(32 * calm**1.5 + _wave(t, 3), 1),
                },
                "stalls": 2 if t == 43 else 0,
                "server": {
                    "cpu_percent": round(min(190, 8 + connected / 50 + (60 if storm else 0))),
                    "rss_mib": round(180 + connected * 0.048 + (30 if storm else 0), 1),
                    "sockets": connected,
                    "queue_depth": round(2400 * (1 - abs(t - 42) / 5)) if storm else 0,
                },
            }
        )
    # as the tester buckets them: round bounds below the maximum, then the maximum itself
    bounds = [1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000]
    bounds += [1500, 2000, 3000, 3270.5]
    counts = [round(9.2e6 * math.exp(-(math.log(b / 45) ** 2) / 0.35)) for b in bounds]
    for i, bound in enumerate(bounds):  # the storm's tail
        if bound >= 300:
            counts[i] += 21_000
    return {
        "scenario": "5k viewers, one video, reconnect storm at 40 s",
        "started_at": "2026-12-01T00:25:03+00:00",
        "machine": {"cores": 2, "load_before": [0.42, 0.61, 0.70], "load_after": [1.93, 1.2, 0.88]},
        "options": {
            "url": "http://127.0.0.1:8080",
            "viewers": 5000,
            "videos": 1,
            "ramp": 20.0,
            "duration": 100.0,
            "comments_per_s": 10.0,
            "likes_per_s": 10.0,
            "video": [],
            "report": "run.html",
        },
        "summary": {
            "viewers": 5000,
            "videos": 1,
            "connected": 5000,
            "failed": 0,
            "messages": 10_493_871,
            "messages_per_second": 87_449,
            "latency_ms": {
                "p50": 41.2,
                "p95": 96.4,
                "p99": 612.8,
                "max": 3270.5,
                "mean": 52.9,
                "count": 10_493_871,
            },
            "video_update_latency_ms": {"p50": 88.1, "p95": 150.2, "p99": 402.0, "max": 2980.1},
            "reconnects": 1000,
            "gaps_recovered": 992,
            "gaps_lost": 3,
            "segment_ttfb_ms": {"p50": 12.4, "p95": 61.0, "p99": 240.3, "max": 812.0},
            "stalls": 2,
            "lost": 3,
            "server_closes": {"4008": 1000},
            "actions": {"sent": 2400, "comments": 1200, "likes": 1200, "errors": 0},
            "players": None,
            "incident": {"recovery_s": 6.2, "not_back": 0},
            "server": {"cpu_percent_mean": 104.3, "cpu_percent_max": 190, "rss_mib_max": 450.0},
            "ramp_quarters": [
                {"viewers_up_to": n, "seconds": 5, "latency_ms": {"p50": 30 + n / 500, "p99": 90}}
                for n in (1250, 2500, 3750, 5000)
            ],
            "during_event": {
                "from_s": 40,
                "to_s": 48,
                "latency_ms": {"p50": 180.3, "p99": 1533.0},
                "deliveries_per_s": 81234.5,
            },
            "seconds": 120.4,
        },
        "slo": {
            "thresholds": [
                threshold("p99", "<", 250, "ms", 612.8, False),
                threshold("gaps_lost", "<=", 10, "", 3, True),
                threshold("ttfb_p95", "<", 0.5, "s", 0.061, True),
                threshold("failed", "<", 0.1, "%", 0.0, True),
            ],
            "verdict": "fail",
        },
        "timeline": timeline,
        "latency_histogram": {"bounds_ms": bounds, "counts": counts},
        "events": [
            {"t": 20, "what": "ramp complete"},
            {"t": STORM, "what": "reconnect storm: drop 20% of sockets"},
            {"t": 90, "what": "comments 10/s -> 40/s"},
        ],
    }


class Markup(HTMLParser):
    """Every element with its attributes, and per chart its series' point counts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.charts: dict[str, dict[str, Any]] = {}
        self.text: list[str] = []
        self.styles: list[str] = []
        self._chart: str | None = None
        self._series: str | None = None
        self._depth: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.elements.append((tag, found))
        if tag == "style":
            self._in_style = True
        if tag == "svg":
            self._chart = found.get("data-chart", "?")
            self.charts[self._chart] = {"attrs": found, "series": {}, "events": 0, "titles": 0}
        chart = self.charts.get(self._chart or "")
        if chart is None:
            return
        if tag == "title":
            chart["titles"] += 1
        if tag == "g" and "data-series" in found:
            self._series = found["data-series"]
            chart["series"].setdefault(self._series, 0)
        if tag == "g" and "data-event" in found:
            chart["events"] += 1
        if tag == "polyline" and self._series is not None:
            chart["series"][self._series] += len(found["points"].split())
        if tag in ("g", "svg"):
            self._depth.append(found.get("data-series", ""))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in ("g", "svg"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        if tag in ("g", "svg") and self._depth and self._depth.pop():
            self._series = None
        if tag == "svg":
            self._chart = None

    def handle_data(self, data: str) -> None:
        (self.styles if self._in_style else self.text).append(data)


def parse(html: str) -> Markup:
    markup = Markup()
    markup.feed(html)
    markup.close()
    return markup


def test_one_file_that_loads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.html"
    write_report(path, synthetic_run())
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]
    html = path.read_text(encoding="utf-8")
    markup = parse(html)
    tags = {tag for tag, _ in markup.elements}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "video", "audio"}
    for tag, attrs in markup.elements:
        for name, value in attrs.items():
            if name in ("href", "xlink:href"):
                assert value.startswith("#"), (tag, name, value)
            assert name not in ("src", "srcset", "action", "poster", "data"), (tag, name)
            if name != "content":
                assert "//" not in value, (tag, name, value)
    css = "".join(markup.styles)
    assert "//" not in css and "@import" not in css and "url(" not in css
    # a network address may appear as text (the URL the run loaded), never in markup
    outside_text = re.sub(r">[^<]*<", "><", html)
    assert "http:" not in outside_text and "https:" not in outside_text
    assert "http://127.0.0.1:8080" in "".join(markup.text)
    # and the page forbids itself any request
    policy = next(a["content"] for t, a in markup.elements if a.get("http-equiv"))
    assert "default-src 'none'" in policy


def test_each_chart_draws_its_series_over_the_whole_timeline() -> None:
    run = synthetic_run()
    markup = parse(render_report(run))
    timeline = run["timeline"]
    assert set(markup.charts) == {*TIME_CHARTS, "histogram"}
    for key, series in TIME_CHARTS.items():
        chart = markup.charts[key]
        assert chart["attrs"]["role"] == "img"
        assert len(chart["attrs"]["aria-label"]) > 20
        assert set(chart["series"]) == series, key
        assert chart["events"] == len(run["events"]), key
        # a hover column per sample, and the chart's own title
        assert chart["titles"] == 1 + len(run["events"]) + len(timeline), key
    points = markup.charts["latency"]["series"]
    assert points == dict.fromkeys(("p50", "p95", "p99", "max"), len(timeline) - 1)  # t=0: none
    assert markup.charts["connected"]["series"]["connected"] == len(timeline)
    assert markup.charts["ttfb"]["series"] == {"p50": len(timeline) - 2, "p95": len(timeline) - 2}
    for key in ("reconnects", "server-cpu-percent", "server-queue-depth", "deliveries"):
        assert all(n == len(timeline) for n in markup.charts[key]["series"].values()), key
    histogram = markup.charts["histogram"]
    assert histogram["attrs"]["role"] == "img"
    assert "p50 41.2 ms" in histogram["attrs"]["aria-label"]
    assert "p99 612.8 ms" in histogram["attrs"]["aria-label"]


def test_the_verdict_and_every_threshold_are_shown() -> None:
    html = render_report(synthetic_run())
    badge = re.search(r'<div class="verdict (\w+)"[^>]*><span class="word">(\w+)</span>', html)
    assert badge is not None and badge.groups() == ("fail", "FAIL")
    assert "1 of 4 thresholds breached" in html
    text = " ".join(parse(html).text)
    for needle in (
        *("p99", "< 250 ms", "612.8 ms", "245% of the limit", "✗ breached"),
        *("gaps_lost", "≤ 10", "ttfb_p95", "< 0.5 s", "0.061 s", "failed", "< 0.1%", "0%"),
    ):
        assert needle in text, needle
    assert text.count("✓ met") == 3
    # the time limits are drawn on their charts: breached in red, met in grey
    latency = re.search(r'data-chart="latency".*?</svg>', html, re.S)
    assert latency is not None and 'class="rule bad"' in latency.group(0)
    assert "p99 &lt; 250 ms" in latency.group(0)
    ttfb = re.search(r'data-chart="ttfb".*?</svg>', html, re.S)
    assert ttfb is not None and 'class="rule ref"' in ttfb.group(0)
    assert "ttfb_p95 &lt; 0.5 s" in ttfb.group(0)
    # and a passing run says so
    passing = synthetic_run()
    passing["slo"] = {"thresholds": passing["slo"]["thresholds"][1:], "verdict": "pass"}
    assert '<span class="word">PASS</span>' in render_report(passing)
    assert "all 3 thresholds met" in render_report(passing)


def test_the_summary_shows_every_figure() -> None:
    html = render_report(synthetic_run())
    summary = re.search(r'<section id="summary">.*?</section>', html, re.S)
    assert summary is not None
    text = " ".join(parse(summary.group(0)).text)
    for needle in (
        *("Connected", "5,000", "87,449", "Latency p99", "612.8 ms", "Gaps lost"),
        *("Server closes, by code · 4008", "Incident · recovery s", "6.2 s", "104.3%"),
        *("Latency by quarter of the ramp", "During the event · event latency", "1,533 ms"),
        *("Event latency", "3,270.5 ms", "10,493,871", "Segment time to first byte"),
    ):
        assert needle in text, needle
    assert "Players" not in text  # not measured in this run: left out
    # what went wrong is marked
    assert '<div class="bad"><dt>Gaps lost</dt><dd>3</dd></div>' in summary.group(0)
    assert '<div class="tile bad"><div class="k">Gaps lost</div>' in summary.group(0)


def test_every_string_is_escaped() -> None:
    run = synthetic_run()
    run["scenario"] = "<script>alert('x')</script> & more"
    run["events"].append({"t": 60, "what": '<img src=x onerror="alert(1)">'})
    run["options"]['"><b>'] = "</td><script>"
    run["summary"]["<i>odd</i>"] = "<u>"
    run["slo"]["thresholds"][0]["metric"] = "<p99>"
    html = render_report(run)
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "<i>" not in html and "<u>" not in html and "<p99>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    text = "".join(parse(html).text)
    assert "<script>alert('x')</script> & more" in text


@pytest.mark.parametrize(
    "change",
    ["socket only", "no server", "nones", "bare", "empty timeline", "junk"],
)
def test_missing_parts_still_render(tmp_path: Path, change: str) -> None:
    run = synthetic_run()
    if change == "socket only":  # no video segments: no TTFB, no stalls
        del run["summary"]["segment_ttfb_ms"], run["summary"]["stalls"]
        for sample in run["timeline"]:
            del sample["segment_ttfb_ms"], sample["stalls"]
    elif change == "no server":  # /metrics not reachable
        for sample in run["timeline"]:
            sample["server"] = None
    elif change == "nones":
        run = {key: None for key in run} | {"scenario": "nothing but a name"}
    elif change == "bare":
        run = {"scenario": "bare"}
    elif change == "empty timeline":
        run["timeline"], run["events"], run["latency_histogram"] = [], [], {}
        run["slo"] = {"thresholds": [], "verdict": "none"}
    elif change == "junk":  # wrong types everywhere are shown or skipped, never a crash
        run = copy.deepcopy(run)
        run["machine"] = {"cores": "two", "load_before": None}
        run["started_at"] = "yesterday"
        run["timeline"][5]["latency_ms"] = {"p50": "fast", "p99": float("nan")}
        run["timeline"][6] = "not a sample"
        run["latency_histogram"] = {"bounds_ms": [5, 1], "counts": [1, 2]}
        run["events"] = [{"t": None, "what": "never"}, {"what": "no time"}, 7]
        run["slo"] = {"thresholds": [{"metric": "p99"}, "x"], "verdict": "maybe"}
    path = tmp_path / "report.html"
    write_report(path, run)
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    charts = parse(html).charts
    if change == "socket only":
        assert "ttfb" not in charts and "stalls" not in charts["reconnects"]["series"]
        assert "server-sockets" in charts
    elif change == "no server":
        assert not any(key.startswith("server-") for key in charts) and "ttfb" in charts
    elif change in ("nones", "bare"):
        assert charts == {}
        assert "No timeline was recorded" in html and "NO SLO" in html
    elif change == "empty timeline":
        assert charts == {} and "NO SLO" in html and "No latency histogram" in html
    elif change == "junk":
        assert "histogram" not in charts and "latency" in charts and "MAYBE" in html


def test_long_runs_group_hover_columns_and_a_fine_histogram_is_regrouped() -> None:
    """An hour at one sample a second, and the tester's own 0.1 ms histogram (50,001 buckets)."""
    run = synthetic_run()
    sample = run["timeline"][-1]
    run["timeline"] = [dict(sample, t=t) for t in range(3600)]
    counts = [0] * 50_001
    counts[400] = 5  # 40 ms
    counts[12_000] = 1  # 1.2 s
    counts[-1] = 2  # past 5 s
    run["latency_histogram"] = {
        "bounds_ms": [round((i + 1) * 0.1, 1) for i in range(50_000)],
        "counts": counts,
    }
    html = render_report(run)
    assert len(html) < 6_000_000
    charts = parse(html).charts
    assert charts["connected"]["series"]["connected"] == 3600
    assert charts["connected"]["titles"] < 600
    bars = re.search(r'data-chart="histogram".*?</svg>', html, re.S)
    assert bars is not None
    # five buckets a decade from the 40 ms one to the 1.2 s one, then the one past 5 s
    assert bars.group(0).count('<g class="bar"') + bars.group(0).count('<g class="bar open"') == 9
    assert "25.12 ms to 39.81 ms" not in bars.group(0)  # 40 ms falls in (39.81, 63.1]
    assert "39.81 ms to 63.1 ms: 5 (62.5%; 62.5% at or below)" in bars.group(0)
    assert "over 5,000 ms: 2 (25.0%; 100.0% at or below)" in bars.group(0)


async def _open(browser: Any, path: Path, **options: Any) -> tuple[Any, list[str], list[str]]:
    """The report in a fresh offline context: the page, its console errors, its requests."""
    context = await browser.new_context(offline=True, **options)
    page = await context.new_page()
    errors: list[str] = []
    requests: list[str] = []

    def console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    await page.goto(path.as_uri())
    return page, errors, requests


@pytest.mark.timeout(180)
async def test_the_report_in_chromium_offline(tmp_path: Path) -> None:
    executable = require_chromium()
    from playwright.async_api import async_playwright

    path = tmp_path / "report.html"
    write_report(path, synthetic_run())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser: Any = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS
        )
        try:
            for name, viewport, scheme in (
                ("light", DESKTOP, "light"),
                ("dark", DESKTOP, "dark"),
                ("phone", PHONE, "light"),
            ):
                page, errors, requests = await _open(
                    browser, path, viewport=viewport, color_scheme=scheme
                )
                sizes = await page.eval_on_selector_all(
                    "svg.chart",
                    "els => els.map(e => { const r = e.getBoundingClientRect();"
                    " return [e.dataset.chart, r.width, r.height]; })",
                )
                assert {key for key, _, _ in sizes} == {*TIME_CHARTS, "histogram"}
                assert all(w > 300 and h > 60 for _, w, h in sizes), sizes
                if name == "light":
                    # hovering a second of the latency chart shows its guide and dots
                    column = page.locator('svg[data-chart="latency"] .col').nth(STORM + 3)
                    await column.hover()
                    shown = await column.locator("line").evaluate(
                        "el => getComputedStyle(el).visibility"
                    )
                    assert shown == "visible"
                    title = await column.locator("title").text_content()
                    assert title is not None and title.startswith("t = 43 s") and "p99:" in title
                    await page.mouse.move(0, 0)
                await page.screenshot(path=str(ARTIFACTS / f"report-{name}.png"), full_page=True)
                if name == "light":
                    await page.emulate_media(media="print")
                    await page.screenshot(path=str(ARTIFACTS / "report-print.png"), full_page=True)
                    await page.pdf(path=str(ARTIFACTS / "report.pdf"), print_background=True)
                assert errors == []
                assert requests == [path.as_uri()]
                await page.context.close()
        finally:
            await browser.close()
