"""`python -m reelwire` is the `reelwire` command."""

from reelwire.cli import main

raise SystemExit(main())
