"""`python -m loadtest PLAN.json`: one load process of a `reelwire loadtest --workers N` run."""

import sys

from loadtest.workers import worker_main

raise SystemExit(worker_main(sys.argv[1:]))
