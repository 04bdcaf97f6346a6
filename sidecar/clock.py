"""The only module that reads time.

Everything else gets `now` passed in: monotonic nanoseconds for deadlines, ages and rate limits,
wall-clock milliseconds only for Bybit headers (`X-BAPI-TIMESTAMP`) and journal timestamps.
Tests inject `sidecar.testing.FakeClock`. This module must not import anything from the sidecar.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """A source of time."""

    def monotonic_ns(self) -> int:
        """Nanoseconds from an arbitrary origin; never goes backwards."""
        ...

    def wall_ms(self) -> int:
        """Unix time in milliseconds (for exchange headers and records)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000
