"""Percentiles and latency summaries: the one place the benchmarks and the reliability suite turn
samples into figures.

Nearest-rank percentiles (the value of the ceil(q·n)-th smallest sample, no interpolation), so every
figure is a latency that really happened. `pct_us` turns nanosecond samples into microseconds; `pct`
keeps the values' own unit. An empty sample set gives None (JSON null), never NaN. It must not
read any clock or decide whether a target is met.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["dist_ms", "pct", "pct_us", "peak_units", "percentile", "summary_us"]


def _rank(n: int, q: float) -> int:
    """0-based index of the nearest-rank q-quantile of n sorted values (q·n rounded first, so that
    0.99 x 2000 is 1980 and not 1980.0000000000002)."""
    return min(n - 1, max(0, math.ceil(round(q * n, 9)) - 1))


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank q-quantile (0 < q <= 1) of `values`, in their unit; None when empty."""
    ordered = sorted(values)
    return ordered[_rank(len(ordered), q)] if ordered else None


def pct_us(samples_ns: Iterable[int], q: float, digits: int = 1) -> float | None:
    """Percentile of nanosecond samples, in microseconds."""
    v = percentile(samples_ns, q)
    return None if v is None else round(v / 1000, digits)


def pct(values: Iterable[float], q: float, digits: int = 2) -> float | None:
    """Percentile of `values`, in their unit, rounded."""
    v = percentile(values, q)
    return None if v is None else round(v, digits)


def summary_us(samples_ns: Sequence[int]) -> dict[str, float | int | None]:
    """p50/p90/p99 (µs) and the count of nanosecond samples."""
    return {
        "p50": pct_us(samples_ns, 0.5),
        "p90": pct_us(samples_ns, 0.9),
        "p99": pct_us(samples_ns, 0.99),
        "n": len(samples_ns),
    }


def dist_ms(values_ms: Sequence[float]) -> dict[str, Any]:
    """Count, p50/p99/p99.9 and max of millisecond values (the reliability suite's latency shape)."""
    return {
        "n": len(values_ms),
        "p50": pct(values_ms, 0.5),
        "p99": pct(values_ms, 0.99),
        "p999": pct(values_ms, 0.999),
        "max": round(max(values_ms), 2) if values_ms else None,
    }


def peak_units(events: Iterable[tuple[int, int]], window_ms: int = 1000) -> int:
    """The most units in any rolling window of `window_ms`, as the emulator's (and Bybit's) limiter
    counts: at each arrival t (ms), the units that arrived in (t - window, t]."""
    ordered = sorted(events)
    best = total = lo = 0
    for t, units in ordered:
        total += units
        while ordered[lo][0] <= t - window_ms:
            total -= ordered[lo][1]
            lo += 1
        best = max(best, total)
    return best
