"""/metrics of `reelwire serve --processes 2`: the sum over both processes, never going back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Backends, Catalog
from tests.test_realtime_processes import server_env
from tests.test_serve import Server
from tests.wsclient import Socket

REQUIRED = (
    "reelwire_http_requests",
    "reelwire_http_request_duration_seconds",
    "reelwire_ws_connections",
    "reelwire_ws_subscriptions",
    "reelwire_ws_messages_delivered",
    "reelwire_ws_video_updates_coalesced",
    "reelwire_ws_slow_closes",
    "reelwire_ws_recoveries",
    "reelwire_outbox_depth",
    "reelwire_transcode_queue_depth",
    "reelwire_transcode_queue_oldest_age_seconds",
    "reelwire_ffmpeg_failures",
    "reelwire_db_pool_size",
    "reelwire_db_pool_in_use",
    "reelwire_db_pool_max",
    "reelwire_db_acquire_seconds",
    "reelwire_redis_command_seconds",
)
ROUNDS = 10
PINGS = 4  # HTTP requests a round, each on a new connection (so on either process)


Totals = dict[str, dict[tuple[tuple[str, str], ...], float]]


async def scrape(url: str) -> Totals:
    """One scrape on a connection of its own: family -> labels -> value (summed samples)."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh,
        fresh.get(f"{url}/metrics") as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    found: Totals = {}
    for family in text_string_to_metric_families(text):
        series = found.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket")):
                continue
            key = (("", sample.name), *sorted(sample.labels.items()))
            series[key] = sample.value
    return found


def total(found: Totals, family: str, sample: str | None = None, **labels: str) -> float:
    """The sum of a family's samples named `sample` (the family's own name by default) whose
    labels include `labels`."""
    name = sample or family
    return sum(
        value
        for key, value in found.get(family, {}).items()
        if key[0][1] == name and set(labels.items()) <= set(key[1:])
    )


@pytest.fixture
async def fleet(tmp_path: Path, backends: Backends, reset: None) -> AsyncIterator[Server]:
    server = Server(tmp_path / "home", server_env(backends, WEB_CONCURRENCY="2"))
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


# Two web processes start (a few seconds each on two cores), then ten rounds of traffic.
@pytest.mark.timeout(90)
async def test_scrapes_sum_every_process_and_never_go_back(fleet: Server, catalog: Catalog) -> None:
    url = fleet.url
    async with aiohttp.ClientSession() as http:
        body = {"username": "meter", "email": "meter@example.com", "password": "Passw0rd!"}
        async with http.post(f"{url}/api/auth/register", json=body) as resp:
            data = await resp.json()
            assert resp.status == 201, data
        token = data["tokens"]["access_token"]
        video = await catalog.video(data["user"]["id"])

        # Sockets until both processes hold some (the kernel picks one per connection).
        sockets: list[Socket] = []
        nodes: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while (len(nodes) < 2 or min(nodes.values()) < 2) and time.monotonic() < deadline:
            sock = await Socket.open(http, f"{url}/ws")
            node = sock.welcome["node"]
            nodes[node] = nodes.get(node, 0) + 1
            sockets.append(sock)
            if len(sockets) > 30:
                await asyncio.sleep(0.2)  # the second process may still be starting
        assert len(nodes) == 2, f"all sockets on one process: {nodes}"
        for sock in sockets:
            answer = await sock.subscribe(f"video:{video}", events=["new_comment"])
            assert answer["type"] == "subscribed", answer

        previous: Totals = {}
        watched = (
            ("reelwire_http_requests", "reelwire_http_requests_total"),
            (
                "reelwire_http_request_duration_seconds",
                "reelwire_http_request_duration_seconds_count",
            ),
            ("reelwire_ws_messages_delivered", "reelwire_ws_messages_delivered_total"),
        )
        for n in range(ROUNDS):
            for _ in range(PINGS):
                async with (
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(force_close=True)
                    ) as fresh,
                    fresh.get(f"{url}/healthz") as resp,
                ):
                    assert resp.status == 200
            async with http.post(
                f"{url}/api/videos/{video}/comments",
                json={"content": f"comment {n}"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                assert resp.status == 201, await resp.text()
            for sock in sockets:
                assert (await sock.expect("new_comment"))["comment"]["content"] == f"comment {n}"
            found = await scrape(url)
            for family, sample in watched:
                for key, value in previous.get(family, {}).items():
                    if key[0][1] == sample:
                        now = found.get(family, {}).get(key, 0.0)
                        assert now >= value, f"{sample}{dict(key[1:])} went back: {value} -> {now}"
            previous = found

        # Each process publishes its share at least once a second: the sums reach the totals.
        expected_delivered = ROUNDS * len(sockets)
        deadline = time.monotonic() + 10
        while True:
            found = await scrape(url)
            pings = total(
                found, "reelwire_http_requests", "reelwire_http_requests_total", route="/healthz"
            )
            delivered = total(
                found, "reelwire_ws_messages_delivered", "reelwire_ws_messages_delivered_total"
            )
            connections = total(found, "reelwire_ws_connections")
            subscriptions = total(found, "reelwire_ws_subscriptions")
            done = (pings, delivered, connections, subscriptions) == (
                ROUNDS * PINGS,
                expected_delivered,
                len(sockets),
                len(sockets),
            )
            if done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert pings == ROUNDS * PINGS
        assert delivered == expected_delivered
        assert connections == len(sockets) and subscriptions == len(sockets)
        missing = [name for name in REQUIRED if name not in found]
        assert not missing, f"families missing from /metrics: {missing}"
        assert total(found, "reelwire_db_pool_size") >= 2  # one pool per process
        for sock in sockets:
            await sock.close()


def test_the_dashboard_shows_every_series_and_only_ours() -> None:
    path = Path(__file__).parent.parent / "docs" / "grafana-dashboard.json"
    dashboard = orjson.loads(path.read_bytes())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    names = {name for expr in exprs for name in re.findall(r"reelwire_\w+", expr)}
    used = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in names}
    known = {*REQUIRED, "reelwire_transcode_job_seconds", "reelwire_transcode_ladder_seconds"}
    assert used == known, (used - known, known - used)


async def test_counters_of_a_replaced_process_stay_counted(fleet: Server) -> None:
    async def pings(n: int) -> None:
        for _ in range(n):
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh,
                fresh.get(f"{fleet.url}/healthz") as resp,
            ):
                assert resp.status == 200

    def counted(found: Totals) -> float:
        return total(
            found, "reelwire_http_requests", "reelwire_http_requests_total", route="/healthz"
        )

    def web_children() -> list[int]:
        return [
            p.pid
            for p in fleet.processes()
            if p.ppid == fleet.proc.pid and "--reuse-port" in p.command and p.alive
        ]

    await pings(20)
    assert counted(await scrape(fleet.url)) == 20
    children = web_children()
    assert len(children) == 2, children
    os.kill(children[0], signal.SIGKILL)
    # The supervisor starts another; meanwhile and after, the sum never drops below 20.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            assert counted(await scrape(fleet.url)) >= 20
        replaced = web_children()
        if len(replaced) == 2 and children[0] not in replaced:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the supervisor did not replace the killed web process")
    await pings(10)
    deadline = time.monotonic() + 20
    while counted(found := await scrape(fleet.url)) != 30 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert counted(found) == 30
