"""`reelwire serve` (one process) that also counts the pub/sub messages it reads from Redis.

Used by scripts/bench_cluster.py. Every message a subscriber reads (`message` from SUBSCRIBE,
`smessage` from SSUBSCRIBE) goes through `ChannelSubscriber._deliver`; this wraps that method
with a per-channel counter and writes the counts to BENCH_COUNT_FILE (JSON, replaced atomically)
five times a second from a thread. Nothing else of the server changes.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pubsub import subscriber  # noqa: E402

COUNTS: collections.Counter[bytes] = collections.Counter()
_deliver = subscriber.ChannelSubscriber._deliver


def _counting(self: Any, name: bytes, payload: bytes) -> None:
    COUNTS[name] += 1
    _deliver(self, name, payload)


def _dump(path: Path) -> None:
    spare = path.with_suffix(".tmp")
    while True:
        snapshot = {name.decode(): n for name, n in COUNTS.copy().items()}
        spare.write_text(json.dumps(snapshot))
        os.replace(spare, path)
        time.sleep(0.2)


def main() -> int:
    subscriber.ChannelSubscriber._deliver = _counting  # type: ignore[method-assign]
    path = Path(os.environ["BENCH_COUNT_FILE"])
    threading.Thread(target=_dump, args=(path,), daemon=True, name="bench-counts").start()
    from reelwire.cli import main as reelwire

    return reelwire(["serve", "--processes", "1"])


if __name__ == "__main__":
    raise SystemExit(main())
