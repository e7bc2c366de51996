"""Schemathesis hooks for the fuzz run (tests/test_schemathesis.py), loaded by its CLI from
SCHEMATHESIS_HOOKS: a tus chunk (`application/offset+octet-stream`) is raw bytes, sent like
`application/octet-stream`."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
