"""A clock tests move by hand (satisfies `sidecar.clock.Clock`). It never reads real time."""

from __future__ import annotations

__all__ = ["FakeClock"]


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
