"""One amend in flight per order (DESIGN.md §3): which request holds which order, until it settles.

Like NautilusTrader's `PENDING_UPDATE`: an order is *busy* from the moment a request is admitted to
amend it until that amend settles, and a busy order's next amend is denied `ORDER_BUSY` by the
validator and never sent. So every check runs on a state the sidecar can vouch for, and every
verdict rests on evidence caused by its own request.

Rules:
1. Acquire is all-or-nothing: a request holds every order it sends, or none (nothing is sent).
2. Only the holder releases an order. The service releases an item's order when the item settles:
   a definitive verdict (verified, rejected, not_applied, superseded).
3. An item answered `unverified` keeps its order busy while the background reconciliation looks.
   When that gives up, the hold moves to a re-read (`reread_holder`): the order stays busy until
   a fresh REST read of it has replaced the sidecar's view; only then may a new amend be checked.
4. Orders are named by Bybit's orderId (the order view resolves an orderLinkId to it first), so the
   same order sent twice under both ids is caught too.

Pure and synchronous: no clock, no I/O. The service calls it on the event-loop thread right after
validation and before any await, so "not busy, then acquire" is atomic without locks. It must not
validate amends or decide verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["REREAD_PREFIX", "InFlight", "is_reread", "reread_holder"]

REREAD_PREFIX: Final = "reread:"


def reread_holder(order_id: str) -> str:
    """The holder of an order whose last amend ended unverified and which is being re-read."""
    return f"{REREAD_PREFIX}{order_id}"


def is_reread(holder: str) -> bool:
    return holder.startswith(REREAD_PREFIX)


class InFlight:
    """Orders with an unsettled amend, by orderId, and the holder (a request id) of each.

    Implements the validator's `InFlightLookup` (`holder`).
    """

    __slots__ = ("_held", "_holder")

    def __init__(self) -> None:
        self._holder: dict[str, str] = {}
        self._held: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._holder)

    def holder(self, order_id: str) -> str | None:
        """Who holds `order_id`, or None if no amend of it is in flight."""
        return self._holder.get(order_id)

    def held_by(self, holder: str) -> frozenset[str]:
        return frozenset(self._held.get(holder, ()))

    def try_acquire(self, holder: str, order_ids: Iterable[str]) -> tuple[str, ...]:
        """Hold every order for `holder`, or none (Rule 1). Returns the orders already held by
        someone else (empty: acquired). Holding an order twice for the same holder is a no-op."""
        wanted = list(dict.fromkeys(order_ids))
        busy = tuple(o for o in wanted if self._holder.get(o, holder) != holder)
        if busy:
            return busy
        mine = self._held.setdefault(holder, set())
        for order_id in wanted:
            self._holder[order_id] = holder
            mine.add(order_id)
        return ()

    def release(self, holder: str, order_id: str) -> bool:
        """Release one order if `holder` holds it (Rule 2); True if it did."""
        if self._holder.get(order_id) != holder:
            return False
        del self._holder[order_id]
        mine = self._held.get(holder)
        if mine is not None:
            mine.discard(order_id)
            if not mine:
                del self._held[holder]
        return True

    def release_all(self, holder: str) -> tuple[str, ...]:
        """Release every order `holder` holds; returns them."""
        mine = self._held.pop(holder, set())
        for order_id in mine:
            if self._holder.get(order_id) == holder:
                del self._holder[order_id]
        return tuple(sorted(mine))

    def move_to_reread(self, holder: str, order_id: str) -> bool:
        """Rule 3: the holder gave up looking; the order stays busy until it is re-read."""
        if not self.release(holder, order_id):
            return False
        new = reread_holder(order_id)
        self._holder[order_id] = new
        self._held.setdefault(new, set()).add(order_id)
        return True
