"""Log lines: text for people (the default) or one JSON object a line (LOG_FORMAT=json).

A JSON line has `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `message`, and
`request_id` while an HTTP request is being served (set by http_api.middlewares for the task
that serves it), plus `exception` (the traceback) when one is logged.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The id of the request the current task serves (None outside a request).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object a line; never raises on odd arguments."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str, fmt: str = "TEXT") -> None:
    """Log to stderr at `level`, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt.upper() == "JSON":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    for noisy in ("aiohttp.access",):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
