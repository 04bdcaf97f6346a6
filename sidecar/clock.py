"""The only module that reads time.

Everything else gets `now` passed in: monotonic nanoseconds for deadlines, ages and rate limits,
wall-clock milliseconds only for Bybit headers (`X-BAPI-TIMESTAMP`) and journal timestamps.
Tests inject `FakeClock`. This module must not import anything from the sidecar.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


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


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, monotonic_ns: int = 1_000_000_000, wall_ms: int = 1_700_000_000_000) -> None:
        self._mono_ns = monotonic_ns
        self._wall_ms = wall_ms

    def monotonic_ns(self) -> int:
        return self._mono_ns

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance_ms(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("time does not go backwards")
        self._mono_ns += ms * 1_000_000
        self._wall_ms += ms
