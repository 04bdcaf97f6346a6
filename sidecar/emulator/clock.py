"""The emulator's own clock: the host's wall clock plus an offset a test can set.

Its one job is "what time is it on the exchange": server time, `Timenow`, `updatedTime`, the
request-timestamp window and auth expiry all read it, so `POST /emulator/clock {"offsetMs": N}`
makes the whole exchange run N ms off the host. The emulator is an independent witness and does not
use `sidecar.clock`; it must not know about sockets or orders.
"""

from __future__ import annotations

import time

__all__ = ["ExchangeClock"]

MAX_OFFSET_MS = 24 * 3600 * 1000  # a day either way is plenty for any skew test


class ExchangeClock:
    """Wall time in ms (and ns) as the emulated exchange sees it."""

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = 0
        self.set_offset_ms(offset_ms)

    def set_offset_ms(self, offset_ms: object) -> None:
        """Run `offset_ms` ahead of the host (negative: behind). ValueError unless an int within a day."""
        if isinstance(offset_ms, bool) or not isinstance(offset_ms, int) or abs(offset_ms) > MAX_OFFSET_MS:
            raise ValueError(f"offsetMs must be an integer within ±{MAX_OFFSET_MS}")
        self.offset_ms = offset_ms

    def now_ns(self) -> int:
        return time.time_ns() + self.offset_ms * 1_000_000

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000
