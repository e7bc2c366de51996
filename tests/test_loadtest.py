"""`reelwire loadtest` as people run it: against a real `reelwire serve --processes 2`.

The unit tests cover what must be exact without a server (the merge of load processes'
results, the SLO parser and verdict, playlists, source addresses and limits); the others run the
command as a subprocess and read its JSON: a reconnect storm recovers every dropped socket with
`since`, two load processes add up, an impossible threshold fails the run, player viewers fetch
segments, and a SIGTERMed web process's sockets come back. One server serves the whole module
(the restart test runs last: its supervisor replaces the process it stops).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtest import limits, scrape, slo
from loadtest.histogram import Histogram, merged
from loadtest.players import parse_master, parse_media, pick
from loadtest.workers import merge, merge_seconds
from reelwire.supervisor import listening_pids
from tests.conftest import Backends, Catalog
from tests.test_realtime_processes import server_env
from tests.test_serve import Server

# --- without a server ---------------------------------------------------------------------------


def _exact(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]


def test_merged_histograms_give_the_percentiles_of_the_union() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(3, 1.2) for _ in range(30_000)] + [12_345.6, 0.0, -3.0]
    parts = [Histogram() for _ in range(3)]
    whole = Histogram()
    for n, value in enumerate(values):
        parts[n % 3].add(value)
        whole.add(value)
    # through JSON, as results travel from load processes to the parent
    union = merged([Histogram.from_json(json.loads(json.dumps(h.to_json()))) for h in parts])
    assert union.summary() == whole.summary()
    assert union.samples == len(values)
    for p in (50, 90, 95, 99, 99.9):
        exact = _exact(values, p)
        found = union.percentile(p)
        # the upper edge of the exact value's bucket: 0.1 below 100, 1% above
        assert exact <= found <= exact + max(0.1, exact * 0.01) + 1e-9, (p, exact, found)
    assert union.percentile(100) == whole.worst == 12_345.6
    buckets = union.report_buckets()
    assert sum(buckets["counts"]) == len(values)
    assert buckets["bounds_ms"][-1] >= 12_345.6
    assert len(buckets["bounds_ms"]) == len(buckets["counts"])


def _result(index: int, latencies: list[float], seconds: list[list[float]]) -> dict[str, Any]:
    """A load process's result, as run_worker returns it (only what merge reads)."""
    total = Histogram()
    for value in latencies:
        total.add(value)
    timeline = []
    for t, values in enumerate(seconds):
        second = Histogram()
        for value in values:
            second.add(value)
        timeline.append(
            {
                "t": t, "length": 1.0, "live": 10 * (index + 1), "connected": 10 * (index + 1),
                "failed": index, "messages": len(values), "reconnects": 1, "gaps_recovered": 1,
                "gaps_lost": 0, "stalls": 0, "segments": 0, "latency": second.to_json(),
                "ttfb": None,
            }
        )  # fmt: skip
    return {
        "index": index,
        "viewers": 10 * (index + 1) + index,
        "counts": {"connected": 10 * (index + 1), "failed": index, "messages": len(latencies)},
        "closes": {"1012": index + 1},
        "latency": total.to_json(),
        "update_latency": Histogram().to_json(),
        "actions": {"sent": {"likes": 3}, "done": {"likes": 2 + index}, "errors": 1 - index},
        "burst": None,
        "incident": {
            "at_s": 2.0 + index / 100,
            "affected": 5,
            "recovered": 5,
            "lost": 0,
            "not_back": 0,
            "last_recovery_s": 4.0 + index,
        },
        "players": None,
        "timeline": timeline,
        "events": [{"t": 2.0 + index / 100, "what": "drop 20% of sockets", "count": 5}],
        "seconds": 10.0 + index,
    }


def test_the_merge_sums_counts_adds_histograms_and_aligns_seconds() -> None:
    rng = random.Random(3)
    per_second = [[[rng.uniform(0, 300) for _ in range(200)] for _ in range(4)] for _ in range(2)]
    per_second[1].pop()  # the second process has one second less
    results = [
        _result(i, [v for second in per_second[i] for v in second], per_second[i]) for i in range(2)
    ]
    out = merge(results)
    everything = [v for seconds in per_second for second in seconds for v in second]
    assert out.counts == {"connected": 30, "failed": 1, "messages": len(everything)}
    assert out.closes == {"1012": 3}
    assert out.actions == {"sent": {"likes": 6}, "done": {"likes": 5}, "errors": 1}
    for p in (50, 95, 99):
        assert out.latency.percentile(p) == merged(
            [Histogram.from_json(r["latency"]) for r in results]
        ).percentile(p)
        assert _exact(everything, p) <= out.latency.percentile(p) <= _exact(everything, p) + 1.0
    assert out.incident == {
        "at_s": 2.0, "affected": 10, "recovered": 10, "lost": 0, "not_back": 0, "recovery_s": 3.0,
    }  # fmt: skip
    assert out.events == [{"t": 2.0, "what": "drop 20% of sockets", "count": 10}]
    seconds = merge_seconds([r["timeline"] for r in results])
    assert [s["t"] for s in seconds] == [0, 1, 2, 3]
    for t, second in enumerate(seconds):
        values = per_second[0][t] + (per_second[1][t] if t < 3 else [])
        assert second["messages"] == len(values)
        assert second["latency"].samples == len(values)
        assert second["latency"].percentile(99) == _histogram(values).percentile(99)
        assert second["live"] == 30  # the shorter process's last value still counts


def _histogram(values: list[float]) -> Histogram:
    one = Histogram()
    for value in values:
        one.add(value)
    return one


def test_slo_thresholds_parse_and_decide() -> None:
    thresholds = slo.parse("p99<250ms, lost=0, failed<0.1%, connected>=10, ttfb_p95<0.3s")
    assert [t.text for t in thresholds] == [
        "p99<250ms", "lost=0", "failed<0.1%", "connected>=10", "ttfb_p95<0.3s",
    ]  # fmt: skip
    assert slo.needs(thresholds) == {"player"}
    summary = {
        "viewers": 2000,
        "connected": 1999,
        "failed": 1,
        "lost": 0,
        "latency_ms": {"p99": 120.5, "count": 10},
        "segment_ttfb_ms": {"p95": 250.0, "count": 3},
    }
    verdict = slo.evaluate(thresholds, summary)
    assert verdict["verdict"] == "pass", verdict
    assert [r["measured"] for r in verdict["thresholds"]] == [120.5, 0, 0.05, 1999, 0.25]
    assert verdict["thresholds"][0] == {
        "metric": "p99", "op": "<", "limit": 250, "unit": "ms", "measured": 120.5, "ok": True,
    }  # fmt: skip
    failing = slo.evaluate(slo.parse("p99<100,failed=0,stalls=0"), summary)
    assert failing["verdict"] == "fail"
    assert [r["ok"] for r in failing["thresholds"]] == [False, False, False]  # stalls: unmeasured
    assert failing["thresholds"][2]["measured"] is None
    assert slo.evaluate([], summary)["verdict"] == "none"
    for wrong in ("p99", "p99<fast", "speed<3", "failed<3ms", "p99<1%", ""):
        with pytest.raises(ValueError):
            slo.parse(wrong)


def test_the_server_figures_read_from_metrics() -> None:
    text = (
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total 12.5\n"
        "process_resident_memory_bytes 1.048576e+08\n"
        'reelwire_ws_connections{pid="1"} 3.0\n'
        'reelwire_ws_connections{pid="2"} 4.0\n'
        "reelwire_ws_connections_other 9.0\n"
        "reelwire_transcode_queue_depth 2.0\n"
    )
    assert scrape.parse(text) == {
        "process_cpu_seconds_total": 12.5,
        "process_resident_memory_bytes": 104857600.0,
        "reelwire_ws_connections": 7.0,
        "reelwire_transcode_queue_depth": 2.0,
    }
    # Siblings publish their CPU time once a second: the rate is taken over >= 3 s, so a
    # second in which two updates landed does not read as double.
    scraper = scrape.Scraper(None, "")  # type: ignore[arg-type]
    assert scraper._cpu_rate(0.0, 10.0) is None
    assert scraper._cpu_rate(1.0, 11.0) == 100.0
    assert scraper._cpu_rate(2.0, 11.0) == 50.0  # what there is so far
    assert scraper._cpu_rate(3.0, 13.0) == 100.0
    assert scraper._cpu_rate(4.0, 15.0) == 133.3  # over 1.0 -> 4.0
    assert scraper._cpu_rate(5.0, 15.0) == 133.3  # over 2.0 -> 5.0
    assert scraper._cpu_rate(6.0, 1.0) is None  # the counter started again (a new server)


MASTER = """#EXTM3U
#EXT-X-VERSION:4
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="Audio",DEFAULT=YES,CHANNELS="2",URI="audio/index.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=1645735,AVERAGE-BANDWIDTH=1601506,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=854x480,AUDIO="audio"
480p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1026463,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,AUDIO="audio"
360p/index.m3u8
"""


def test_playlists_and_the_rung_a_player_picks() -> None:
    url = "http://127.0.0.1:1/media/videos/v/hls/master.m3u8"
    variants, audio = parse_master(MASTER, url)
    assert [(v.name, v.bandwidth) for v in variants] == [("360p", 1026463), ("480p", 1645735)]
    assert variants[0].uri == "http://127.0.0.1:1/media/videos/v/hls/360p/index.m3u8"
    assert audio == "http://127.0.0.1:1/media/videos/v/hls/audio/index.m3u8"
    media = parse_media(
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:2.000,\nsegment_00000.ts\n"
        "#EXTINF:4.000,\nsegment_00001.ts\n#EXT-X-ENDLIST\n",
        variants[0].uri,
    )
    assert media.ended and media.target == 4
    assert media.segments[1] == (4.0, "http://127.0.0.1:1/media/videos/v/hls/360p/segment_00001.ts")
    assert pick(variants, None) == 0
    assert pick(variants, 1500) == 0  # 80% of 1,500 kb/s fits 360p (1,026) but not 480p
    assert pick(variants, 2100) == 1
    assert pick(variants, 100) == 0


def test_source_addresses_ports_and_open_files(monkeypatch: pytest.MonkeyPatch) -> None:
    assert limits.source_addresses("127.0.0.2-127.0.0.4", "127.0.0.1") == [
        "127.0.0.2", "127.0.0.3", "127.0.0.4",
    ]  # fmt: skip
    assert limits.source_addresses("3", "127.0.0.1") == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert limits.source_addresses("::1", "::1") == ["::1"]
    for wrong in ("10.0.0.1", "127.0.0.9-127.0.0.2", "::1", "nonsense"):
        with pytest.raises(limits.LimitError):
            limits.source_addresses(wrong, "127.0.0.1")
    ports = limits.port_range()
    limits.check_ports(ports * 2, 2)
    with pytest.raises(limits.LimitError, match="--source-addresses 3"):
        limits.check_ports(ports * 2 + 1, 2)

    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert limits.ensure_files(min(soft, 100)) is not None
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "setrlimit", lambda _, pair: asked.append(pair))
    raised = limits.ensure_files(3000)
    assert raised is not None and (raised.soft, raised.raised_from) == (3000, 1024)
    assert asked == [(3000, 4096)]
    with pytest.raises(limits.LimitError, match=r"may open 4096 at most.*--workers 3"):
        limits.ensure_files(10_000, processes=1)


# --- against a real server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, backends: Backends) -> Iterator[Server]:
    """`reelwire serve --processes 2` with an inline transcode worker in each process."""
    env = server_env(
        backends,
        WEB_CONCURRENCY="2",
        INLINE_WORKER="true",
        TRANSCODE_CONCURRENCY="1",
        WS_MAX_SOCKETS_PER_ADDRESS="0",
    )
    started = Server(tmp_path_factory.mktemp("loadtest") / "home", env)
    try:
        started.wait_healthy()
        deadline = time.monotonic() + 60
        while len(web_processes(started)) < 2 or len(listening_pids(started.port)) < 2:
            assert time.monotonic() < deadline, started.output()
            time.sleep(0.1)
        yield started
    finally:
        started.stop()


def web_processes(server: Server) -> list[int]:
    return [
        p.pid
        for p in server.processes()
        if p.ppid == server.proc.pid and "--reuse-port" in p.command and p.alive
    ]


@pytest.fixture
async def video(server: Server, catalog: Catalog) -> AsyncIterator[str]:
    """A ready public video (a row: no media) to watch."""
    async with aiohttp.ClientSession() as http:
        name = f"owner{os.getpid()}{random.randrange(10**6)}"
        body = {"username": name, "email": f"{name}@example.com", "password": "Passw0rd!"}
        async with http.post(f"{server.url}/api/auth/register", json=body) as resp:
            data = await resp.json()
            assert resp.status == 201, data
    yield await catalog.video(data["user"]["id"])


async def loadtest(server: Server, tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run `reelwire loadtest`; (exit status, the --json record, stderr)."""
    record = tmp_path / f"run-{time.monotonic_ns()}.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reelwire", "loadtest", "--url", server.url, "--actors", "2",
        "--json", str(record), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    stderr = err.decode(errors="replace")
    code = process.returncode
    assert code is not None
    if code == 2:
        raise AssertionError(f"loadtest refused to run:\n{stderr}")
    printed = json.loads(out)
    data = json.loads(record.read_text())
    assert printed["slo"] == data["slo"]
    assert {k: v for k, v in printed.items() if k != "slo"} == data["summary"]
    return code, data, stderr


def check_shape(run: dict[str, Any], seconds: int) -> None:
    """What the report is written against."""
    assert set(run) == {
        "scenario", "started_at", "machine", "options", "summary", "slo", "timeline",
        "latency_histogram", "events",
    }  # fmt: skip
    assert set(run["machine"]) == {"cores", "load_before", "load_after"}
    assert len(run["machine"]["load_before"]) == 3
    timeline = run["timeline"]
    assert [entry["t"] for entry in timeline] == list(range(len(timeline)))
    assert seconds <= len(timeline) <= seconds + 2
    for entry in timeline:
        assert set(entry) == {
            "t", "connected", "deliveries_per_s", "latency_ms", "reconnects", "gaps_recovered",
            "gaps_lost", "segment_ttfb_ms", "stalls", "server",
        }  # fmt: skip
    scraped = [e["server"] for e in timeline if e["server"] is not None]
    assert len(scraped) >= len(timeline) - 2, timeline
    for figures in scraped[1:]:
        assert set(figures) == {"cpu_percent", "rss_mib", "sockets", "queue_depth"}
        assert figures["cpu_percent"] is not None and figures["cpu_percent"] >= 0
        assert figures["rss_mib"] > 50  # two web processes
    histogram = run["latency_histogram"]
    assert sum(histogram["counts"]) == run["summary"]["latency_ms"]["count"]


@pytest.mark.timeout(60)
async def test_a_reconnect_storm_recovers_every_socket_with_since(
    server: Server, video: str, tmp_path: Path
) -> None:
    code, run, stderr = await loadtest(
        server, tmp_path,
        "--video", video, "--viewers", "40", "--ramp", "0.5", "--duration", "5.5",
        "--scenario", "reconnect-storm", "--drop-percent", "50", "--event-at", "1.5",
        "--reconnect-delay", "0.2-1", "--comments-per-s", "8", "--seed", "1",
        "--slo", "lost=0,failed=0,connected>=40,recovery_s<4s,p99<5000ms",
    )  # fmt: skip
    summary = run["summary"]
    assert code == 0, stderr
    assert summary["connected"] == 40 and summary["failed"] == 0
    incident = summary["incident"]
    assert incident["affected"] == 20, incident
    assert incident["recovered"] == 20 and incident["lost"] == 0 and incident["not_back"] == 0
    assert 0 < incident["recovery_s"] < 4
    assert summary["gaps_recovered"] >= 20 and summary["gaps_lost"] == 0 and summary["lost"] == 0
    assert summary["reconnects"] == 20
    # what the dropped sockets missed came as a replay, timed apart from live deliveries
    assert summary["replayed"] > 0
    assert summary["replay_latency_ms"]["count"] == summary["replayed"]
    assert summary["actions"]["comments"] > 20 and summary["latency_ms"]["count"] > 500
    assert run["slo"]["verdict"] == "pass"
    assert [r["metric"] for r in run["slo"]["thresholds"]] == [
        "lost", "failed", "connected", "recovery_s", "p99",
    ]  # fmt: skip
    drops = [e for e in run["events"] if e["what"] == "drop 50% of sockets"]
    assert len(drops) == 1 and drops[0]["count"] == 20 and 1.9 <= drops[0]["t"] <= 2.5
    assert sum(e["reconnects"] for e in run["timeline"]) == 20
    check_shape(run, 6)
    assert max(e["server"]["sockets"] for e in run["timeline"] if e["server"]) >= 40


@pytest.mark.timeout(45)
async def test_two_load_processes_add_up(server: Server, video: str, tmp_path: Path) -> None:
    code, run, stderr = await loadtest(
        server, tmp_path,
        "--video", video, "--viewers", "31", "--workers", "2", "--ramp", "0.5",
        "--duration", "3", "--comments-per-s", "6", "--likes-per-viewer-min", "6",
    )  # fmt: skip
    assert code == 0, stderr
    summary = run["summary"]
    assert summary["workers"] == 2
    assert summary["connected"] == 31 and summary["failed"] == 0
    assert max(e["connected"] for e in run["timeline"]) == 31 == summary["live_peak"]
    assert "connected at once" not in stderr
    assert summary["latency_ms"]["count"] == summary["events"] > 0
    actions = summary["actions"]
    assert actions["comments"] + actions["likes"] == actions["sent"] > 10, actions
    assert actions["errors"] == 0
    # every comment reached every socket watching when it was posted: at most 31 each
    assert summary["events"] <= 31 * actions["comments"]
    check_shape(run, 4)


@pytest.mark.timeout(60)
async def test_a_server_that_is_not_there_is_one_line_and_status_2(tmp_path: Path) -> None:
    from tests.test_serve import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reelwire", "loadtest", "--url", url, "--viewers", "5",
        "--duration", "1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    stderr = err.decode(errors="replace")
    assert process.returncode == 2 and not out, stderr
    assert "Traceback" not in stderr
    assert f"reelwire loadtest: cannot reach {url}" in stderr


@pytest.mark.timeout(30)
async def test_an_impossible_threshold_fails_the_run(
    server: Server, video: str, tmp_path: Path
) -> None:
    code, run, stderr = await loadtest(
        server, tmp_path,
        "--video", video, "--viewers", "5", "--ramp", "0", "--duration", "2",
        "--comments-per-s", "5", "--slo", "p50<0.01ms,failed=0",
    )  # fmt: skip
    assert code == 1, stderr
    assert run["slo"]["verdict"] == "fail"
    p50, failed = run["slo"]["thresholds"]
    assert p50["ok"] is False and p50["measured"] > 0.01 and p50["limit"] == 0.01
    assert failed == {
        "metric": "failed", "op": "=", "limit": 0, "unit": "", "measured": 0, "ok": True,
    }  # fmt: skip
    assert "FAIL p50 < 0.01ms" in stderr


@pytest.mark.timeout(90)
async def test_player_viewers_fetch_segments_and_report_ttfb(
    server: Server, tmp_path: Path
) -> None:
    # An 8 s 480p upload: a 360p and a 480p rung, segments of 2 + 4 + 2 s. Players start on
    # the lowest rung (no simulated bandwidth) and ABR moves them up after the first segment.
    code, run, stderr = await loadtest(
        server, tmp_path,
        "--viewer", "player", "--clip-seconds", "8", "--clip-height", "480",
        "--viewers", "4", "--ramp", "0", "--duration", "3", "--buffer-target", "6",
        "--abr", "--slo", "ttfb_p95<5000ms,stalled=0",
    )  # fmt: skip
    assert code == 0, stderr
    summary = run["summary"]
    players = summary["players"]
    assert players["started"] == 4 and players["plays"] >= 4, players
    assert players["http_errors"] == 0
    # the first segment of the lowest rung, then the top rung once measured: video + audio
    assert players["segments"] >= 8
    assert set(players["rung_segments"]) == {"360p", "480p"}, players
    assert players["abr_switches"]["up"] == 4
    assert summary["segment_ttfb_ms"]["count"] == players["segments"]
    assert 0 < summary["segment_ttfb_ms"]["p50"] < 5000
    assert players["startup_ms"]["count"] >= 4
    assert summary["stalls"] == players["stalls"]
    assert summary["actions"]["views"] == 4  # a view when each started
    assert any(e["segment_ttfb_ms"] for e in run["timeline"])
    assert run["slo"]["verdict"] == "pass"


@pytest.mark.timeout(60)
async def test_a_restarted_web_process_loses_no_socket(
    server: Server, video: str, tmp_path: Path
) -> None:
    children = web_processes(server)
    assert len(children) == 2
    victim = children[0]
    code, run, stderr = await loadtest(
        server, tmp_path,
        "--video", video, "--viewers", "30", "--ramp", "0.5", "--duration", "7",
        "--scenario", "restart", "--restart-pid", str(victim), "--event-at", "1.5",
        "--reconnect-delay", "0.2-1", "--comments-per-s", "6", "--slo", "lost=0",
    )  # fmt: skip
    assert code == 0, stderr
    summary = run["summary"]
    incident = summary["incident"]
    # the kernel spreads connections over both processes' listeners
    assert 0 < incident["affected"] < 30, incident
    assert incident["recovered"] == incident["affected"] and incident["lost"] == 0
    assert incident["recovery_s"] is not None
    assert sum(summary["server_closes"].values()) >= incident["affected"]
    assert summary["server_closes"].get("1012", 0) > 0  # "service restart"
    assert summary["lost"] == 0 and summary["gaps_lost"] == 0
    assert any(e["what"] == f"SIGTERM pid {victim}" for e in run["events"])
    deadline = time.monotonic() + 20
    while victim in web_processes(server) or len(web_processes(server)) < 2:
        assert time.monotonic() < deadline, "the supervisor did not replace the process"
        await asyncio.sleep(0.2)
