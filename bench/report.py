"""What every report of the benchmarks and of the reliability suite carries besides its figures:
the machine it ran on and its targets, each in one shape.

A target is `{"value", "limit", "pass", "what"}`: `pass` is True or False when the figure was
measured, None when it is missing or only reported. It must not measure anything.
"""

from __future__ import annotations

import os
import platform
from typing import Any, TypeGuard

__all__ = ["at_least", "at_most", "machine", "ratio", "target"]


def machine() -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def target(value: Any, limit: Any, passed: bool | None, what: str = "") -> dict[str, Any]:
    """One target: the measured value, its limit, whether it passed (None: not judged)."""
    out: dict[str, Any] = {"value": value, "limit": limit, "pass": passed}
    if what:
        out["what"] = what
    return out


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def at_most(value: Any, limit: float, what: str) -> dict[str, Any]:
    return target(value, limit, value <= limit if _number(value) else None, what)


def at_least(value: Any, limit: float, what: str) -> dict[str, Any]:
    return target(value, limit, value >= limit if _number(value) else None, what)


def ratio(figures: dict[str, Any], numerator: str, denominator: str) -> float | None:
    """figures[numerator] / figures[denominator] to 3 decimals, None if either is missing."""
    top, bottom = figures.get(numerator), figures.get(denominator)
    if _number(top) and _number(bottom) and bottom > 0:
        return round(top / bottom, 3)
    return None
