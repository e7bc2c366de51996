"""The load tester's first home, kept for the scripts that import it from here."""

from loadtest.cli import add_arguments, run
from loadtest.histogram import Latency
from loadtest.viewers import Target, Totals, Viewer, keep_watching, open_viewer

__all__ = [
    "Latency",
    "Target",
    "Totals",
    "Viewer",
    "add_arguments",
    "keep_watching",
    "open_viewer",
    "run",
]
