"""Per-order leases in one process: at most one amend in flight per order (the local backend's guard).

One job: remember which request holds which order key until it releases it or the lease's time to
live runs out, and refuse a second holder meanwhile, all or nothing per call. Pure: no I/O, no
clock (`now_ns` comes in). It does not know what an order is beyond its key.

A stand-in until the in-process in-flight guard of issue 9 lands in `sidecar/core/`; then the
local backend delegates to that one and this module goes.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["LeaseTable"]


class LeaseTable:
    """Order key -> (holder, expiry). Expired leases are dropped lazily and by a periodic sweep."""

    __slots__ = ("_held", "_sweep_at")

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, int]] = {}
        self._sweep_at = 1024  # sweep when the table grows past this (amortised O(1) per call)

    def busy(self, orders: Sequence[str], holder: str, now_ns: int) -> tuple[str, ...]:
        """The keys of `orders` leased to someone other than `holder` (an empty holder: to anyone)."""
        out: list[str] = []
        for key in orders:
            entry = self._held.get(key)
            if entry is None:
                continue
            owner, expires_ns = entry
            if expires_ns <= now_ns:
                del self._held[key]
            elif owner != holder or not holder:
                out.append(key)
        return tuple(out)

    def acquire(self, orders: Sequence[str], holder: str, ttl_ns: int, now_ns: int) -> tuple[str, ...]:
        """Lease every key of `orders` to `holder` until now + ttl, or none of them: returns the
        keys another holder has (empty: acquired)."""
        if not holder:
            raise ValueError("a lease needs a holder")
        busy = self.busy(orders, holder, now_ns)
        if busy:
            return busy
        for key in orders:
            self._held[key] = (holder, now_ns + ttl_ns)
        if len(self._held) > self._sweep_at:
            self._sweep(now_ns)
        return ()

    def release(self, holder: str, orders: Sequence[str]) -> int:
        """Drop the leases `holder` holds on `orders`; another holder's lease stays. Returns how many."""
        released = 0
        for key in orders:
            entry = self._held.get(key)
            if entry is not None and entry[0] == holder:
                del self._held[key]
                released += 1
        return released

    def __len__(self) -> int:
        return len(self._held)

    def _sweep(self, now_ns: int) -> None:
        self._held = {k: v for k, v in self._held.items() if v[1] > now_ns}
        self._sweep_at = max(1024, 2 * len(self._held))
