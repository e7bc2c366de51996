"""`reelwire loadtest`: many WebSocket viewers (and players, and REST or WS actions) against a
server on this machine, a client tool of its own beside the server it measures.

Modules: `cli` (options, a run from start to verdict), `viewers` (the raw-socket WebSocket
viewer), `players` (HLS playback), `engage` (views, likes, comments), `scenarios`, `workers`
(load processes and the exact merge of their results), `histogram`, `slo`, `scrape` (the
server's /metrics), `limits` (open files, source addresses), `prepare` (users, test video),
`progress` and `results` (the summary and the run record).
"""

from loadtest.cli import add_arguments, run
from loadtest.histogram import Histogram, Latency
from loadtest.viewers import Target, Totals, Viewer, keep_watching, open_viewer

__all__ = [
    "Histogram",
    "Latency",
    "Target",
    "Totals",
    "Viewer",
    "add_arguments",
    "keep_watching",
    "open_viewer",
    "run",
]
