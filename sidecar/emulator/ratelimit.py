"""Bybit's per-UID order rate limits as the emulator enforces them (reference §5).

Its one job is counting: a rolling 1-second window per (UID, op path, category class), where
linear and inverse share the class `linear`. Batch requests are charged one unit per item for
linear/spot/inverse and one per request for option; a batch that does not fit is granted the
units that remain. It does no I/O and reads no clock (`now_ms` comes in).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "TRADE_OPS", "Admission", "RateLimiter", "category_class", "normalize_op"]

TRADE_OPS = (
    "order.create",
    "order.amend",
    "order.cancel",
    "order.create-batch",
    "order.amend-batch",
    "order.cancel-batch",
)
WINDOW_MS = 1000

# (op, class) -> requests (or batch items) per second; the UTA defaults of reference §5.
DEFAULT_LIMITS: dict[tuple[str, str], int] = {
    ("order.create", "linear"): 10,
    ("order.create", "option"): 10,
    ("order.create", "spot"): 20,
    ("order.amend", "linear"): 10,
    ("order.amend", "option"): 10,
    ("order.amend", "spot"): 10,
    ("order.cancel", "linear"): 10,
    ("order.cancel", "option"): 10,
    ("order.cancel", "spot"): 20,
    ("order.create-batch", "linear"): 10,
    ("order.create-batch", "option"): 10,
    ("order.create-batch", "spot"): 20,
    ("order.amend-batch", "linear"): 10,
    ("order.amend-batch", "option"): 10,
    ("order.amend-batch", "spot"): 20,
    ("order.cancel-batch", "linear"): 10,
    ("order.cancel-batch", "option"): 10,
    ("order.cancel-batch", "spot"): 20,
    ("order.realtime", "all"): 50,
    ("order.history", "all"): 50,
}
_REST_READS = frozenset({"order.realtime", "order.history"})  # one budget per path, any category


def category_class(category: str) -> str:
    """The budget class of a category: inverse shares linear's (one cell in Bybit's table)."""
    if category in ("linear", "inverse"):
        return "linear"
    if category == "option":
        return "option"
    if category == "spot":
        return "spot"
    return "all"


def normalize_op(op: str) -> str:
    """Accept `order.amend-batch`, `amend-batch` or `/v5/order/amend-batch`."""
    name = op.strip()
    if name.startswith("/v5/order/"):
        name = "order." + name.removeprefix("/v5/order/")
    elif not name.startswith("order."):
        name = "order." + name
    return name


@dataclass(frozen=True)
class Admission:
    """What a request got: `granted` units, and the values for the X-Bapi-Limit* headers."""

    granted: int
    limit: int
    remaining: int
    reset_ms: int


class RateLimiter:
    """Rolling-window counters keyed by (uid, op, class)."""

    def __init__(self, limits: dict[tuple[str, str], int] | None = None) -> None:
        self._limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self._windows: dict[tuple[str, str, str], deque[tuple[int, int]]] = {}

    def limit(self, op: str, category: str) -> int:
        return self._limits.get((op, category_class(category)), 10)

    def set_limit(self, op: str, category: str, per_second: int) -> None:
        if per_second < 1:
            raise ValueError("perSecond must be >= 1")
        op = normalize_op(op)
        cls = "all" if op in _REST_READS else category_class(category)
        if (op, cls) not in DEFAULT_LIMITS:
            raise ValueError(f"unknown op/category {op!r}/{category!r}")
        self._limits[(op, cls)] = per_second

    def _used(self, key: tuple[str, str, str], now_ms: int) -> tuple[deque[tuple[int, int]], int]:
        window = self._windows.setdefault(key, deque())
        while window and window[0][0] <= now_ms - WINDOW_MS:
            window.popleft()
        return window, sum(units for _, units in window)

    def admit(self, uid: str, op: str, category: str, units: int, now_ms: int) -> Admission:
        """Grant up to `units` (fewer if the window is nearly full) and record what was granted."""
        key = (uid, op, category_class(category))
        limit = self.limit(op, category)
        window, used = self._used(key, now_ms)
        granted = max(0, min(units, limit - used))
        if granted:
            window.append((now_ms, granted))
        remaining = limit - used - granted
        exceeded = granted < units or remaining <= 0
        reset_ms = window[0][0] + WINDOW_MS if exceeded and window else now_ms
        return Admission(granted, limit, remaining, reset_ms)

    def peek(self, uid: str, op: str, category: str, now_ms: int) -> Admission:
        """The current state without charging anything."""
        key = (uid, op, category_class(category))
        limit = self.limit(op, category)
        window, used = self._used(key, now_ms)
        remaining = max(0, limit - used)
        reset_ms = window[0][0] + WINDOW_MS if remaining == 0 and window else now_ms
        return Admission(0, limit, remaining, reset_ms)
