"""`--slo 'p99<250ms,lost=0,failed<0.1%'`: thresholds on the summary, and the verdict.

A clause is a metric, an operator (`<`, `<=`, `>`, `>=`, `=`) and a limit with an optional unit:
`ms` or `s` for times (either works for any time), `%` for a count taken as a share (of the
viewers, of the players, of the actions sent). A threshold that could not be measured fails.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "==": operator.eq,
}
_CLAUSE = re.compile(
    r"^\s*(?P<metric>[a-z][a-z0-9_]*)\s*(?P<op><=|>=|==|<|>|=)\s*"
    r"(?P<limit>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|%)?\s*$"
)

Getter = Callable[[dict[str, Any]], float | None]


def _path(*keys: str) -> Getter:
    def get(summary: dict[str, Any]) -> float | None:
        value: Any = summary
        for key in keys:
            if not isinstance(value, dict) or value.get(key) is None:
                return None
            value = value[key]
        return float(value)

    return get


@dataclass(frozen=True)
class Metric:
    """A figure thresholds may name."""

    get: Getter
    kind: str  # "ms", "s" or "count"
    share_of: Getter | None = None  # the whole a `%` limit is a share of
    needs: str | None = None  # "player" or "incident": what must run for it to be measured
    describe: str = ""


def _latency(block: str, figure: str, needs: str | None = None) -> Metric:
    get = _path(block, figure)

    def measured(summary: dict[str, Any]) -> float | None:
        return get(summary) if (summary.get(block) or {}).get("count") else None

    return Metric(measured, "ms", needs=needs, describe=f"{block}.{figure}")


_VIEWERS = _path("viewers")
_PLAYERS = _path("players", "started")
_ACTIONS = _path("actions", "sent")

METRICS: dict[str, Metric] = {
    **{p: _latency("latency_ms", p) for p in ("p50", "p95", "p99", "max", "mean")},
    **{f"update_{p}": _latency("video_update_latency_ms", p) for p in ("p50", "p95", "p99", "max")},
    **{
        f"ttfb_{p}": _latency("segment_ttfb_ms", p, "player")
        for p in ("p50", "p95", "p99", "max", "mean")
    },
    **{
        f"startup_{p}": Metric(
            _path("players", "startup_ms", p), "ms", needs="player", describe=f"startup {p}"
        )
        for p in ("p50", "p95", "p99", "max")
    },
    "connected": Metric(_path("connected"), "count", _VIEWERS, describe="viewers connected"),
    "live_peak": Metric(
        _path("live_peak"), "count", _VIEWERS, describe="viewers connected at once, at most"
    ),
    "failed": Metric(_path("failed"), "count", _VIEWERS, describe="viewers that never connected"),
    "lost": Metric(_path("lost"), "count", _VIEWERS, describe="gaps not filled + not back"),
    "gaps_lost": Metric(_path("gaps_lost"), "count", _VIEWERS),
    "reconnects": Metric(_path("reconnects"), "count", _VIEWERS),
    "stalls": Metric(_path("stalls"), "count", needs="player", describe="buffer ran dry"),
    "stalled": Metric(
        _path("players", "stalled_players"), "count", _PLAYERS, "player", "players that stalled"
    ),
    "stall_seconds": Metric(_path("players", "stall_seconds"), "s", needs="player"),
    "http_errors": Metric(_path("players", "http_errors"), "count", needs="player"),
    "errors": Metric(_path("actions", "errors"), "count", _ACTIONS, describe="actions refused"),
    "recovery_s": Metric(
        _path("incident", "recovery_s"), "s", needs="incident", describe="time to 100% recovered"
    ),
    "rate": Metric(_path("messages_per_second"), "count", describe="deliveries per second"),
}


@dataclass(frozen=True)
class Threshold:
    """One clause of --slo."""

    metric: str
    op: str
    limit: float
    unit: str  # "ms", "s", "%" or ""

    @property
    def text(self) -> str:
        """As written (normalised)."""
        return f"{self.metric}{self.op}{_number(self.limit)}{self.unit}"


def parse(text: str) -> list[Threshold]:
    """The thresholds of an --slo value; ValueError names the clause that is wrong."""
    thresholds = []
    for clause in filter(None, (c.strip() for c in text.split(","))):
        match = _CLAUSE.match(clause)
        if match is None:
            raise ValueError(
                f"cannot read {clause!r}: write <metric><op><limit>[unit], e.g. p99<250ms"
            )
        metric, op, unit = match["metric"], match["op"], match["unit"] or ""
        known = METRICS.get(metric)
        if known is None:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if unit in ("ms", "s") and known.kind == "count":
            raise ValueError(f"{clause!r}: {metric} is a count, not a time")
        if unit == "%" and known.share_of is None:
            raise ValueError(f"{clause!r}: {metric} cannot be a percentage")
        if not unit and known.kind in ("ms", "s"):
            unit = known.kind
        thresholds.append(Threshold(metric, "=" if op == "==" else op, float(match["limit"]), unit))
    if not thresholds:
        raise ValueError("no threshold given")
    return thresholds


def needs(thresholds: list[Threshold]) -> set[str]:
    """What the run must do for every threshold to be measured ("player", "incident")."""
    return {n for t in thresholds if (n := METRICS[t.metric].needs) is not None}


def measure(threshold: Threshold, summary: dict[str, Any]) -> float | None:
    """The measured value in the threshold's unit (None when not measured)."""
    metric = METRICS[threshold.metric]
    value = metric.get(summary)
    if value is None:
        return None
    if threshold.unit == "%":
        assert metric.share_of is not None
        whole = metric.share_of(summary)
        if not whole:
            return None
        return round(value / whole * 100, 4)
    if metric.kind == "ms" and threshold.unit == "s":
        return value / 1000
    if metric.kind == "s" and threshold.unit == "ms":
        return value * 1000
    return value


def evaluate(thresholds: list[Threshold], summary: dict[str, Any]) -> dict[str, Any]:
    """`{"thresholds": [{metric, op, limit, unit, measured, ok}], "verdict"}`."""
    rows = []
    for threshold in thresholds:
        measured = measure(threshold, summary)
        ok = measured is not None and _OPS[threshold.op](measured, threshold.limit)
        rows.append(
            {
                "metric": threshold.metric,
                "op": threshold.op,
                "limit": _number(threshold.limit),
                "unit": threshold.unit,
                "measured": measured,
                "ok": ok,
            }
        )
    verdict = "none" if not rows else ("pass" if all(r["ok"] for r in rows) else "fail")
    return {"thresholds": rows, "verdict": verdict}


def verdict_lines(slo: dict[str, Any]) -> list[str]:
    """One line per threshold, for a person."""
    lines = []
    for row in slo["thresholds"]:
        limit = f"{row['op']} {_number(row['limit'])}{row['unit']}"
        measured = "not measured" if row["measured"] is None else f"{row['measured']}{row['unit']}"
        lines.append(f"  {'ok  ' if row['ok'] else 'FAIL'} {row['metric']} {limit}: {measured}")
    return lines


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
