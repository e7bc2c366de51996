"""Fan-out through a three-master Redis Cluster and through one Redis, same run, same load.

Two set-ups, one after the other in one run, with PostgreSQL shared:

- cluster  a three-master Redis Cluster without replicas (tests/redis_cluster.py's helper, the
           one the cluster tests use); Reelwire detects it and uses sharded pub/sub (SPUBLISH,
           one SSUBSCRIBE connection per master that owns a watched channel).
- single   one Redis (the same redis-server binary, cluster mode off): PUBLISH/SUBSCRIBE.

In each, two `reelwire serve` processes (one web process each, own ports, both pinned to CPU 0)
take half of the viewers each; process A's sockets watch videos 1..K, process B's videos
K+1..2K, so neither process has a socket on the other's channels. The load process (CPU 1, with
PostgreSQL and Redis) publishes `new_comment` events round-robin on all 2K videos through
Reelwire's EventBus (the Lua script: history append + PUBLISH or SPUBLISH) and counts what the
viewers receive. Measured per set-up:

- server CPU seconds (both processes, utime + stime from /proc) per delivered message;
- messages delivered to the WebSockets and the p50/p99 publish-to-socket latency;
- Redis pub/sub messages received per process: each server runs through
  scripts/bench_cluster_serve.py, which counts every message its subscriber reads off its Redis
  connection(s) (`message` or `smessage`, by channel) before the hub sees it, and reports it as
  its own channels', the other process's channels', and anything else;
- the Redis side: bytes the Redis server(s) sent (INFO stats total_net_output_bytes), and on the
  cluster the cluster-bus messages (CLUSTER INFO: a classic PUBLISH is broadcast to every node
  over the bus, an SPUBLISH stays on its shard).

The machine's load average and CPU count are printed beside the figures: other processes (a test
run, another benchmark) may have been running, and the load average shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_fanout import SECRET, cpu_seconds, event, pin_existing, seed  # noqa: E402
from benchlib import free_port, pinned, stop, wait_listening  # noqa: E402

SETUPS = ("cluster", "single")


def load_now() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}, {os.cpu_count()} CPUs"


# --- the load process (CPU 1) ------------------------------------------------------------


def read_counts(path: str) -> dict[str, int]:
    try:
        counts: dict[str, int] = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return counts


async def node_stats(ports: list[int], cluster: bool) -> dict[str, int]:
    """Bytes the Redis server(s) sent to clients; on a cluster, the bus's publish messages."""
    import redis.asyncio as aioredis

    totals = {"redis_out_bytes": 0, "bus_publish_sent": 0, "bus_publishshard_sent": 0}
    for port in ports:
        client = aioredis.Redis(host="127.0.0.1", port=port)
        try:
            stats = await client.info("stats")
            totals["redis_out_bytes"] += int(stats["total_net_output_bytes"])
            if cluster:
                raw = await client.execute_command("CLUSTER", "INFO")
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
                totals["bus_publish_sent"] += int(
                    info.get("cluster_stats_messages_publish_sent", 0)
                )
                totals["bus_publishshard_sent"] += int(
                    info.get("cluster_stats_messages_publishshard_sent", 0)
                )
        finally:
            await client.aclose()
    return totals


async def run_setup(spec: dict[str, Any]) -> dict[str, Any]:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster

    from loadtest import Target, Totals, open_viewer
    from pubsub import keys
    from pubsub.bus import EventBus
    from pubsub.outbox import Outbox

    servers = spec["servers"]
    totals = Totals()
    gate = asyncio.Semaphore(200)
    viewers: list[Any] = []

    async def one(n: int) -> None:
        server = servers[n % len(servers)]
        channels = server["channels"]
        target = Target("127.0.0.1", server["port"], "/ws", "reelwire")
        failure: Exception | None = None
        async with gate:
            for attempt in range(5):
                try:
                    channel = channels[(n // len(servers)) % len(channels)]
                    viewers.append(await open_viewer(target, totals, channel))
                    totals.connected += 1
                    return
                except (OSError, TimeoutError, ConnectionError) as exc:
                    failure = exc
                    await asyncio.sleep(0.5 * (attempt + 1))
        totals.failed += 1
        if totals.failed == 1:
            print(f"a viewer could not connect: {failure!r}", file=sys.stderr)

    await asyncio.gather(*(one(n) for n in range(spec["viewers"])))
    watchers: dict[str, int] = {}
    for viewer in viewers:
        watchers[viewer.channel] = watchers.get(viewer.channel, 0) + 1
    await asyncio.sleep(2)  # presence and snapshots settle

    cluster = spec["setup"] == "cluster"
    client: Any
    if cluster:
        client = RedisCluster.from_url(spec["redis_url"])
        await client.initialize()
    else:
        client = aioredis.Redis.from_url(spec["redis_url"])
    bus = EventBus(client, Outbox(), history_size=1000, history_ttl=600)
    masters = []
    for server in servers:
        if cluster:
            names = [keys.redis_channel(c, True) for c in server["channels"]]
            masters.append(len({client.get_node_from_key(n).port for n in names}))
        else:
            masters.append(1)
    order = [c for pair in zip(*(s["channels"] for s in servers), strict=True) for c in pair]

    pids = [s["pid"] for s in servers]
    totals.reset()
    counts_before = [read_counts(s["count_file"]) for s in servers]
    nodes_before = await node_stats(spec["redis_ports"], cluster)
    load_before = os.getloadavg()
    cpu_before = [cpu_seconds([pid]) for pid in pids]
    started = time.monotonic()
    rate, seconds = spec["rate"], spec["seconds"]
    published: dict[str, int] = {}
    expected = 0
    sent = 0
    while sent < rate * seconds:
        channel = order[sent % len(order)]
        await bus.publish(channel, event(channel.split(":", 1)[1], sent))
        published[channel] = published.get(channel, 0) + 1
        expected += watchers.get(channel, 0)
        sent += 1
        wait = started + sent / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
    deadline = time.monotonic() + 10
    # The counter is bumped by protocol callbacks; polling it is the simplest wait.
    while totals.events < expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    cpu = [cpu_seconds([pid]) - before for pid, before in zip(pids, cpu_before, strict=True)]
    load_after = os.getloadavg()
    await asyncio.sleep(0.6)  # the servers' counter files are rewritten every 0.2 s
    nodes_after = await node_stats(spec["redis_ports"], cluster)
    counts_after = [read_counts(s["count_file"]) for s in servers]
    for viewer in viewers:
        viewer._abort()
    await client.aclose()

    per_server = []
    for index, server in enumerate(servers):
        own = {keys.redis_channel(c, cluster) for c in server["channels"]}
        others = {
            keys.redis_channel(c, cluster)
            for other in servers
            if other is not server
            for c in other["channels"]
        }
        got = {"own": 0, "foreign": 0, "other": 0}
        before, after = counts_before[index], counts_after[index]
        for name, n in after.items():
            delta = n - before.get(name, 0)
            kind = "own" if name in own else "foreign" if name in others else "other"
            got[kind] += delta
        per_server.append(
            {
                "viewers": sum(watchers.get(c, 0) for c in server["channels"]),
                "channels": len(server["channels"]),
                "masters_holding_its_channels": masters[index],
                "published_on_its_channels": sum(published.get(c, 0) for c in server["channels"]),
                "redis_messages_received": sum(got.values()),
                "of_its_channels": got["own"],
                "of_the_other_process_channels": got["foreign"],
                "of_other_channels": got["other"],
                "cpu_s": round(cpu[index], 2),
            }
        )
    nodes = {k: nodes_after[k] - nodes_before[k] for k in nodes_after}
    return {
        "setup": spec["setup"],
        "redis_nodes": len(spec["redis_ports"]),
        "connected": totals.connected,
        "failed": totals.failed,
        "published": sent,
        "expected": expected,
        "delivered": totals.events,
        "lost": expected - totals.events,
        "gaps": totals.gaps_lost,
        "server_cpu_s": round(sum(cpu), 2),
        "seconds": round(elapsed, 2),
        "cpu_us_per_message": round(sum(cpu) / max(1, totals.events) * 1e6, 3),
        "latency_ms": totals.latency.summary(),
        "servers": per_server,
        "redis": nodes,
        "load_average": [round(x, 2) for x in (*load_before, *load_after)],
        "cpus": os.cpu_count(),
    }


def load_main(spec_json: str) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    import uvloop

    print(json.dumps(uvloop.run(run_setup(json.loads(spec_json)))))


# --- orchestration ----------------------------------------------------------------------


class SingleRedis:
    """One Redis (the cluster's redis-server binary, cluster mode off) on 127.0.0.1."""

    def __init__(self, server: str, cli: str, root: Path) -> None:
        self.server, self.cli, self.root = server, cli, root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [self.server, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.root), "--save", "", "--appendonly", "no"]
        with open(self.root / "redis.log", "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ping = subprocess.run([self.cli, "-p", str(self.port), "PING"], capture_output=True)
            if ping.stdout.strip() == b"PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not answer PING")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


def start_server(port: int, env: dict[str, str], count_file: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(ROOT / "scripts" / "bench_cluster_serve.py")]
    proc = subprocess.Popen(
        pinned(0, argv),
        env={**env, "PORT": str(port), "BENCH_COUNT_FILE": str(count_file)},
        cwd=ROOT,
    )
    try:
        wait_listening(proc, port, "reelwire serve")
    except RuntimeError:
        stop(proc)
        raise
    return proc


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    load = subprocess.Popen(
        pinned(1, [sys.executable, __file__, "--load", json.dumps(spec)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        out, err = load.communicate(timeout=300)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    if load.returncode != 0:
        raise RuntimeError(f"load process failed:\n{err[-3000:]}")
    sys.stderr.write(err[-2000:])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=4000, help="over both processes")
    parser.add_argument("--videos", type=int, default=10, help="watched per process")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second, in all")
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing, per set-up")
    parser.add_argument("--order", nargs="+", choices=SETUPS, default=list(SETUPS))
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load_main(args.load)
        return
    signal.signal(signal.SIGTERM, interrupted)  # clean up as on Ctrl-C

    from tests.redis_cluster import RedisCluster, require_redis7

    try:
        redis_server, redis_cli = require_redis7()
    except BaseException as exc:  # pytest's skip outcome: no Redis 7+ here
        sys.exit(f"bench_cluster: {exc}")

    from reelwire.embedded import EmbeddedPostgres
    from storage.migrate import migrate_url

    print(f"bench_cluster: start, {load_now()}", file=sys.stderr)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="reelwire-bench-cluster-") as scratch:
        root = Path(scratch)
        postgres = EmbeddedPostgres(root / "postgres", durable=False)
        postgres.start()
        running: list[Any] = []  # what `finally` stops: servers and Redis, newest first
        try:
            pid_file = root / "postgres" / "data" / "postmaster.pid"
            if pid_file.exists():
                pin_existing(1, int(pid_file.read_text().split()[0]))
            asyncio.run(migrate_url(postgres.url))
            videos, _ = asyncio.run(seed(postgres.url, 2 * args.videos, 0))
            channels = [f"video:{v}" for v in videos]
            for setup in args.order:
                redis: Any
                if setup == "cluster":
                    redis = RedisCluster(root / "cluster")
                    running.append(redis)
                    redis.start()
                    ports, pids = redis.ports, [p.pid for p in redis.procs]
                else:
                    redis = SingleRedis(redis_server, redis_cli, root / "single")
                    running.append(redis)
                    redis.start()
                    assert redis.proc is not None
                    ports, pids = [redis.port], [redis.proc.pid]
                for pid in pids:
                    pin_existing(1, pid)
                env = {
                    **os.environ,
                    "REELWIRE_HOME": str(root / "home"),
                    "DATABASE_URL": postgres.url,
                    "REDIS_URL": redis.url,
                    "JWT_SECRET_KEY": SECRET,
                    "INLINE_WORKER": "false",
                    "LOG_LEVEL": "WARNING",
                    "RATE_LIMITS_ENABLED": "false",
                    "WS_MAX_SOCKETS_PER_ADDRESS": "0",  # every viewer comes from 127.0.0.1
                    "WEB_CONCURRENCY": "1",
                }
                servers = []
                for index in range(2):
                    port = free_port()
                    count_file = root / f"{setup}-{index}.counts.json"
                    proc = start_server(port, env, count_file)
                    running.append(proc)
                    servers.append(
                        {
                            "port": port,
                            "pid": proc.pid,
                            "count_file": str(count_file),
                            "channels": channels[index * args.videos : (index + 1) * args.videos],
                        }
                    )
                spec = {
                    "setup": setup,
                    "redis_url": redis.url,
                    "redis_ports": ports,
                    "servers": servers,
                    "viewers": args.viewers,
                    "rate": args.rate,
                    "seconds": args.seconds,
                }
                results[setup] = run_load(spec)
                print(setup, json.dumps(results[setup]), file=sys.stderr)
                while running:
                    item = running.pop()
                    stop(item) if isinstance(item, subprocess.Popen) else item.stop()
        finally:
            while running:
                item = running.pop()
                try:
                    stop(item) if isinstance(item, subprocess.Popen) else item.stop()
                except Exception as exc:
                    print(f"bench_cluster: stopping {item!r}: {exc!r}", file=sys.stderr)
            postgres.stop()
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(
        f"fan-out through Redis: {args.viewers} viewers over 2 `reelwire serve` processes (both on "
        f"CPU 0), {args.videos} videos each, {args.rate:g} events/s round-robin on all "
        f"{2 * args.videos} for {args.seconds:g} s; load, PostgreSQL and Redis on CPU 1"
    )
    print(f"machine: {os.cpu_count()} CPUs; {load_now()} now (other processes may have run)")
    print(
        f"{'set-up':<10}{'CPU us/msg':>11}{'CPU s':>7}{'delivered':>18}{'p50 ms':>8}"
        f"{'p99 ms':>8}  {'Redis msgs received, A / B (expected A / B)':<44}{'load avg 1m':>12}"
    )
    for setup in SETUPS:
        r = results.get(setup)
        if not r:
            continue
        a, b = r["servers"]
        received = (
            f"{a['redis_messages_received']} / {b['redis_messages_received']} "
            f"({a['published_on_its_channels']} / {b['published_on_its_channels']})"
        )
        load = f"{r['load_average'][0]:.2f}-{r['load_average'][3]:.2f}"
        print(
            f"{setup:<10}{r['cpu_us_per_message']:>11.2f}{r['server_cpu_s']:>7.2f}"
            f"{r['delivered']:>9} of {r['expected']:<6}{r['latency_ms']['p50']:>8}"
            f"{r['latency_ms']['p99']:>8}  {received:<44}{load:>12}"
        )
    for setup in SETUPS:
        r = results.get(setup)
        if not r:
            continue
        for name, s in zip("AB", r["servers"], strict=True):
            print(
                f"  {setup} process {name}: {s['viewers']} viewers on {s['channels']} videos "
                f"(on {s['masters_holding_its_channels']} Redis node(s)); read from Redis "
                f"{s['of_its_channels']} messages of its channels, "
                f"{s['of_the_other_process_channels']} of the other process's, "
                f"{s['of_other_channels']} of other channels; CPU {s['cpu_s']} s"
            )
        bus = ""
        if setup == "cluster":
            bus = (
                f"; cluster bus: {r['redis']['bus_publish_sent']} PUBLISH + "
                f"{r['redis']['bus_publishshard_sent']} SPUBLISH messages sent between nodes"
            )
        print(
            f"  {setup}: Redis ({r['redis_nodes']} node(s)) sent {r['redis']['redis_out_bytes']} "
            f"bytes to clients{bus}"
        )
    print(
        "Redis messages received: counted in each server process on every pub/sub message its "
        "subscriber reads off its Redis connection(s) (`message`/`smessage`, wrapped "
        "ChannelSubscriber._deliver, scripts/bench_cluster_serve.py) during the window; "
        "expected = events published on that process's videos."
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
