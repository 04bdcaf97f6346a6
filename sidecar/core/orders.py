"""The sidecar's live view of orders, fed by the private `order` stream and REST snapshots.

Rules:
1. Per order (keyed by orderId), `updatedTime` only moves forward: an event older than the one
   held is *stale* and ignored.
2. An event identical in `updatedTime` and state to the one held is a *duplicate* and ignored.
   Same `updatedTime` with a different state is applied (Bybit can push twice in one ms, e.g. the
   documented double `Filled`), unless the held state is terminal.
3. Terminal states (Filled, Cancelled, Rejected, ...) are absorbing: nothing moves an order out.
4. Lookups go by orderId first, else by orderLinkId (within category and symbol).

Pure: no I/O, no clock. It must not decide anything about amends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from sidecar.core.types import Category, OrderView

__all__ = ["ApplyResult", "OrderBook", "OrderUpdate"]


class ApplyResult(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    TERMINAL = "terminal"  # the order was already terminal; event ignored


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One order event after `OrderBook.apply()`: the view, what applying it did, where it came from
    (the private stream, or a REST snapshot after a (re)connect)."""

    view: OrderView
    result: ApplyResult
    source: Literal["stream", "snapshot"] = "stream"

    @property
    def duplicate(self) -> bool:
        return self.result is ApplyResult.DUPLICATE


class OrderBook:
    """Orders by id and by link id. Implements `core.types.OrderLookup`."""

    def __init__(self) -> None:
        self._by_id: dict[str, OrderView] = {}
        # (category, symbol) -> orderLinkId -> orderId. Nested rather than keyed by a 3-tuple: a
        # tuple per order is 64 bytes, a third of what the view itself costs (docs/benchmarks.md).
        self._by_link: dict[tuple[Category, str], dict[str, str]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[OrderView]:
        return iter(self._by_id.values())

    def apply(self, view: OrderView) -> ApplyResult:
        held = self._by_id.get(view.order_id)
        if held is not None:
            if held.is_terminal:
                return ApplyResult.TERMINAL
            if view.updated_time_ms < held.updated_time_ms:
                return ApplyResult.STALE
            # A newer updatedTime can never be a duplicate: compare the whole view only on a tie.
            if view.updated_time_ms == held.updated_time_ms and view == held:
                return ApplyResult.DUPLICATE
        self._by_id[view.order_id] = view
        if view.order_link_id:
            links = self._by_link.get((view.category, view.symbol))
            if links is None:
                links = self._by_link[(view.category, view.symbol)] = {}
            links[view.order_link_id] = view.order_id
        return ApplyResult.APPLIED

    def find(
        self, category: Category, symbol: str, order_id: str | None, order_link_id: str | None
    ) -> OrderView | None:
        if order_id:
            view = self._by_id.get(order_id)
            if view is not None and view.category is category and view.symbol == symbol:
                return view
            return None
        if order_link_id:
            links = self._by_link.get((category, symbol))
            oid = links.get(order_link_id) if links is not None else None
            return self._by_id.get(oid) if oid is not None else None
        return None

    def open_orders(self) -> list[OrderView]:
        return [v for v in self._by_id.values() if v.is_open]

    def forget_terminal(self, keep_last: int = 10_000) -> int:
        """Drop the oldest terminal orders beyond `keep_last` to bound memory; returns how many."""
        terminal = sorted((v for v in self._by_id.values() if v.is_terminal), key=lambda v: v.updated_time_ms)
        drop = terminal[: max(0, len(terminal) - keep_last)]
        for v in drop:
            del self._by_id[v.order_id]
            links = self._by_link.get((v.category, v.symbol))
            if links is not None and v.order_link_id:
                links.pop(v.order_link_id, None)
                if not links:
                    del self._by_link[(v.category, v.symbol)]
        return len(drop)
