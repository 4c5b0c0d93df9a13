"""Add up the tallies of several wrk processes that loaded one service together (one wrk per node).

Counts are summed. The Lua scripts print wrk's latency percentiles, not its
histogram: wrk 4 hands the histogram to Lua one value per call, and each
call scans every microsecond bucket up to the maximum, too slow for a
run's range. So a merged percentile cannot be exact. It is the highest of
the parts' values, an upper bound, because the p-th percentile of the
merged requests lies between the lowest and the highest of the parts'
p-th percentiles. min and max are exact. mean and stdev weight each part by
its completed requests, which matches wrk's own count unless requests
passed wrk's --timeout (wrk counts those as completed but records no
latency for them).
"""

from __future__ import annotations

import math
from typing import Any

# Tally fields that are counts: summed across wrk processes.
_SUMMED_FIELDS = (
    "threads", "completed", "bytes", "sent_total", "received", "non_json", "server_errors",
    "expected_tickets", "unknown_passengers", "corrupt_expectations",
)
_SUMMED_TABLES = ("sent", "ok", "statuses", "codes", "socket_errors")
PERCENTILES = ("p50", "p75", "p90", "p99", "p999")


def _add_counts(total: dict[str, int], part: dict[str, int] | None) -> None:
    for key, value in (part or {}).items():
        total[key] = total.get(key, 0) + value


def merge_latency(parts: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """Merge the latency summaries (microseconds) of several wrk processes, each given with its request count.

    min and max are exact, mean is weighted by request count, and stdev is
    the pooled standard deviation of all requests. Each percentile is the
    highest of the parts' values, an upper bound of the merged percentile.
    Parts without requests are left out.
    """
    measured = [(count, latency) for count, latency in parts if count > 0 and latency]
    if not measured:
        return {}
    total = sum(count for count, _ in measured)
    mean = sum(count * latency["mean"] for count, latency in measured) / total
    squares = sum(
        (count - 1) * latency["stdev"] ** 2 + count * (latency["mean"] - mean) ** 2 for count, latency in measured
    )
    merged = {
        "min": min(latency["min"] for _, latency in measured),
        "max": max(latency["max"] for _, latency in measured),
        "mean": mean,
        "stdev": math.sqrt(squares / (total - 1)) if total > 1 else 0.0,
    }
    for name in PERCENTILES:
        merged[name] = max(latency[name] for _, latency in measured)
    return merged


def merge_tallies(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the ``BENCH_RESULT`` tallies of several wrk processes that loaded one server together.

    Counts and count tables are summed, ``duration_us`` is the longest
    part's, and latency is merged by ``merge_latency``.
    """
    if len(parts) == 1:
        return parts[0]
    merged: dict[str, Any] = {name: 0 for name in _SUMMED_FIELDS}
    for name in _SUMMED_TABLES:
        merged[name] = {}
    for part in parts:
        for name in _SUMMED_FIELDS:
            merged[name] += part.get(name, 0)
        for name in _SUMMED_TABLES:
            _add_counts(merged[name], part.get(name))
    merged["duration_us"] = max(part.get("duration_us", 0) for part in parts)
    merged["latency_us"] = merge_latency([(part.get("completed", 0), part.get("latency_us", {})) for part in parts])
    return merged
